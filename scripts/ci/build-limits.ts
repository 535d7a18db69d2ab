/**
 * How long the build job may run and how long its AWS credentials must last,
 * from the longest build timeout of the targets the build stack builds
 * (`buildTimeoutMinutes`); fails fast, before anything starts, when that
 * cannot fit the job's runner.
 *
 *   npx tsx scripts/ci/build-limits.ts [--stack build] [--runs-on <label>]
 *
 * Prints `timeout-minutes=<n>` and `role-duration-seconds=<n>` (appended to
 * $GITHUB_OUTPUT when set). The deploy workflow passes them to the build job
 * (`timeout-minutes`) and to aws-actions/configure-aws-credentials
 * (`role-duration-seconds`; the OIDC role's MaxSessionDuration must allow it).
 */
import * as fs from "node:fs";
import * as path from "node:path";
import { parse as parseYaml } from "yaml";
import { loadStackConfig } from "../../components/stack-config";
import { cliConfig, projectFile } from "../lib/mock-runtime";

/** What CI does around the builds: install, start and tunnel to the pools, push, export outputs. */
export const CI_OVERHEAD_MINUTES = 45;
/** A job on a GitHub-hosted runner stops after 6 hours. */
export const HOSTED_JOB_LIMIT_MINUTES = 360;
/** A job on a self-hosted runner stops after 5 days. */
export const SELF_HOSTED_JOB_LIMIT_MINUTES = 5 * 24 * 60;
/** An IAM role session lasts at most 12 hours (MaxSessionDuration). */
export const MAX_SESSION_SECONDS = 12 * 3600;

export interface BuildLimits {
    readonly timeoutMinutes: number;
    readonly roleDurationSeconds: number;
}

/** The limits for builds that take at most `longestBuildMinutes`, or why the runner cannot do it. */
export function buildLimits(longestBuildMinutes: number, longestTarget: string, hosted: boolean): BuildLimits {
    const timeoutMinutes = longestBuildMinutes + CI_OVERHEAD_MINUTES;
    const jobLimit = hosted ? HOSTED_JOB_LIMIT_MINUTES : SELF_HOSTED_JOB_LIMIT_MINUTES;
    if (timeoutMinutes > jobLimit) {
        throw new Error(
            `target ${longestTarget} may build for ${longestBuildMinutes} minutes; with CI's ${CI_OVERHEAD_MINUTES} that is ${timeoutMinutes}, but a ${hosted ? "GitHub-hosted" : "self-hosted"} job stops at ${jobLimit}. ` +
                (hosted ? "Run the build job on a self-hosted runner (repository variable ML_INFRA_BUILD_RUNS_ON) or lower its buildTimeoutMinutes." : "Lower its buildTimeoutMinutes."),
        );
    }
    const roleDurationSeconds = Math.max(3600, timeoutMinutes * 60);
    if (roleDurationSeconds > MAX_SESSION_SECONDS) {
        throw new Error(
            `target ${longestTarget} may build for ${longestBuildMinutes} minutes; the job's AWS credentials would have to last ${timeoutMinutes} minutes, and an IAM role session lasts at most ${MAX_SESSION_SECONDS / 60}. Lower its buildTimeoutMinutes.`,
        );
    }
    return { timeoutMinutes, roleDurationSeconds };
}

/** The longest build timeout among the targets the stack's images build, and its target. */
export function longestBuild(stackConfig: Record<string, unknown>, stack: string): { minutes: number; target: string } {
    const project = projectFile().name;
    const root = path.resolve(__dirname, "../..");
    const config = loadStackConfig(cliConfig(stackConfig), { project, stack, projectRoot: root, pathExists: fs.existsSync });
    const build = config.build;
    if (!build) throw new Error(`stack ${stack} has no build section`);
    let longest = { minutes: 0, target: "" };
    for (const name of new Set(build.images.flatMap((i) => i.targets))) {
        const minutes = build.resolvedTargets[name].buildTimeoutMinutes;
        if (minutes > longest.minutes) longest = { minutes, target: name };
    }
    return longest;
}

function main(argv: readonly string[]): void {
    const arg = (flag: string) => {
        const i = argv.indexOf(flag);
        return i >= 0 ? argv[i + 1] : undefined;
    };
    const stack = arg("--stack") ?? "build";
    const runsOn = arg("--runs-on") ?? "ubuntu-latest";
    const file = path.resolve(__dirname, "../../stacks", `Pulumi.${stack}.yaml`);
    const stackConfig = ((parseYaml(fs.readFileSync(file, "utf8")) as { config?: Record<string, unknown> } | null)?.config ?? {}) as Record<string, unknown>;
    const { minutes, target } = longestBuild(stackConfig, stack);
    const hosted = /^(ubuntu|windows|macos)-/.test(runsOn);
    const limits = buildLimits(minutes, target, hosted);
    const lines = [`timeout-minutes=${limits.timeoutMinutes}`, `role-duration-seconds=${limits.roleDurationSeconds}`];
    process.stdout.write(`${lines.join("\n")}\n`);
    if (process.env.GITHUB_OUTPUT) fs.appendFileSync(process.env.GITHUB_OUTPUT, `${lines.join("\n")}\n`);
    process.stderr.write(`longest build: ${target}, ${minutes} minutes; build job on ${runsOn}: ${limits.timeoutMinutes} minutes, credentials for ${limits.roleDurationSeconds} s\n`);
}

if (require.main === module) {
    try {
        main(process.argv.slice(2));
    } catch (error) {
        process.stderr.write(`build-limits: ${(error as Error).message}\n`);
        process.exit(1);
    }
}
