/**
 * Cross-field checks of the `build` section (pure). Run once, when the stack
 * config is loaded; key paths are relative to the section.
 */
import * as fs from "node:fs";
import * as path from "node:path";
import { DERIVED_BUILD_ARGS, type HardwareTarget } from "../shared/hardware";
import { type KeyPath, type Report, within } from "../shared/problems";
import { parseImage } from "../registry/pullthrough";
import { resolveTargets } from "../shared/target-config";
import { LOCAL_RUNNER } from "../local/runner";
import { chainProblems } from "./chains";
import { ContextTooLarge, DEPLOYED_TAG_PREFIX, MULTIARCH_TAG_PREFIX, cachedContextDigest } from "./release";
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
        const contextProblem = insideProject(projectRoot, image.context, "the build context");
        // An absolute Dockerfile would be read from anywhere (path.resolve ignores the context): refuse it before joining.
        const dockerfileAbsolute = path.isAbsolute(image.dockerfile) || /^[A-Za-z]:[\\/]/.test(image.dockerfile);
        const dockerfileProblem = dockerfileAbsolute
            ? "the Dockerfile must be a path relative to the build context (images[].context), inside the project, not an absolute one; e.g. Dockerfile or docker/Dockerfile.gpu"
            : insideProject(projectRoot, path.join(image.context, image.dockerfile), "the Dockerfile");
        if (contextProblem) {
            report([...at, "context"], contextProblem);
            if (dockerfileAbsolute && dockerfileProblem) report([...at, "dockerfile"], dockerfileProblem);
        } else if (!pathExists(contextDir)) {
            report([...at, "context"], `build context directory not found (looked in ${contextDir})`);
        } else if (dockerfileProblem) {
            report([...at, "dockerfile"], dockerfileProblem);
        } else if (!pathExists(path.resolve(contextDir, image.dockerfile))) {
            report([...at, "dockerfile"], `Dockerfile not found in the build context (looked for ${JSON.stringify(path.resolve(contextDir, image.dockerfile))})`);
        } else if (!isFile(path.resolve(contextDir, image.dockerfile))) {
            report([...at, "dockerfile"], `is not a file (${path.resolve(contextDir, image.dockerfile)}): name the Dockerfile, relative to the context`);
        } else if (!isDirectory(contextDir)) {
            report([...at, "context"], `is not a directory (${contextDir}): a build context is a directory`);
        } else {
            // What the build would send, bounded (and its digest computed once for the release tags).
            try {
                cachedContextDigest(contextDir, path.resolve(contextDir, image.dockerfile));
            } catch (error) {
                if (!(error instanceof ContextTooLarge)) throw error;
                report([...at, "context"], error.message);
            }
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
        const stages = contextProblem || dockerfileProblem ? undefined : dockerfileStages(contextDir, image.dockerfile, pathExists);
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
        // Credential-like build args are refused for the whole config (components/stack-config.ts).
        for (const arg of Object.keys(image.buildArgs)) {
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
 * Why a path from config is not inside the project (undefined: it is): an
 * absolute path, one that climbs out with `..`, the filesystem root, or one
 * whose real path (symlinks followed) leaves the project.
 */
export function insideProject(projectRoot: string, relative: string, what: string): string | undefined {
    if (path.isAbsolute(relative)) return `${what} must be a path relative to the project (where Pulumi.yaml is), not an absolute one`;
    const resolved = path.resolve(projectRoot, relative);
    const rel = path.relative(projectRoot, resolved);
    if (rel === ".." || rel.startsWith(`..${path.sep}`) || path.isAbsolute(rel)) return `${what} must stay inside the project (where Pulumi.yaml is); ${relative} leaves it`;
    try {
        const real = fs.realpathSync(resolved);
        const realRoot = fs.realpathSync(projectRoot);
        const realRel = path.relative(realRoot, real);
        if (realRel === ".." || realRel.startsWith(`..${path.sep}`) || path.isAbsolute(realRel)) return `${what} must stay inside the project; ${relative} is a symlink to ${real}`;
    } catch {
        // Not there (yet): reported as missing.
    }
    return undefined;
}

function isFile(p: string): boolean {
    return fs.statSync(p, { throwIfNoEntry: false })?.isFile() ?? false;
}

function isDirectory(p: string): boolean {
    return fs.statSync(p, { throwIfNoEntry: false })?.isDirectory() ?? false;
}

/** Largest Dockerfile the checks read. */
const MAX_DOCKERFILE_BYTES = 1024 * 1024;

/**
 * The stage names a Dockerfile declares (`FROM … AS <name>`, lower-cased as
 * BuildKit matches them); undefined when the file cannot be read.
 */
function dockerfileStages(contextDir: string, dockerfile: string, pathExists: (p: string) => boolean): Set<string> | undefined {
    const file = path.resolve(contextDir, dockerfile);
    if (!pathExists(file)) return undefined;
    let text: string;
    try {
        if (fs.statSync(file).size > MAX_DOCKERFILE_BYTES) return undefined;
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
