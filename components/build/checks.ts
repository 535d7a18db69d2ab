/**
 * Cross-field checks of the `build` section (pure). Run once, when the stack
 * config is loaded; key paths are relative to the section.
 */
import * as path from "node:path";
import { DERIVED_BUILD_ARGS, type HardwareTarget } from "../shared/hardware";
import { type Report, within } from "../shared/problems";
import { CREDENTIAL_ARG_RE, resolveTargets } from "../shared/target-config";
import { LOCAL_RUNNER } from "../local/runner";
import { chainProblems } from "./chains";
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
        // Release tags are "<version>-<target>" and lifecycle rules match "*-<target>":
        // a target whose name ends in "-<other target>" would be counted under both.
        for (const a of used) {
            for (const b of used) {
                if (a !== b && a.endsWith(`-${b}`)) {
                    report([...at, "targets"], `targets "${a}" and "${b}" overlap: release tag "<version>-${a}" also matches "*-${b}"; rename one`);
                }
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
    for (const p of chainProblems(build.images)) report(["images", p.index, p.key], p.message);
    if (build.localRegistry && !build.builder) {
        report(["builder"], `a build to a local registry runs on the local BuildKit runner: set build.builder to its builder (${LOCAL_RUNNER.builder}, which \`sudo npm run docker:env\` creates)`);
    }
    if (build.runnersStack && (build.builder || build.localRegistry)) {
        report(["runnersStack"], `is not used: images build on ${build.localRegistry ? "the local runner" : `builder ${build.builder}`}; remove one of them`);
    }
    if (build.registry.forceDelete && context.protectData) {
        report(["registry", "forceDelete"], "would let pulumi delete repositories that still hold images; allowed only with ml-infra:protectData: false (dev)");
    }
    return targets;
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
