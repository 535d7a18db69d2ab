/**
 * The Docker engine side of the real-engine suites and the build-cache
 * benchmark: the containers and networks the `local` section declares (run
 * with the Docker CLI from the inputs the program registers under mocks, as
 * @pulumi/docker would: the docker provider cannot be built here), probes,
 * the local registry (presence, deletion), the network-rule guards and the
 * lock that serialises the suites on this machine. Images are built by the
 * docker-build provider or buildx on real BuildKit (engine.ts, buildx.ts),
 * never by this module.
 *
 *   - `NetworkSpec`   @pulumi/docker Network       (name, internal, driver, options, labels)
 *   - `ContainerSpec` @pulumi/docker Container     (name, image, networksAdvanced, ports, envs, command ...)
 *
 * Engine notes (Debian's docker.io 20.10):
 *   - a container joins its first network at create time and the others with
 *     `docker network connect` before it starts (one `--network` per create);
 *   - `--internal` bridge networks do not stop the host from reaching their
 *     containers, nor their containers from reaching the host's own addresses;
 *     `isolateFromHost` adds the host firewall rules that do (Docker 28 offers
 *     `gateway_mode_ipv4=isolated` for this; 20.10 does not).
 *
 * Network rule: this module only sends traffic to loopback or to containers on
 * networks it created itself (`probeTcp` and `httpRequest` refuse anything else),
 * and it publishes ports on loopback addresses only.
 */
import { execFile, spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as http from "node:http";
import * as net from "node:net";
import * as os from "node:os";
import * as path from "node:path";

/** Debian's client (the engine docker-env.sh starts). */
export const DOCKER = process.env.E2E_DOCKER ?? "/usr/bin/docker";
export const LOCAL_REGISTRY = "127.0.0.1:5000";
/** The base image docker-env.sh makes. */
export const LOCAL_BASE_IMAGE = `${LOCAL_REGISTRY}/debian:bookworm-slim`;
/** Label on every network and container this module creates; its value names the session. */
export const OWNER_LABEL = "ml-infra.e2e";

const MINUTE = 60_000;

// ------------------------------------------------------------------ specs (@pulumi/docker inputs)

export interface NetworkSpec {
    readonly name: string;
    readonly internal?: boolean;
    readonly driver?: string;
    readonly options?: Readonly<Record<string, string>>;
    readonly labels?: ReadonlyArray<{ readonly label: string; readonly value: string }>;
}

export interface ContainerNetworkSpec {
    readonly name: string;
    readonly aliases?: readonly string[];
}

export interface ContainerPortSpec {
    readonly internal: number;
    /** Host port; omitted or 0: an ephemeral port (read back in `ContainerInfo.ports`). */
    readonly external?: number;
    /** Host address; must be a loopback address (default 127.0.0.1). */
    readonly ip?: string;
    readonly protocol?: "tcp" | "udp";
}

/** The subset of @pulumi/docker `ContainerArgs` the local stack uses. */
export interface ContainerSpec {
    readonly name: string;
    readonly image: string;
    /** As @pulumi/docker names it; `networks` is accepted as a shorter alias. */
    readonly networksAdvanced?: readonly ContainerNetworkSpec[];
    readonly networks?: readonly ContainerNetworkSpec[];
    readonly ports?: readonly ContainerPortSpec[];
    readonly envs?: readonly string[];
    readonly command?: readonly string[];
    readonly entrypoints?: readonly string[];
    readonly user?: string;
    readonly labels?: ReadonlyArray<{ readonly label: string; readonly value: string }>;
    readonly restart?: "no" | "on-failure" | "always" | "unless-stopped";
    readonly readOnly?: boolean;
}

// ------------------------------------------------------------------ results

export interface ExecResult {
    readonly code: number;
    readonly stdout: string;
    readonly stderr: string;
    readonly ms: number;
}

export class DockerError extends Error {
    constructor(
        readonly args: readonly string[],
        readonly result: ExecResult,
    ) {
        const tail = (result.stderr || result.stdout).trim().split("\n").slice(-25).join("\n");
        super(`docker ${args.slice(0, 3).join(" ")} ... exited ${result.code}:\n${tail}`);
    }
}

export interface ContainerInfo {
    readonly id: string;
    readonly name: string;
    readonly ports: ReadonlyArray<{ readonly internal: number; readonly external: number; readonly ip: string }>;
    /** Per network: the container's address and the network's gateway. */
    readonly networks: Readonly<Record<string, { readonly ip: string; readonly gateway: string }>>;
}

export interface NetworkInfo {
    readonly id: string;
    readonly name: string;
    readonly internal: boolean;
    readonly subnet: string;
    readonly gateway: string;
    /** The host interface of a bridge network (`br-<id>`). */
    readonly bridge: string;
}

// ------------------------------------------------------------------ running docker

export interface RunOptions {
    readonly timeoutMs?: number;
    readonly input?: string;
    /** Resolve with the result instead of throwing on a non-zero exit. */
    readonly allowFailure?: boolean;
    readonly env?: Readonly<Record<string, string>>;
}

/** Runs a command with execFile (no shell), with a timeout. */
export function run(file: string, args: readonly string[], options: RunOptions = {}): Promise<ExecResult> {
    const started = Date.now();
    return new Promise((resolve, reject) => {
        const child = execFile(
            file,
            [...args],
            {
                timeout: options.timeoutMs ?? 2 * MINUTE,
                killSignal: "SIGKILL",
                maxBuffer: 256 * 1024 * 1024,
                env: { ...process.env, ...options.env },
                encoding: "utf8",
            },
            (error, stdout, stderr) => {
                const err = error as (Error & { code?: number | string; killed?: boolean }) | null;
                const code = err ? (typeof err.code === "number" ? err.code : err.killed ? 124 : 1) : 0;
                const result: ExecResult = { code, stdout, stderr: err?.killed ? `${stderr}\n(killed after ${options.timeoutMs ?? 2 * MINUTE} ms)` : stderr, ms: Date.now() - started };
                if (code !== 0 && !options.allowFailure) reject(new DockerError(args, result));
                else resolve(result);
            },
        );
        if (options.input !== undefined) child.stdin?.end(options.input);
    });
}

export function docker(args: readonly string[], options: RunOptions = {}): Promise<ExecResult> {
    return run(DOCKER, args, options);
}

// ------------------------------------------------------------------ availability

export interface Availability {
    readonly ok: boolean;
    readonly reason?: string;
}

/** One bounded HTTP request to the loopback registry, synchronously (a child node process). */
function registryStatusSync(url: string, accept?: string): number {
    assertProjectAddress(new URL(url).hostname);
    const script = `
        const http = require("node:http");
        const req = http.request(process.argv[1], { method: "HEAD", timeout: 3000, headers: process.argv[2] ? { Accept: process.argv[2] } : {} }, (res) => {
            process.stdout.write(String(res.statusCode)); res.resume();
        });
        req.on("timeout", () => req.destroy());
        req.on("error", () => process.stdout.write("0"));
        req.end();`;
    const out = spawnSync(process.execPath, ["-e", script, url, accept ?? ""], { encoding: "utf8", timeout: 10_000 });
    return Number(out.stdout || "0");
}

const MANIFEST_TYPES = "application/vnd.docker.distribution.manifest.v2+json, application/vnd.oci.image.manifest.v1+json";

function splitRef(ref: string): { registry: string; repository: string; tag: string } {
    const m = /^([^/]+)\/(.+):([^:/]+)$/.exec(ref);
    if (!m) throw new Error(`not a registry/repository:tag reference: ${ref}`);
    return { registry: m[1], repository: m[2], tag: m[3] };
}

/** Whether the registry on 127.0.0.1 has `registry/repository:tag`. */
export function registryHas(ref: string): boolean {
    const { registry, repository, tag } = splitRef(ref);
    return registryStatusSync(`http://${registry}/v2/${repository}/manifests/${tag}`, MANIFEST_TYPES) === 200;
}

/** Deletes `registry/repository:tag` from the registry on 127.0.0.1 (the manifest; blobs go with its garbage collection). */
export async function registryDelete(ref: string): Promise<boolean> {
    const { registry, repository, tag } = splitRef(ref);
    const url = `http://${registry}/v2/${repository}/manifests/`;
    let head: HttpResponse;
    try {
        head = await httpRequest(url + tag, { method: "HEAD", headers: { Accept: MANIFEST_TYPES }, timeoutMs: 5000 });
    } catch {
        return false;
    }
    const digest = head.headers["docker-content-digest"];
    if (head.status !== 200 || typeof digest !== "string") return false;
    const del = await httpRequest(url + digest, { method: "DELETE", timeoutMs: 5000 });
    return del.status === 202;
}

/**
 * Whether this machine can run the real-Docker suite: Linux, the client, a
 * daemon that answers, the local registry and the images `scripts/docker-env.sh`
 * makes. The reason says what is missing and how to fix it. Synchronous, so a
 * suite can decide to skip when it is collected.
 */
export function dockerAvailable(requirements: { registry?: string; images?: readonly string[] } = {}): Availability {
    const fix = "run scripts/docker-env.sh (as root)";
    if (process.platform !== "linux") return { ok: false, reason: `needs Linux (this is ${process.platform})` };
    if (!fs.existsSync(DOCKER)) return { ok: false, reason: `${DOCKER} not found (Debian's docker.io client); ${fix}` };
    const version = spawnSync(DOCKER, ["version", "--format", "{{.Server.Version}}"], { encoding: "utf8", timeout: 15_000 });
    if (version.status !== 0) {
        const why = (version.stderr || version.error?.message || "no answer").trim().split("\n").at(-1);
        return { ok: false, reason: `the Docker daemon does not answer (${why}); ${fix}` };
    }
    const registry = requirements.registry ?? LOCAL_REGISTRY;
    if (registryStatusSync(`http://${registry}/v2/`) !== 200) return { ok: false, reason: `no registry answers on http://${registry}/v2/; ${fix}` };
    for (const image of requirements.images ?? []) {
        if (!registryHas(image)) return { ok: false, reason: `${image} is not in the registry; ${fix}` };
    }
    return { ok: true };
}

// ------------------------------------------------------------------ networks and containers

export async function inspectNetwork(name: string): Promise<NetworkInfo> {
    const out = await docker(["network", "inspect", name, "--format", "{{json .}}"]);
    const n = JSON.parse(out.stdout) as {
        Id: string;
        Name: string;
        Internal: boolean;
        Driver: string;
        IPAM: { Config: Array<{ Subnet?: string; Gateway?: string }> | null };
        Options: Record<string, string> | null;
    };
    const ipam = n.IPAM.Config?.[0] ?? {};
    return {
        id: n.Id,
        name: n.Name,
        internal: n.Internal,
        subnet: ipam.Subnet ?? "",
        gateway: ipam.Gateway ?? "",
        bridge: n.Driver === "bridge" ? (n.Options?.["com.docker.network.bridge.name"] ?? `br-${n.Id.slice(0, 12)}`) : "",
    };
}

/** Creates a network as @pulumi/docker Network would; labelled with the session `owner`. */
export async function createNetwork(spec: NetworkSpec, owner: string): Promise<NetworkInfo> {
    const args = ["network", "create", "--label", `${OWNER_LABEL}=${owner}`];
    if (spec.internal) args.push("--internal");
    if (spec.driver) args.push("--driver", spec.driver);
    for (const [k, v] of Object.entries(spec.options ?? {})) args.push("--opt", `${k}=${v}`);
    for (const l of spec.labels ?? []) args.push("--label", `${l.label}=${l.value}`);
    args.push(spec.name);
    await docker(args, { timeoutMs: 30_000 });
    const info = await inspectNetwork(spec.name);
    projectSubnets.set(info.name, info.subnet);
    return info;
}

const LOOPBACK = /^127\.\d+\.\d+\.\d+$/;

/** Creates and starts a container as @pulumi/docker Container would; labelled with the session `owner`. */
export async function runContainer(spec: ContainerSpec, owner: string): Promise<ContainerInfo> {
    const networks = spec.networksAdvanced ?? spec.networks ?? [];
    const args = ["create", "--name", spec.name, "--label", `${OWNER_LABEL}=${owner}`];
    for (const l of spec.labels ?? []) args.push("--label", `${l.label}=${l.value}`);
    for (const e of spec.envs ?? []) args.push("--env", e);
    for (const p of spec.ports ?? []) {
        const ip = p.ip ?? "127.0.0.1";
        if (!LOOPBACK.test(ip)) throw new Error(`container ${spec.name}: port ${p.internal} would be published on ${ip}; only loopback addresses are allowed here`);
        args.push("--publish", `${ip}:${p.external ? String(p.external) : ""}:${p.internal}/${p.protocol ?? "tcp"}`);
    }
    if (networks.length > 0) {
        args.push("--network", networks[0].name);
        for (const a of networks[0].aliases ?? []) args.push("--network-alias", a);
    } else {
        args.push("--network", "none");
    }
    if (spec.user) args.push("--user", spec.user);
    if (spec.restart) args.push("--restart", spec.restart);
    if (spec.readOnly) args.push("--read-only");
    if (spec.entrypoints && spec.entrypoints.length > 0) args.push("--entrypoint", spec.entrypoints[0]);
    args.push(spec.image);
    if (spec.entrypoints && spec.entrypoints.length > 1) args.push(...spec.entrypoints.slice(1));
    args.push(...(spec.command ?? []));
    await docker(args, { timeoutMs: 2 * MINUTE });
    for (const n of networks.slice(1)) {
        const connect = ["network", "connect"];
        for (const a of n.aliases ?? []) connect.push("--alias", a);
        await docker([...connect, n.name, spec.name], { timeoutMs: 30_000 });
    }
    await docker(["start", spec.name], { timeoutMs: MINUTE });
    return inspectContainer(spec.name);
}

export async function inspectContainer(name: string): Promise<ContainerInfo> {
    const out = await docker(["inspect", name, "--format", "{{json .}}"]);
    const c = JSON.parse(out.stdout) as {
        Id: string;
        Name: string;
        NetworkSettings: {
            Ports: Record<string, Array<{ HostIp: string; HostPort: string }> | null> | null;
            Networks: Record<string, { IPAddress: string; Gateway: string }>;
        };
    };
    const ports: Array<{ internal: number; external: number; ip: string }> = [];
    for (const [key, bindings] of Object.entries(c.NetworkSettings.Ports ?? {})) {
        for (const b of bindings ?? []) ports.push({ internal: Number(key.split("/")[0]), external: Number(b.HostPort), ip: b.HostIp });
    }
    const networks: Record<string, { ip: string; gateway: string }> = {};
    for (const [n, v] of Object.entries(c.NetworkSettings.Networks)) networks[n] = { ip: v.IPAddress, gateway: v.Gateway };
    return { id: c.Id, name: c.Name.replace(/^\//, ""), ports, networks };
}

/** `docker exec` in a running container. */
export function execIn(container: string, command: readonly string[], options: RunOptions = {}): Promise<ExecResult> {
    return docker(["exec", container, ...command], { timeoutMs: 30_000, ...options });
}

/** Runs a one-off container to completion (`docker run --rm`). */
export function runOnce(image: string, command: readonly string[], options: RunOptions & { network?: string; user?: string } = {}): Promise<ExecResult> {
    const args = ["run", "--rm", "--network", options.network ?? "none"];
    if (options.user) args.push("--user", options.user);
    return docker([...args, image, ...command], { timeoutMs: MINUTE, ...options });
}

export async function containerState(name: string): Promise<{ running: boolean; exitCode: number; health: string }> {
    const out = await docker(["inspect", name, "--format", "{{.State.Running}} {{.State.ExitCode}} {{if .State.Health}}{{.State.Health.Status}}{{else}}none{{end}}"]);
    const [running, code, health] = out.stdout.trim().split(" ");
    return { running: running === "true", exitCode: Number(code), health };
}

export async function containerLogs(name: string): Promise<string> {
    const out = await docker(["logs", name], { allowFailure: true, timeoutMs: 30_000 });
    return out.stdout + out.stderr;
}

// ------------------------------------------------------------------ host isolation of internal networks

const ISOLATION_COMMENT = "ml-infra-e2e-isolate";

/**
 * Makes an internal bridge network unreachable from the host and the host
 * unreachable from it (20.10 isolates such a network from other networks and
 * the outside, but not from the host, which is its gateway): drops what the
 * host sends into its subnet and what arrives from its bridge. Removed by
 * `cleanup`. Needs root (iptables).
 */
export async function isolateFromHost(network: NetworkInfo): Promise<void> {
    if (!network.internal || !network.bridge || !network.subnet) throw new Error(`${network.name} is not an internal bridge network`);
    const comment = `${ISOLATION_COMMENT}:${network.name}`;
    await run("iptables", ["-w", "-I", "OUTPUT", "-d", network.subnet, "-m", "comment", "--comment", comment, "-j", "DROP"], { timeoutMs: 30_000 });
    await run("iptables", ["-w", "-I", "INPUT", "-i", network.bridge, "-m", "comment", "--comment", comment, "-j", "DROP"], { timeoutMs: 30_000 });
}

async function removeIsolationRules(): Promise<void> {
    const listed = await run("iptables", ["-w", "-S"], { allowFailure: true, timeoutMs: 30_000 });
    if (listed.code !== 0) return;
    for (const rule of listed.stdout.split("\n").filter((l) => l.startsWith("-A ") && l.includes(ISOLATION_COMMENT))) {
        const words = rule.match(/"[^"]*"|\S+/g) ?? [];
        const args = words.map((w) => w.replace(/^"(.*)"$/, "$1"));
        args[0] = "-D";
        await run("iptables", ["-w", ...args], { allowFailure: true, timeoutMs: 30_000 });
    }
}

// ------------------------------------------------------------------ traffic (loopback and own containers only)

/** Subnets of the networks this process created: the only non-loopback addresses it may contact. */
const projectSubnets = new Map<string, string>();

function ipv4ToInt(ip: string): number {
    return ip.split(".").reduce((acc, part) => acc * 256 + Number(part), 0);
}

function inSubnet(ip: string, cidr: string): boolean {
    const [base, bits] = cidr.split("/");
    const size = 2 ** (32 - Number(bits));
    return Math.floor(ipv4ToInt(ip) / size) === Math.floor(ipv4ToInt(base) / size);
}

/** Throws unless `host` is loopback or inside a network this process created. */
export function assertProjectAddress(host: string): void {
    if (host === "localhost" || LOOPBACK.test(host)) return;
    if (net.isIPv4(host) && [...projectSubnets.values()].some((s) => s && inSubnet(host, s))) return;
    throw new Error(`refusing to contact ${host}: only loopback and the project's own container networks may be contacted`);
}

export interface ProbeResult {
    readonly connected: boolean;
    /** errno of a failed connect (ECONNREFUSED, EPERM, EHOSTUNREACH ...) or "timeout". */
    readonly error?: string;
    readonly ms: number;
}

/** One bounded TCP connect attempt from the host. */
export function probeTcp(host: string, port: number, timeoutMs = 2000): Promise<ProbeResult> {
    assertProjectAddress(host);
    const started = Date.now();
    return new Promise((resolve) => {
        const socket = net.connect({ host, port });
        const done = (r: Omit<ProbeResult, "ms">) => {
            socket.destroy();
            resolve({ ...r, ms: Date.now() - started });
        };
        socket.setTimeout(timeoutMs, () => done({ connected: false, error: "timeout" }));
        socket.once("connect", () => done({ connected: true }));
        socket.once("error", (e: NodeJS.ErrnoException) => done({ connected: false, error: e.code ?? e.message }));
    });
}

export interface HttpResponse {
    readonly status: number;
    readonly body: string;
    readonly headers: http.IncomingHttpHeaders;
}

/** One HTTP request from the host to loopback or a project container. */
export function httpRequest(
    url: string,
    options: { method?: string; body?: string; headers?: Record<string, string>; timeoutMs?: number } = {},
): Promise<HttpResponse> {
    const u = new URL(url);
    assertProjectAddress(u.hostname);
    return new Promise((resolve, reject) => {
        const req = http.request(
            u,
            { method: options.method ?? (options.body === undefined ? "GET" : "POST"), headers: options.headers, timeout: options.timeoutMs ?? 5000, agent: false },
            (res) => {
                let body = "";
                res.setEncoding("utf8");
                res.on("data", (chunk: string) => (body += chunk));
                res.on("end", () => resolve({ status: res.statusCode ?? 0, body, headers: res.headers }));
            },
        );
        req.on("timeout", () => req.destroy(new Error(`timeout after ${options.timeoutMs ?? 5000} ms: ${url}`)));
        req.on("error", reject);
        req.end(options.body);
    });
}

/** Polls `url` until it answers 200, at most `timeoutMs`. */
export async function waitForHttp(url: string, timeoutMs = 30_000): Promise<HttpResponse> {
    const deadline = Date.now() + timeoutMs;
    let last = "";
    for (;;) {
        try {
            const res = await httpRequest(url, { timeoutMs: 2000 });
            if (res.status === 200) return res;
            last = `HTTP ${res.status}`;
        } catch (e) {
            last = (e as Error).message;
        }
        if (Date.now() > deadline) throw new Error(`${url} did not answer 200 within ${timeoutMs} ms (last: ${last})`);
        await new Promise((r) => setTimeout(r, 200));
    }
}

// ------------------------------------------------------------------ one user of the engine at a time

export const LOCK_DIR = path.join(os.tmpdir(), "ml-infra-docker.lock");

function pidAlive(pid: number): boolean {
    try {
        process.kill(pid, 0);
        return true;
    } catch (e) {
        return (e as NodeJS.ErrnoException).code === "EPERM";
    }
}

/**
 * Takes the machine-wide lock that the e2e suite and the build-cache benchmark
 * hold while they prune the builder and remove images (two of them at once
 * would wipe each other's state). Waits up to `timeoutMs`; a lock whose holder
 * died is taken over. Returns the release function.
 */
export async function acquireEngineLock(purpose: string, timeoutMs = 15 * MINUTE): Promise<() => void> {
    const deadline = Date.now() + timeoutMs;
    const ownerFile = path.join(LOCK_DIR, "owner");
    for (;;) {
        try {
            fs.mkdirSync(LOCK_DIR);
            fs.writeFileSync(ownerFile, `${process.pid} ${purpose}\n`);
            let released = false;
            return () => {
                if (released) return;
                released = true;
                fs.rmSync(LOCK_DIR, { recursive: true, force: true });
            };
        } catch (e) {
            if ((e as NodeJS.ErrnoException).code !== "EEXIST") throw e;
        }
        let holder = "";
        try {
            holder = fs.readFileSync(ownerFile, "utf8").trim();
        } catch {
            // being created or removed right now
        }
        const pid = Number(holder.split(" ")[0]);
        if (holder && !pidAlive(pid)) {
            fs.rmSync(LOCK_DIR, { recursive: true, force: true });
            continue;
        }
        if (Date.now() > deadline) throw new Error(`the Docker engine is busy (${LOCK_DIR} held by ${holder || "?"}) for over ${timeoutMs} ms`);
        await new Promise((r) => setTimeout(r, 1000));
    }
}

// ------------------------------------------------------------------ cleanup

/**
 * Removes every container and network labelled with `owner` (without one: of
 * every session, e.g. left over by a run that was killed), and the host
 * isolation rules.
 */
export async function cleanup(owner?: string): Promise<void> {
    const filter = `label=${OWNER_LABEL}${owner === undefined ? "" : `=${owner}`}`;
    const containers = await docker(["ps", "-aq", "--filter", filter], { allowFailure: true });
    const ids = containers.stdout.split("\n").filter(Boolean);
    if (ids.length > 0) await docker(["rm", "--force", "--volumes", ...ids], { allowFailure: true, timeoutMs: MINUTE });
    await removeIsolationRules();
    const networks = await docker(["network", "ls", "-q", "--filter", filter], { allowFailure: true });
    for (const id of networks.stdout.split("\n").filter(Boolean)) await docker(["network", "rm", id], { allowFailure: true, timeoutMs: 30_000 });
    for (const [name] of projectSubnets) projectSubnets.delete(name);
}
