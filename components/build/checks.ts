/**
 * Cross-field checks of the `build` section (pure). Run once, when the stack
 * config is loaded; key paths are relative to the section.
 */
import * as fs from "node:fs";
import * as path from "node:path";
import { DERIVED_BUILD_ARGS, type HardwareTarget } from "../shared/hardware";
import { type KeyPath, type Report, within } from "../shared/problems";
import { parseImage } from "../registry/pullthrough";
import { CREDENTIAL_ARG_RE, resolveTargets } from "../shared/target-config";
import { LOCAL_RUNNER } from "../local/runner";
import { chainProblems } from "./chains";
import { DEPLOYED_TAG_PREFIX, MULTIARCH_TAG_PREFIX } from "./release";
import { SOURCE_BUILD_MIN_VOLUME_GIB } from "../runners/schema";
import type { BuildConfig } from "./schema";

/** What the build checks need besides the section. */
export interface BuildCheckContext {
    /** Ids of the build secrets the stack defines (`ml-infra:buildSecrets`). */
    readonly buildSecrets: Readonly<Record<string, unknown>>;
    /** `ml-infra:protectData`. */
    readonly protectData: boolean;
    /** Directory build contexts are relative to (where Pulumi.yaml is). */
    readonly projectRoot: string;
    /** Is there a file or directory at this absolute path? */
    readonly pathExists: (absolutePath: string) => boolean;
}

/**
 * The whole `build` section: its targets merged onto the catalog, each image
 * (name, context, Dockerfile, targets, secrets, build args, multi-arch),
 * chains, and the runner pools. Keys are relative to the section. Returns the
 * resolved targets.
 */
export function checkBuild(build: BuildConfig, context: BuildCheckContext, report: Report): Record<string, HardwareTarget> {
    const { buildSecrets, projectRoot, pathExists } = context;
    const targets = resolveTargets(build.targets, within(report, ["targets"]));
    const allowedTargets = Object.keys(targets).sort().join(", ");
    const seen = new Map<string, number>();
    build.images.forEach((image, i) => {
        const at = ["images", i];
        const first = seen.get(image.name);
        if (first !== undefined) report([...at, "name"], `duplicate image name (also build.images[${first}]); image names must be unique`);
        else seen.set(image.name, i);

        const contextDir = path.resolve(projectRoot, image.context);
        if (!pathExists(contextDir)) {
            report([...at, "context"], `build context directory not found (looked in ${contextDir})`);
        } else if (!pathExists(path.resolve(contextDir, image.dockerfile))) {
            report([...at, "dockerfile"], `Dockerfile not found in the build context (looked for ${path.resolve(contextDir, image.dockerfile)})`);
        }

        const used = new Set<string>();
        image.targets.forEach((t, j) => {
            if (!(t in targets)) report([...at, "targets", j], `unknown target; allowed: ${allowedTargets}`);
            else if (used.has(t)) report([...at, "targets", j], "target listed twice for this image");
            used.add(t);
        });
        if (image.baseImage !== undefined && image.base !== undefined) {
            report([...at, "baseImage"], `an image is built FROM its chain base (base: ${image.base}) or from an upstream image, not both; remove one`);
        }
        const stages = dockerfileStages(contextDir, image.dockerfile, pathExists);
        if (stages) {
            const wanted = image.stage !== undefined ? [{ stage: image.stage, key: [...at, "stage"], why: "" }] : [...used].filter((t) => targets[t]).map((t) => ({ stage: targets[t].stage, key: [...at, "targets"], why: ` (the stage of target ${t}; set images[].stage to build another)` }));
            for (const w of wanted) {
                if (!stages.has(w.stage.toLowerCase())) report(w.key, `stage "${w.stage}" is not in ${image.dockerfile}${w.why}; stages there: ${[...stages].sort().join(", ") || "none named"}`);
            }
        }

        image.secrets.forEach((id, j) => {
            if (!(id in buildSecrets)) {
                const known = Object.keys(buildSecrets).sort();
                report([...at, "secrets", j], `unknown build secret; set it with pulumi config set --secret --path 'ml-infra:buildSecrets.${id}' (defined: ${known.join(", ") || "none"})`);
            }
        });
        for (const arg of Object.keys(image.buildArgs)) {
            if (CREDENTIAL_ARG_RE.test(arg)) {
                report([...at, "buildArgs", arg], "looks like a credential: build args stay in the image history; pass it as a build secret (images[].secrets, RUN --mount=type=secret)");
                continue;
            }
            const owners = image.targets.filter((t) => targets[t] && arg in targets[t].buildArgs);
            if ((DERIVED_BUILD_ARGS as readonly string[]).includes(arg)) {
                report([...at, "buildArgs", arg], "is derived from the target; set it on the target (build.targets.<name>)");
            } else if (owners.length > 0) {
                report([...at, "buildArgs", arg], `is set by target ${owners.join(", ")}; override it in build.targets.<name>.buildArgs instead`);
            }
        }

        if (image.multiArch) {
            for (const arch of ["amd64", "arm64"] as const) {
                const t = image.multiArch[arch];
                const want = `linux/${arch}`;
                if (!used.has(t)) report([...at, "multiArch", arch], `must be one of this image's targets: ${image.targets.join(", ")}`);
                else if (targets[t]?.platform !== want) report([...at, "multiArch", arch], `target "${t}" builds ${targets[t]?.platform}, not ${want}`);
            }
        }
    });
    for (const t of Object.keys(build.targets)) {
        if (t === MULTIARCH_TAG_PREFIX || t.startsWith(DEPLOYED_TAG_PREFIX.replace(/-$/, ""))) {
            report(["targets", t], `is reserved: release tags are <target>.<hash>, multi-arch tags ${MULTIARCH_TAG_PREFIX}.<hash> and deployment markers ${DEPLOYED_TAG_PREFIX}*; choose another name`);
        }
    }
    for (const p of chainProblems(build.images)) report(["images", p.index, p.key], p.message);
    if (build.localRegistry) {
        checkBaseImages(build, targets, { registryHost: build.localRegistry, pullThroughHosts: new Set(), rulesFrom: "this local stack (it has none)" }, report);
    }
    if (build.localRegistry && !build.builder) {
        report(["builder"], `a build to a local registry runs on the local BuildKit runner: set build.builder to its builder (${LOCAL_RUNNER.builder}, which \`sudo npm run docker:env\` creates)`);
    }
    if (build.runnersStack && build.localRegistry) {
        report(["runnersStack"], "is not used: a local stack builds on the local runner and pulls nothing through a cache; remove it");
    }
    if (build.registry.forceDelete && context.protectData) {
        report(["registry", "forceDelete"], "would let pulumi delete repositories that still hold images; allowed only with ml-infra:protectData: false (dev)");
    }
    return targets;
}

/**
 * The stage names a Dockerfile declares (`FROM … AS <name>`, lower-cased as
 * BuildKit matches them); undefined when the file cannot be read.
 */
function dockerfileStages(contextDir: string, dockerfile: string, pathExists: (p: string) => boolean): Set<string> | undefined {
    const file = path.resolve(contextDir, dockerfile);
    if (!pathExists(file)) return undefined;
    let text: string;
    try {
        text = fs.readFileSync(file, "utf8");
    } catch {
        return undefined;
    }
    const stages = new Set<string>();
    for (const m of text.matchAll(/^\s*FROM\s+(?:--\S+\s+)*\S+\s+AS\s+(\S+)\s*$/gim)) stages.add(m[1].toLowerCase());
    return stages;
}

/** What the runners stack exports of one pool, as the build stack reads it. */
export interface PoolFact {
    readonly pool: string;
    readonly builder: string;
    readonly volumeGiB: number;
}

/**
 * Every target the images build on a pool the runners stack has, with the disk
 * a source build needs. Run when the runners stack's outputs are read (before
 * anything is registered); keys are relative to the `build` section.
 */
export function checkTargetsOnPools(
    build: Pick<BuildConfig, "images">,
    targets: Readonly<Record<string, HardwareTarget>>,
    pools: readonly PoolFact[],
    runnersStack: string,
    report: Report,
): void {
    const byPool = new Map(pools.map((p) => [p.pool, p]));
    const have = pools.map((p) => p.pool).sort().join(", ") || "none";
    build.images.forEach((image, i) => {
        image.targets.forEach((name, j) => {
            const target = targets[name];
            if (!target) return;
            const pool = byPool.get(target.pool);
            if (!pool) {
                report(["images", i, "targets", j], `target ${name} builds on the ${target.pool} pool, which runners stack ${runnersStack} does not have (it has: ${have}); add runners.pools.${target.pool} there`);
            } else if (target.buildArgs.BUILD_FROM_SOURCE === "true" && pool.volumeGiB < SOURCE_BUILD_MIN_VOLUME_GIB) {
                report(["images", i, "targets", j], `target ${name} builds from source (BUILD_FROM_SOURCE=true) and needs at least ${SOURCE_BUILD_MIN_VOLUME_GIB} GiB; the ${target.pool} pool of runners stack ${runnersStack} has ${pool.volumeGiB} (runners.pools.${target.pool}.volumeGiB)`);
            }
        });
    });
}

/** Where a build may take its base images from. */
export interface BaseImageSources {
    /** The registry the images are pushed to (ECR `<account>.dkr.ecr.<region>.amazonaws.com`, or the local registry). */
    readonly registryHost: string;
    /** Upstream hosts with an enabled pull-through rule (their images are pulled through the registry). */
    readonly pullThroughHosts: ReadonlySet<string>;
    /** How the message names where the rules come from, e.g. `runners stack acme/ml-infra/runners`. */
    readonly rulesFrom: string;
}

/**
 * Every base image a build starts from (each target's build and runtime base,
 * or an image's own `baseImage`) is in the registry, behind one of its
 * pull-through rules, or listed in `allowedBaseImages`. A chain's base is the
 * base image's digest in the registry, so only its target's build base is
 * checked. Keys are relative to the `build` section.
 */
export function checkBaseImages(
    build: Pick<BuildConfig, "images" | "targets" | "allowedBaseImages">,
    targets: Readonly<Record<string, HardwareTarget>>,
    sources: BaseImageSources,
    report: Report,
): void {
    const allowed = new Set(build.allowedBaseImages);
    const reported = new Set<string>();
    const check = (ref: string, key: KeyPath) => {
        const host = parseImage(ref).host;
        if (host === sources.registryHost || sources.pullThroughHosts.has(host) || allowed.has(ref)) return;
        const id = `${formatKeyPathRelative(key)}\0${ref}`;
        if (reported.has(id)) return;
        reported.add(id);
        const rules = sources.pullThroughHosts.size > 0 ? `rules for: ${[...sources.pullThroughHosts].sort().join(", ")}` : "no rules";
        report(
            key,
            `base image ${ref} comes from ${host}, which is neither this stack's registry (${sources.registryHost}) nor behind a pull-through rule of ${sources.rulesFrom} (${rules}); enable a rule for ${host}, push the image to the registry, or list it in build.allowedBaseImages`,
        );
    };
    build.images.forEach((image, i) => {
        if (image.baseImage !== undefined) {
            check(image.baseImage, ["images", i, "baseImage"]);
            return;
        }
        image.targets.forEach((name, j) => {
            const target = targets[name];
            if (!target) return;
            // A target declared in this stack is reported where it is declared; a catalog target where the image uses it.
            const key: KeyPath = name in build.targets ? ["targets", name, "baseImage"] : ["images", i, "targets", j];
            check(target.baseImage, key);
            if (target.runtimeBaseImage !== undefined && image.base === undefined) {
                check(target.runtimeBaseImage, name in build.targets ? ["targets", name, "runtimeBaseImage"] : key);
            }
        });
    });
}

function formatKeyPathRelative(key: KeyPath): string {
    return key.map(String).join(".");
}
