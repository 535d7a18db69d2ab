/**
 * The local BuildKit runner: a runner pool of one on this machine, made from
 * the same code as the build stack's pools (components/local/runner.ts,
 * started by scripts/lib/local-runner.ts).
 *
 *   npx tsx scripts/local-runner.ts start    # as root: buildkitd on 127.0.0.1:<port> with mutual TLS, and the buildx builder
 *   npx tsx scripts/local-runner.ts status
 *   npx tsx scripts/local-runner.ts stop
 *
 * `sudo npm run docker:env` runs `start`. It needs `npm run tools` first
 * (buildkitd, buildx) and runc. Idempotent: a running buildkitd with the
 * same config is kept, certificates are re-issued only in their last 30 days.
 * The builder is created for the user who ran sudo (SUDO_USER), in their
 * buildx store, which is where the docker-build provider looks.
 *
 * Environment: ML_INFRA_LOCAL_RUNNER_PORT (default 1234), ML_INFRA_LOCAL_RUNNER_STATE
 * (default /var/lib/ml-infra/local-runner), ML_INFRA_LOCAL_RUNNER_BUILDER (default: the
 * local stack's `build.builder`), ML_INFRA_LOCAL_RUNNER_CDI (`stand-in`, the default: the
 * stand-in GPU's CDI spec; `none`: no spec, as a gpu pool whose spec is missing),
 * ML_INFRA_TOOLS_BIN (where buildkitd and buildx are).
 */
import * as fs from "node:fs";
import * as path from "node:path";
import { parse as parseYaml } from "yaml";
import { LOCAL_RUNNER, localRunnerPaths } from "../components/local/runner";
import { LocalRunnerError, alive, startLocalRunner, stopLocalRunner } from "./lib/local-runner";

const ROOT = path.resolve(__dirname, "..");
const PROJECT = "ml-infra";

function log(message: string): void {
    process.stdout.write(`[local-runner] ${message}\n`);
}

function fail(message: string): never {
    throw new LocalRunnerError(message);
}

interface LocalStack {
    readonly registry: string;
    readonly builder: string;
}

function localStack(): LocalStack {
    const file = path.join(ROOT, "stacks", "Pulumi.local.yaml");
    const config = (parseYaml(fs.readFileSync(file, "utf8")) as { config?: Record<string, unknown> }).config ?? {};
    const build = config[`${PROJECT}:build`] as { localRegistry?: string; builder?: string } | undefined;
    if (!build?.localRegistry) fail(`${file} has no ${PROJECT}:build.localRegistry`);
    return { registry: build.localRegistry, builder: build.builder ?? LOCAL_RUNNER.builder };
}

function settings() {
    const port = Number(process.env.ML_INFRA_LOCAL_RUNNER_PORT ?? LOCAL_RUNNER.port);
    if (!Number.isInteger(port) || port < 1024 || port > 65535) fail(`ML_INFRA_LOCAL_RUNNER_PORT must be a port from 1024 to 65535, got ${process.env.ML_INFRA_LOCAL_RUNNER_PORT}`);
    const stateDir = process.env.ML_INFRA_LOCAL_RUNNER_STATE ?? LOCAL_RUNNER.stateDir;
    const cdi = process.env.ML_INFRA_LOCAL_RUNNER_CDI ?? "stand-in";
    if (cdi !== "stand-in" && cdi !== "none") fail(`ML_INFRA_LOCAL_RUNNER_CDI must be stand-in or none, got ${cdi}`);
    return { port, stateDir, cdi, paths: localRunnerPaths(stateDir) } as const;
}

async function start(): Promise<void> {
    const { port, stateDir, cdi } = settings();
    const stack = localStack();
    const builder = process.env.ML_INFRA_LOCAL_RUNNER_BUILDER ?? stack.builder;
    const runner = await startLocalRunner({ stateDir, port, builder, registry: stack.registry, cdi, log });
    log(`builder ${builder} (remote driver, mutual TLS) -> ${runner.endpoint}, BuildKit ${runner.version}, CDI ${cdi}`);
}

function status(): void {
    const { port, paths } = settings();
    const pid = alive(paths.pidFile);
    log(pid ? `buildkitd running (pid ${pid}) on tcp://127.0.0.1:${port}` : "buildkitd is not running");
    process.exitCode = pid ? 0 : 3;
}

async function stop(): Promise<void> {
    const { stateDir, paths } = settings();
    const pid = alive(paths.pidFile);
    log((await stopLocalRunner(stateDir)) ? `stopped buildkitd (pid ${pid})` : "buildkitd is not running");
}

const command = process.argv[2];
const actions: Record<string, () => void | Promise<void>> = { start, status, stop };
void Promise.resolve()
    .then(() => {
        if (!command || !(command in actions)) fail("usage: local-runner.ts start|status|stop");
        return actions[command]();
    })
    .catch((error: unknown) => {
        process.stderr.write(`[local-runner] FAILED: ${error instanceof Error ? error.message : String(error)}\n`);
        process.exit(1);
    });
