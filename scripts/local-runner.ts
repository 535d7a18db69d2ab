/**
 * The local BuildKit runner: a runner pool of one on this machine, made from
 * the same code as the build stack's pools (components/local/runner.ts).
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
 * (default /var/lib/ml-infra/local-runner), ML_INFRA_TOOLS_BIN (where buildkitd and buildx are).
 */
import { spawn, spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { parse as parseYaml } from "yaml";
import {
    LOCAL_RUNNER,
    LOCAL_SERVER_NAMES,
    hostPool,
    localBuilderCommands,
    localBuildkitdToml,
    localCertificateProfiles,
    localRunnerPaths,
    opensslExtensions,
    opensslSubject,
    standInGpuCdiSpec,
} from "../components/local/runner";
import type { CertificateProfile } from "../components/runners/certificates";

const ROOT = path.resolve(__dirname, "..");
const PROJECT = "ml-infra";

function log(message: string): void {
    process.stdout.write(`[local-runner] ${message}\n`);
}

function fail(message: string): never {
    process.stderr.write(`[local-runner] FAILED: ${message}\n`);
    process.exit(1);
}

function run(command: string, args: readonly string[], options: { env?: NodeJS.ProcessEnv; input?: string } = {}): { status: number; out: string } {
    const r = spawnSync(command, args, { encoding: "utf8", env: options.env ?? process.env, input: options.input });
    return { status: r.status ?? -1, out: `${r.stdout ?? ""}${r.stderr ?? ""}`.trim() };
}

/** The user the builder is made for: who ran sudo, else whoever runs this. */
function invokingUser(): { name: string; home: string; uid: number; gid: number } {
    const name = process.env.SUDO_USER && process.env.SUDO_USER !== "root" ? process.env.SUDO_USER : os.userInfo().username;
    const entry = run("getent", ["passwd", name]).out.split(":");
    if (entry.length < 6) return { name, home: os.homedir(), uid: process.getuid?.() ?? 0, gid: process.getgid?.() ?? 0 };
    return { name, home: entry[5], uid: Number(entry[2]), gid: Number(entry[3]) };
}

/** A tool from ML_INFRA_TOOLS_BIN, the invoking user's tools cache (npm run tools) or PATH. */
function tool(name: string, home: string): string {
    const dirs = [process.env.ML_INFRA_TOOLS_BIN, path.join(home, ".cache/ml-infra/tools/bin"), path.join(os.homedir(), ".cache/ml-infra/tools/bin")];
    for (const dir of dirs) if (dir && fs.existsSync(path.join(dir, name))) return path.join(dir, name);
    const found = run("sh", ["-c", `command -v ${name}`]).out;
    if (found) return found;
    fail(`${name} not found: run \`npm run tools\` first (it builds ${name} into ~/.cache/ml-infra/tools/bin)`);
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
    return { port, stateDir, paths: localRunnerPaths(stateDir), pool: hostPool(os.arch()) };
}

function alive(pidFile: string): number | undefined {
    if (!fs.existsSync(pidFile)) return undefined;
    const pid = Number(fs.readFileSync(pidFile, "utf8").trim());
    try {
        process.kill(pid, 0);
        return pid;
    } catch {
        return undefined;
    }
}

/** Issues `profile` into dir/<name>.pem and <name>-key.pem, signed by the CA in dir (or self-signed for the CA). */
function issue(dir: string, name: string, profile: CertificateProfile, sans: { dns?: readonly string[]; ip?: readonly string[] }): void {
    const key = path.join(dir, `${name}-key.pem`);
    const cert = path.join(dir, `${name}.pem`);
    const ext = path.join(dir, `${name}.ext`);
    fs.writeFileSync(ext, opensslExtensions(profile, sans));
    const must = (args: string[]) => {
        const r = run("openssl", args);
        if (r.status !== 0) fail(`openssl ${args.slice(0, 2).join(" ")} failed: ${r.out}`);
    };
    must(["genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", key]);
    fs.chmodSync(key, 0o600);
    const days = String(Math.max(1, Math.floor(profile.validityHours / 24)));
    if (profile.isCa) {
        must(["req", "-new", "-x509", "-key", key, "-subj", opensslSubject(profile), "-days", days, "-sha256", "-extensions", "ext", "-config", ext, "-out", cert]);
    } else {
        const csr = path.join(dir, `${name}.csr`);
        must(["req", "-new", "-key", key, "-subj", opensslSubject(profile), "-config", ext, "-out", csr]);
        must(["x509", "-req", "-in", csr, "-CA", path.join(dir, "ca.pem"), "-CAkey", path.join(dir, "ca-key.pem"), "-CAcreateserial", "-days", days, "-sha256", "-extfile", ext, "-extensions", "ext", "-out", cert]);
        fs.rmSync(csr);
    }
    fs.rmSync(ext);
}

/** Valid for at least 30 more days? */
function fresh(cert: string): boolean {
    return fs.existsSync(cert) && run("openssl", ["x509", "-checkend", String(30 * 24 * 3600), "-noout", "-in", cert]).status === 0;
}

function certificates(paths: ReturnType<typeof localRunnerPaths>): boolean {
    const profiles = localCertificateProfiles(PROJECT, LOCAL_RUNNER.validityDays);
    const dir = paths.tlsDir;
    fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
    if (fresh(path.join(dir, "ca.pem")) && fresh(path.join(dir, "server.pem")) && fresh(path.join(dir, "client.pem"))) return false;
    issue(dir, "ca", profiles.ca, {});
    issue(dir, "server", profiles.server, { dns: LOCAL_SERVER_NAMES.dns, ip: LOCAL_SERVER_NAMES.ip });
    issue(dir, "client", profiles.client, {});
    return true;
}

/** The client's files where buildx reads them, owned by the invoking user. */
function installClient(paths: ReturnType<typeof localRunnerPaths>, user: ReturnType<typeof invokingUser>): void {
    fs.mkdirSync(paths.clientDir, { recursive: true, mode: 0o700 });
    const copy = (from: string, to: string, mode: number) => {
        fs.copyFileSync(path.join(paths.tlsDir, from), path.join(paths.clientDir, to));
        fs.chmodSync(path.join(paths.clientDir, to), mode);
    };
    copy("ca.pem", "ca.pem", 0o644);
    copy("client.pem", "cert.pem", 0o644);
    copy("client-key.pem", "key.pem", 0o600);
    // The state directory is root's; the user needs to reach the client directory.
    fs.chmodSync(paths.stateDir, 0o711);
    for (const f of ["", "ca.pem", "cert.pem", "key.pem"]) fs.chownSync(path.join(paths.clientDir, f), user.uid, user.gid);
}

async function waitReady(buildctl: string, socket: string, pidFile: string, logFile: string): Promise<void> {
    for (let i = 0; i < 120; i++) {
        if (run(buildctl, ["--addr", `unix://${socket}`, "debug", "workers"]).status === 0) return;
        if (i > 4 && !alive(pidFile)) fail(`buildkitd exited during start-up:\n${fs.existsSync(logFile) ? fs.readFileSync(logFile, "utf8").split("\n").slice(-15).join("\n") : ""}`);
        await new Promise((r) => setTimeout(r, 500));
    }
    fail(`buildkitd did not answer on ${socket} within 60 s (see ${logFile})`);
}

async function start(): Promise<void> {
    if (process.getuid?.() !== 0) fail("starting buildkitd needs root: run `sudo npm run docker:env` (or sudo npx tsx scripts/local-runner.ts start)");
    const { port, stateDir, paths, pool } = settings();
    const stack = localStack();
    const user = invokingUser();
    const buildkitd = tool("buildkitd", user.home);
    const buildctl = tool("buildctl", user.home);
    const buildx = tool("buildx", user.home);
    if (run("sh", ["-c", "command -v runc"]).status !== 0) fail("runc is not installed (apt-get install runc; docker-env does it)");

    fs.mkdirSync(stateDir, { recursive: true, mode: 0o711 });
    fs.mkdirSync(paths.cdiDir, { recursive: true });
    fs.writeFileSync(path.join(paths.cdiDir, "ml-infra-stand-in-gpu.json"), `${JSON.stringify(standInGpuCdiSpec(), null, 2)}\n`);
    const toml = localBuildkitdToml({ stateDir, port, registry: stack.registry, pool, maxParallelism: Math.max(2, os.cpus().length), volumeGiB: 60 });
    const configChanged = !fs.existsSync(paths.config) || fs.readFileSync(paths.config, "utf8") !== toml;
    fs.writeFileSync(paths.config, toml);
    const reissued = certificates(paths);
    installClient(paths, user);

    const running = alive(paths.pidFile);
    if (running && (configChanged || reissued)) {
        log(`config or certificates changed: restarting buildkitd (pid ${running})`);
        process.kill(running, "SIGTERM");
        for (let i = 0; i < 40 && alive(paths.pidFile); i++) await new Promise((r) => setTimeout(r, 250));
    }
    if (alive(paths.pidFile)) {
        log(`buildkitd already running (pid ${alive(paths.pidFile)}) on tcp://127.0.0.1:${port}`);
    } else {
        const out = fs.openSync(paths.log, "a");
        const child = spawn(buildkitd, ["--config", paths.config], { detached: true, stdio: ["ignore", out, out] });
        child.unref();
        fs.writeFileSync(paths.pidFile, String(child.pid));
        log(`started buildkitd (pid ${child.pid}) on tcp://127.0.0.1:${port}, log ${paths.log}`);
    }
    await waitReady(buildctl, paths.socket, paths.pidFile, paths.log);

    // The builder, in the invoking user's buildx store (where the docker-build provider looks).
    const env = { ...process.env, HOME: user.home };
    const asUser = (command: string) =>
        user.uid === process.getuid?.() ? run("sh", ["-c", command], { env }) : run("runuser", ["-u", user.name, "--", "sh", "-c", command], { env });
    for (const command of localBuilderCommands({ builder: stack.builder, pool, port, stateDir, buildx })) {
        const r = asUser(command);
        if (r.status !== 0) fail(`${command}\n${r.out}`);
    }
    const inspect = asUser(`${buildx} inspect --bootstrap ${stack.builder}`);
    if (inspect.status !== 0 || !/Status:\s+running/.test(inspect.out)) fail(`builder ${stack.builder} cannot reach buildkitd over mutual TLS:\n${inspect.out}`);
    const version = /BuildKit version:\s+(\S+)/.exec(inspect.out)?.[1] ?? "unknown";
    log(`builder ${stack.builder} (remote driver, mutual TLS) -> tcp://127.0.0.1:${port}, BuildKit ${version}, for user ${user.name}`);
}

function status(): void {
    const { port, paths } = settings();
    const pid = alive(paths.pidFile);
    log(pid ? `buildkitd running (pid ${pid}) on tcp://127.0.0.1:${port}` : "buildkitd is not running");
    process.exitCode = pid ? 0 : 3;
}

async function stop(): Promise<void> {
    const { paths } = settings();
    const pid = alive(paths.pidFile);
    if (!pid) {
        log("buildkitd is not running");
        return;
    }
    process.kill(pid, "SIGTERM");
    for (let i = 0; i < 40 && alive(paths.pidFile); i++) await new Promise((r) => setTimeout(r, 250));
    if (alive(paths.pidFile)) process.kill(pid, "SIGKILL");
    log(`stopped buildkitd (pid ${pid})`);
}

const command = process.argv[2];
const actions: Record<string, () => void | Promise<void>> = { start, status, stop };
if (!command || !(command in actions)) fail("usage: local-runner.ts start|status|stop");
void Promise.resolve(actions[command]()).catch((error: unknown) => fail(error instanceof Error ? error.message : String(error)));
