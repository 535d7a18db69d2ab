/**
 * Starts and stops a local BuildKit runner (components/local/runner.ts decides
 * its parts): `scripts/local-runner.ts` runs the one the local stack builds on,
 * and the real-engine suites and the build-cache benchmark start throw-away
 * ones with the same code (a fresh state directory on another loopback port,
 * their own CA and certificates, their own buildx builder): an ephemeral
 * runner, or a gpu-pool runner whose GPU spec is missing.
 *
 * Everything here throws `LocalRunnerError` with the reason; nothing exits the process.
 */
import { spawn, spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import type { CertificateProfile } from "../../components/runners/certificates";
import type { Pool } from "../../components/shared/hardware";
import {
    LOCAL_RUNNER,
    LOCAL_SERVER_NAMES,
    STAND_IN_GPU_SPEC_FILE,
    hostPool,
    localBuilderCommands,
    localBuildkitdToml,
    localCertificateProfiles,
    localRunnerPaths,
    opensslExtensions,
    opensslSubject,
    standInGpuCdiSpec,
} from "../../components/local/runner";

const PROJECT = "ml-infra";

export class LocalRunnerError extends Error {}

function fail(message: string): never {
    throw new LocalRunnerError(message);
}

export function run(command: string, args: readonly string[], options: { env?: NodeJS.ProcessEnv; input?: string; timeoutMs?: number } = {}): { status: number; out: string } {
    const r = spawnSync(command, args, { encoding: "utf8", env: options.env ?? process.env, input: options.input, timeout: options.timeoutMs ?? 120_000 });
    return { status: r.status ?? -1, out: `${r.stdout ?? ""}${r.stderr ?? ""}`.trim() };
}

export interface InvokingUser {
    readonly name: string;
    readonly home: string;
    readonly uid: number;
    readonly gid: number;
}

/** The user builders are made for: who ran sudo, else whoever runs this. */
export function invokingUser(): InvokingUser {
    const name = process.env.SUDO_USER && process.env.SUDO_USER !== "root" ? process.env.SUDO_USER : os.userInfo().username;
    const entry = run("getent", ["passwd", name]).out.split(":");
    if (entry.length < 6) return { name, home: os.homedir(), uid: process.getuid?.() ?? 0, gid: process.getgid?.() ?? 0 };
    return { name, home: entry[5], uid: Number(entry[2]), gid: Number(entry[3]) };
}

/** A tool from ML_INFRA_TOOLS_BIN, the invoking user's tools cache (npm run tools) or PATH. */
export function tool(name: string, home = invokingUser().home): string {
    const dirs = [process.env.ML_INFRA_TOOLS_BIN, path.join(home, ".cache/ml-infra/tools/bin"), path.join(os.homedir(), ".cache/ml-infra/tools/bin")];
    for (const dir of dirs) if (dir && fs.existsSync(path.join(dir, name))) return path.join(dir, name);
    const found = run("sh", ["-c", `command -v ${name}`]).out;
    if (found) return found;
    fail(`${name} not found: run \`npm run tools\` first (it builds ${name} into ~/.cache/ml-infra/tools/bin)`);
}

export function alive(pidFile: string): number | undefined {
    if (!fs.existsSync(pidFile)) return undefined;
    const pid = Number(fs.readFileSync(pidFile, "utf8").trim());
    if (!Number.isInteger(pid) || pid <= 0) return undefined;
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

/** Issues the CA, server and client certificates unless they are valid for 30 more days; true when it issued. */
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
function installClient(paths: ReturnType<typeof localRunnerPaths>, user: InvokingUser): void {
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

/** `buildctl` arguments that reach a runner's TCP endpoint as its builder does (mutual TLS, the client certificate). */
export function buildctlTcpArgs(stateDir: string, port: number): string[] {
    const client = localRunnerPaths(stateDir).clientDir;
    return ["--addr", `tcp://127.0.0.1:${port}`, "--tlscacert", `${client}/ca.pem`, "--tlscert", `${client}/cert.pem`, "--tlskey", `${client}/key.pem`, "--tlsservername", "127.0.0.1"];
}

async function waitReady(buildctl: string, socket: string, pidFile: string, logFile: string): Promise<void> {
    for (let i = 0; i < 240; i++) {
        if (run(buildctl, ["--addr", `unix://${socket}`, "debug", "workers"]).status === 0) return;
        if (i > 8 && !alive(pidFile)) fail(`buildkitd exited during start-up:\n${fs.existsSync(logFile) ? fs.readFileSync(logFile, "utf8").split("\n").slice(-15).join("\n") : ""}`);
        await new Promise((r) => setTimeout(r, 250));
    }
    fail(`buildkitd did not answer on ${socket} within 60 s (see ${logFile})`);
}

export interface LocalRunnerSettings {
    readonly stateDir: string;
    readonly port: number;
    /** The buildx builder made for it, in the invoking user's buildx store. */
    readonly builder: string;
    /** The local registry (plain HTTP, and docker.io's mirror). */
    readonly registry: string;
    readonly pool?: Pool;
    /** `stand-in`: the stand-in GPU's CDI spec (as the gpu pool's generated one); `none`: an empty CDI directory (a gpu pool whose spec is missing). */
    readonly cdi: "stand-in" | "none";
    readonly maxParallelism?: number;
    readonly log?: (message: string) => void;
}

export interface StartedRunner {
    readonly pid: number;
    /** The BuildKit version buildx reports through the builder. */
    readonly version: string;
    readonly endpoint: string;
    /** Whether buildkitd was (re)started by this call. */
    readonly started: boolean;
}

/**
 * Starts (or keeps) buildkitd with the runner's config and (re)creates its
 * builder. Idempotent: a running buildkitd with the same config and
 * certificates is kept. Needs root (buildkitd, runc) and `npm run tools`.
 */
export async function startLocalRunner(s: LocalRunnerSettings): Promise<StartedRunner> {
    const log = s.log ?? (() => {});
    if (process.getuid?.() !== 0) fail("starting buildkitd needs root: run `sudo npm run docker:env` (or sudo npx tsx scripts/local-runner.ts start)");
    const paths = localRunnerPaths(s.stateDir);
    const pool = s.pool ?? hostPool(os.arch());
    const user = invokingUser();
    const buildkitd = tool("buildkitd", user.home);
    const buildctl = tool("buildctl", user.home);
    const buildx = tool("buildx", user.home);
    if (run("sh", ["-c", "command -v runc"]).status !== 0) fail("runc is not installed (apt-get install runc; docker-env does it)");

    fs.mkdirSync(s.stateDir, { recursive: true, mode: 0o711 });
    fs.mkdirSync(paths.cdiDir, { recursive: true });
    const spec = path.join(paths.cdiDir, STAND_IN_GPU_SPEC_FILE);
    if (s.cdi === "stand-in") fs.writeFileSync(spec, `${JSON.stringify(standInGpuCdiSpec(), null, 2)}\n`);
    else fs.rmSync(spec, { force: true });
    const toml = localBuildkitdToml({ stateDir: s.stateDir, port: s.port, registry: s.registry, pool, maxParallelism: s.maxParallelism ?? Math.max(2, os.cpus().length), volumeGiB: 60 });
    const configChanged = !fs.existsSync(paths.config) || fs.readFileSync(paths.config, "utf8") !== toml;
    fs.writeFileSync(paths.config, toml);
    const reissued = certificates(paths);
    installClient(paths, user);

    const running = alive(paths.pidFile);
    if (running && (configChanged || reissued)) {
        log(`config or certificates changed: restarting buildkitd (pid ${running})`);
        await stopLocalRunner(s.stateDir);
    }
    let started = false;
    if (!alive(paths.pidFile)) {
        const out = fs.openSync(paths.log, "a");
        const child = spawn(buildkitd, ["--config", paths.config], { detached: true, stdio: ["ignore", out, out] });
        child.unref();
        fs.closeSync(out);
        fs.writeFileSync(paths.pidFile, String(child.pid));
        started = true;
        log(`started buildkitd (pid ${child.pid}) on tcp://127.0.0.1:${s.port}, log ${paths.log}`);
    } else {
        log(`buildkitd already running (pid ${alive(paths.pidFile)}) on tcp://127.0.0.1:${s.port}`);
    }
    await waitReady(buildctl, paths.socket, paths.pidFile, paths.log);

    // The builder, in the invoking user's buildx store (where the docker-build provider looks).
    const env = { ...process.env, HOME: user.home };
    const asUser = (command: string) =>
        user.uid === process.getuid?.() ? run("sh", ["-c", command], { env }) : run("runuser", ["-u", user.name, "--", "sh", "-c", command], { env });
    for (const command of localBuilderCommands({ builder: s.builder, pool, port: s.port, stateDir: s.stateDir, buildx })) {
        const r = asUser(command);
        if (r.status !== 0) fail(`${command}\n${r.out}`);
    }
    const inspect = asUser(`${buildx} inspect --bootstrap ${s.builder}`);
    if (inspect.status !== 0 || !/Status:\s+running/.test(inspect.out)) fail(`builder ${s.builder} cannot reach buildkitd over mutual TLS:\n${inspect.out}`);
    const version = /BuildKit version:\s+(\S+)/.exec(inspect.out)?.[1] ?? "unknown";
    return { pid: alive(paths.pidFile) ?? 0, version, endpoint: `tcp://127.0.0.1:${s.port}`, started };
}

/** Stops the runner's buildkitd (SIGTERM, then SIGKILL after 10 s); false when it was not running. */
export async function stopLocalRunner(stateDir: string): Promise<boolean> {
    const { pidFile } = localRunnerPaths(stateDir);
    const pid = alive(pidFile);
    if (!pid) return false;
    process.kill(pid, "SIGTERM");
    for (let i = 0; i < 40 && alive(pidFile); i++) await new Promise((r) => setTimeout(r, 250));
    if (alive(pidFile)) process.kill(pid, "SIGKILL");
    for (let i = 0; i < 40 && alive(pidFile); i++) await new Promise((r) => setTimeout(r, 250));
    return true;
}

/** Stops a throw-away runner and removes its builder and its state directory (every cache record with it). */
export async function removeLocalRunner(stateDir: string, builder: string): Promise<void> {
    await stopLocalRunner(stateDir);
    const user = invokingUser();
    run(tool("buildx", user.home), ["rm", builder], { env: { ...process.env, HOME: user.home } });
    // buildkitd's overlay snapshots may still be mounted for a moment after it exits.
    for (let i = 0; i < 20; i++) {
        try {
            fs.rmSync(stateDir, { recursive: true, force: true });
            return;
        } catch {
            run("sh", ["-c", `grep -o ' ${stateDir.replace(/'/g, "")}/[^ ]*' /proc/mounts | xargs -r -n1 umount -l`]);
            await new Promise((r) => setTimeout(r, 250));
        }
    }
    fs.rmSync(stateDir, { recursive: true, force: true });
}

/** A free TCP port on 127.0.0.1 (bound and released, so another process could still take it: good enough for a test). */
export async function freeLoopbackPort(): Promise<number> {
    const net = await import("node:net");
    return new Promise((resolve, reject) => {
        const server = net.createServer();
        server.once("error", reject);
        server.listen(0, "127.0.0.1", () => {
            const port = (server.address() as import("node:net").AddressInfo).port;
            server.close(() => resolve(port));
        });
    });
}
