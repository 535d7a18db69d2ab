/**
 * End to end on Pulumi's real engine: the `local` stack with the Pulumi CLI,
 * the Node.js language host and the docker-build provider built here from Go
 * modules (`npm run tools`), building on the local BuildKit runner (buildkitd
 * v0.23 on 127.0.0.1 with mutual TLS, `sudo npm run docker:env`) into the
 * registry on 127.0.0.1:5000 with the product's registry cache settings.
 *
 * preview, up (the shipped chain inference-base -> inference and the metrics
 * sidecar, built for real), up again (no changes, no tag re-pushed), the
 * containers (the metrics sidecar scrapes the server's /metrics by name), a
 * one-line code change (preview shows exactly the server images; up rebuilds
 * only that layer from the registry cache on an emptied runner, under a new
 * release tag, the old one kept), a change to the base (both rebuilt, the
 * server FROM the new base digest), a removed target (its images stay in the
 * registry), destroy (every released image stays). The offline plan and the
 * real preview are compared resource by resource.
 *
 * The docker provider cannot be built here (the Go module proxy refuses
 * github.com/pulumi/pulumi-docker/provider/v5, see tools/README.md), so the
 * engine runs the stack without its `local` section (the containers), and
 * the containers that section declares are run with the Docker CLI from the
 * inputs the program registers under mocks, on the images the engine built.
 *
 * Without the tools or the local runner the suite is skipped with the
 * reason; with CI=true it fails instead.
 */
import { createHash } from "node:crypto";
import * as fs from "node:fs";
import * as net from "node:net";
import * as os from "node:os";
import * as path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { HardwareTarget } from "../../components/shared/hardware";
import { evaluate, loadConfig, stackFileConfig } from "../harness";
import {
    LOCAL_BASE_IMAGE,
    LOCAL_REGISTRY,
    acquireEngineLock,
    cleanup,
    createNetwork,
    dockerAvailable,
    containerLogs,
    execIn,
    httpRequest,
    inspectContainer,
    isolateFromHost,
    probeTcp,
    registryHas,
    runContainer,
    runOnce,
    waitForHttp,
    type ContainerInfo,
    type ContainerSpec,
    type NetworkInfo,
    type NetworkSpec,
} from "./docker";
import { type Preview, PulumiProject, type Tools, UNKNOWN, buildStepsOf, engineAvailable, knownInputs } from "./engine";

const ROOT = path.resolve(__dirname, "../..");
const STACK = "local";
/** The metrics sidecar's base image (scripts/docker-env.sh makes it). */
const SIDECAR_IMAGE = `${LOCAL_REGISTRY}/busybox:static`;
const OWNER = `e2e-${process.pid}`;
const MIN = 60_000;
const LOCAL = stackFileConfig(STACK);
const BUILD = LOCAL["ml-infra:build"] as { builder: string; images: Array<{ name: string; targets: string[]; base?: string }> };
/** Every image × target the stack file builds. */
const DECLARED = BUILD.images.flatMap((i) => i.targets.map((target) => ({ image: i.name, target })));
const CHAIN = { base: "inference-base", server: "inference" } as const;
/** The docker-build Images built FROM a chain base (their base's digest is known only once it is built). */
const CHAINED = DECLARED.filter((d) => BUILD.images.find((i) => i.name === d.image)?.base !== undefined).map((d) => `${d.image}-${d.target}-image`);
const BASE_CONTEXT_FILE = "images/inference-base/etc/pip.conf";

/** The local stack as the engine runs it here: everything but the containers (no docker provider, see above). */
function engineConfig(): Record<string, unknown> {
    const { ["ml-infra:local"]: _containers, ...rest } = LOCAL;
    return rest;
}

// ------------------------------------------------------------------ the containers' plan

interface LocalPlan {
    readonly targets: Readonly<Record<string, HardwareTarget>>;
    readonly networks: { readonly serve: NetworkSpec; readonly sidecars: NetworkSpec };
    readonly server: ContainerSpec & { readonly target: string; readonly port: number };
    readonly sidecar: ContainerSpec & { readonly port: number; readonly alias: string; readonly build: { readonly image: string; readonly target: string } };
}

type Labels = ReadonlyArray<{ readonly label: string; readonly value: string }>;
const labelOf = (labels: Labels | undefined, key: string) => labels?.find((l) => l.label === key)?.value;

/** What the `local` stack's `local` section registers under mocks: the networks and containers the Docker CLI runs. */
async function containerPlan(): Promise<LocalPlan> {
    const targets = loadConfig(LOCAL, STACK).build?.resolvedTargets;
    if (!targets) throw new Error("the local stack has no build section");
    const ev = await evaluate(STACK);
    const networks = ev.ofType("docker:index/network:Network").map((r) => r.inputs as unknown as NetworkSpec);
    const containers = ev.ofType("docker:index/container:Container").map((r) => r.inputs as unknown as ContainerSpec & { labels?: Labels });
    const server = containers.find((c) => (c.ports ?? []).length > 0);
    const sidecar = containers.find((c) => (c.ports ?? []).length === 0);
    const serveNet = networks.find((n) => !n.internal);
    const sidecarNet = networks.find((n) => n.internal === true);
    if (!server || !sidecar || !serveNet || !sidecarNet) throw new Error("the local stack must declare a server, a sidecar and their two networks");
    return {
        targets,
        networks: { serve: serveNet, sidecars: sidecarNet },
        server: { ...server, target: labelOf(server.labels, "ml-infra.target") ?? "", port: (server.ports ?? [])[0].internal },
        sidecar: {
            ...sidecar,
            port: Number(labelOf(sidecar.labels, "ml-infra.sidecar-port")),
            alias: (sidecar.networksAdvanced ?? [])[0]?.aliases?.[0] ?? sidecar.name,
            // The sidecar runs one of the stack's own builds: the engine's digest replaces the mock's.
            build: { image: labelOf(sidecar.labels, "ml-infra.image") ?? "", target: labelOf(sidecar.labels, "ml-infra.target") ?? "" },
        },
    };
}

function cpuFlags(): Set<string> {
    const text = fs.existsSync("/proc/cpuinfo") ? fs.readFileSync("/proc/cpuinfo", "utf8") : "";
    const flags = new Set<string>();
    for (const line of text.split("\n")) {
        const [key, value] = line.split(":");
        if (value !== undefined && ["flags", "Features"].includes(key.trim())) for (const f of value.trim().split(/\s+/)) flags.add(f);
    }
    return flags;
}

const FLAGS = cpuFlags();
const runnable = (t: HardwareTarget) => t.cpuFeatures.every((f) => FLAGS.has(f));

function pythonGet(url: string, timeout = 3): string[] {
    return ["python3", "-c", `import sys, urllib.request; sys.stdout.write(urllib.request.urlopen(${JSON.stringify(url)}, timeout=${timeout}).read().decode())`];
}

/**
 * An HTTP GET by address from inside the busybox sidecar, with nc and its own
 * timeout: busybox-static's `wget -T` crashes (SIGSEGV), so a probe that must
 * give up in time uses `nc -w` (the sidecar's scraper bounds wget with timeout).
 */
function ncGet(ip: string, port: number, urlPath: string): string[] {
    return ["sh", "-c", `printf 'GET ${urlPath} HTTP/1.0\\r\\n\\r\\n' | nc -w 3 ${ip} ${port}`];
}

/** A TCP listener on a host address (a Docker bridge's gateway: local), counting connections. */
function canary(host: string): Promise<{ port: number; connections: () => number; close: () => Promise<void> }> {
    let count = 0;
    const server = net.createServer((socket) => {
        count++;
        // A prober that closes at once resets the connection (ECONNRESET): that is an answer, not an error.
        socket.on("error", () => {});
        socket.end("canary\n");
    });
    return new Promise((resolve, reject) => {
        server.once("error", reject);
        server.listen(0, host, () => {
            const address = server.address() as net.AddressInfo;
            resolve({ port: address.port, connections: () => count, close: () => new Promise((r) => server.close(() => r())) });
        });
    });
}


/** The local runner's buildctl over its TCP endpoint with the client certificate (as the builder connects). */
function buildctl(tools: Tools, args: readonly string[]): Promise<{ code: number; stdout: string; stderr: string }> {
    const client = "/var/lib/ml-infra/local-runner/client";
    return new Promise((resolve) => {
        const { execFile } = require("node:child_process") as typeof import("node:child_process");
        execFile(
            tools.buildctl,
            ["--addr", "tcp://127.0.0.1:1234", "--tlscacert", `${client}/ca.pem`, "--tlscert", `${client}/cert.pem`, "--tlskey", `${client}/key.pem`, "--tlsservername", "127.0.0.1", ...args],
            { encoding: "utf8", timeout: 5 * MIN },
            (error, stdout, stderr) => resolve({ code: error ? 1 : 0, stdout, stderr }),
        );
    });
}

// ------------------------------------------------------------------ preview inputs with unknowns

/** The paths (`a.b`, `a[0]`) of the values the engine does not know yet. */
function unknownPathsOf(value: unknown, at: string): string[] {
    if (value === UNKNOWN) return [at];
    if (Array.isArray(value)) return value.flatMap((v, i) => unknownPathsOf(v, `${at}[${i}]`));
    if (value !== null && typeof value === "object") return Object.entries(value as Record<string, unknown>).flatMap(([k, v]) => unknownPathsOf(v, `${at}.${k}`));
    return [];
}

// ------------------------------------------------------------------ the local registry (loopback only)

const MANIFEST_ACCEPT = [
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
].join(", ");

/** `repo` and `digest` of `127.0.0.1:5000/<repo>@sha256:...`. */
function splitDigestRef(ref: string): { repo: string; digest: string } {
    const m = /^127\.0\.0\.1:5000\/(.+)@(sha256:[0-9a-f]{64})$/.exec(ref);
    if (!m) throw new Error(`not a digest reference in the local registry: ${ref}`);
    return { repo: m[1], digest: m[2] };
}

/** `repo` and `tag` of `127.0.0.1:5000/<repo>:<tag>`. */
function splitTagRef(ref: string): { repo: string; tag: string } {
    const m = /^127\.0\.0\.1:5000\/(.+):([^:/]+)$/.exec(ref);
    if (!m) throw new Error(`not a tag reference in the local registry: ${ref}`);
    return { repo: m[1], tag: m[2] };
}

async function tagsOf(repo: string): Promise<string[]> {
    const res = await httpRequest(`http://${LOCAL_REGISTRY}/v2/${repo}/tags/list`);
    if (res.status !== 200) throw new Error(`tags of ${repo}: HTTP ${res.status}`);
    return [...((JSON.parse(res.body) as { tags: string[] | null }).tags ?? [])].sort();
}

/** The digest a tag or digest resolves to in the registry, or undefined when it does not (HEAD, every manifest type). */
async function resolves(repo: string, reference: string): Promise<string | undefined> {
    const res = await httpRequest(`http://${LOCAL_REGISTRY}/v2/${repo}/manifests/${reference}`, { method: "HEAD", headers: { Accept: MANIFEST_ACCEPT } });
    const digest = res.headers["docker-content-digest"];
    return res.status === 200 && typeof digest === "string" ? digest : undefined;
}

/** The layer digests of the linux/amd64 image a reference names (through an index, e.g. with provenance attestations). */
async function layersOf(repo: string, reference: string): Promise<string[]> {
    const res = await httpRequest(`http://${LOCAL_REGISTRY}/v2/${repo}/manifests/${reference}`, { headers: { Accept: MANIFEST_ACCEPT } });
    if (res.status !== 200) throw new Error(`manifest ${repo}@${reference}: HTTP ${res.status}`);
    const doc = JSON.parse(res.body) as { manifests?: Array<{ digest: string; platform?: { os: string; architecture: string } }>; layers?: Array<{ digest: string }> };
    if (doc.manifests) {
        const image = doc.manifests.find((m) => m.platform?.os === "linux" && m.platform.architecture === "amd64");
        if (!image) throw new Error(`${repo}@${reference}: no linux/amd64 image in the index`);
        return layersOf(repo, image.digest);
    }
    return (doc.layers ?? []).map((l) => l.digest);
}

/**
 * Points a cache tag at an empty image (no cache records), as if no build had
 * exported one: the next build of that target starts cold, as on CI's fresh
 * machine, whatever earlier runs on this machine left in the registry.
 */
async function emptyCache(repo: string, tag: string): Promise<void> {
    const config = "{}";
    const digest = `sha256:${createHash("sha256").update(config).digest("hex")}`;
    const start = await httpRequest(`http://${LOCAL_REGISTRY}/v2/${repo}/blobs/uploads/`, { method: "POST", body: "" });
    const location = start.headers.location;
    if (start.status !== 202 || typeof location !== "string") throw new Error(`upload to ${repo}: HTTP ${start.status}`);
    const upload = new URL(location, `http://${LOCAL_REGISTRY}`);
    upload.searchParams.set("digest", digest);
    const put = await httpRequest(upload.toString(), { method: "PUT", body: config, headers: { "Content-Type": "application/octet-stream" } });
    if (put.status !== 201) throw new Error(`config blob of ${repo}: HTTP ${put.status}`);
    const manifest = JSON.stringify({ schemaVersion: 2, mediaType: "application/vnd.oci.image.manifest.v1+json", config: { mediaType: "application/vnd.oci.image.config.v1+json", digest, size: config.length }, layers: [] });
    const res = await httpRequest(`http://${LOCAL_REGISTRY}/v2/${repo}/manifests/${tag}`, { method: "PUT", body: manifest, headers: { "Content-Type": "application/vnd.oci.image.manifest.v1+json" } });
    if (res.status !== 201) throw new Error(`${repo}:${tag}: HTTP ${res.status} ${res.body}`);
}

type Built = { ref: string; tag: string; cacheRef: string; digest: string };
type BuiltImages = Record<string, Record<string, Built>>;

/** Every tag of every repository the stack pushes to, with the digest each resolves to. */
async function registrySnapshot(images: readonly string[]): Promise<Record<string, string | undefined>> {
    const out: Record<string, string | undefined> = {};
    for (const image of images) {
        for (const tag of await tagsOf(`ml/${image}`)) out[`ml/${image}:${tag}`] = await resolves(`ml/${image}`, tag);
    }
    return out;
}

/** A number from a Prometheus text body, e.g. `inference_requests_total{path="/v1/infer",status="200"}`; 0 when absent. */
function sampleOf(body: string, series: string): number {
    const line = body.split("\n").find((l) => l.startsWith(`${series} `));
    return line ? Number(line.slice(series.length + 1)) : 0;
}

// ------------------------------------------------------------------ the suite

const engine = engineAvailable(BUILD.builder);
const dockerReady = dockerAvailable({ images: [LOCAL_BASE_IMAGE, SIDECAR_IMAGE] });
const why = !dockerReady.ok ? dockerReady.reason : !engine.ok ? engine.reason : undefined;
const inCI = process.env.CI === "true";
if (why) console.warn(`test/e2e/local-stack.test.ts: skipped: ${why}`);

if (why && inCI) {
    describe("the real engine in CI", () => {
        it("is available (CI=true requires the real-engine suite to run)", () => {
            throw new Error(`the real-engine suite cannot run in CI: ${why}`);
        });
    });
}

describe.skipIf(why !== undefined)(`the local stack on Pulumi's real engine${why ? ` (skipped: ${why})` : ""}`, async () => {
    const tools = engine.ok ? engine.tools : (undefined as unknown as Tools);
    const plan = await containerPlan();
    let project: PulumiProject;
    let firstPreview: Preview;
    let all: BuiltImages = {};
    let offlinePlan: Array<{ type: string; name: string; urn: string; inputs: Record<string, unknown> }> | undefined;
    /** The offline plan of the engine's config (npm run plan -- --config <file> --json <out>), made once. */
    const offlinePlanOf = async () => {
        if (offlinePlan) return offlinePlan;
        const out = path.join(os.tmpdir(), `ml-e2e-plan-${process.pid}.json`);
        const { spawnSync } = await import("node:child_process");
        const r = spawnSync(process.execPath, [path.join(ROOT, "node_modules/tsx/dist/cli.mjs"), path.join(ROOT, "scripts/plan.ts"), "--stack", STACK, "--config", project.stackFile, "--json", out], { encoding: "utf8", cwd: ROOT });
        if (r.status !== 0) throw new Error(`npm run plan failed (${r.status}): ${r.stderr}${r.stdout}`);
        offlinePlan = (JSON.parse(fs.readFileSync(out, "utf8")) as { resources: Array<{ type: string; name: string; urn: string; inputs: Record<string, unknown> }> }).resources;
        fs.rmSync(out, { force: true });
        return offlinePlan;
    };
    let built: Record<string, Built> = {};
    let serve: NetworkInfo;
    let sidecars: NetworkInfo;
    let server: ContainerInfo;
    let sidecar: ContainerInfo;
    let serverUrl = "";
    let release = () => {};

    const builtRef = (target: string) => {
        const b = built[target];
        if (!b) throw new Error(`target ${target} was not built`);
        return b.ref;
    };
    const readBuilt = async (): Promise<BuiltImages> => {
        const images = (await project.outputs()).images as Record<string, { targets: Record<string, Built> }>;
        return Object.fromEntries(Object.entries(images).map(([name, i]) => [name, i.targets]));
    };
    /** What the engine recorded for one docker-build Image: its inputs (build args) and outputs (digest). */
    const imageState = async (name: string) => {
        const found = (await project.state()).find((r) => r.type === "docker-build:index:Image" && r.urn.endsWith(`::${name}`));
        if (!found) throw new Error(`no docker-build Image ${name} in the state`);
        return { buildArgs: (found.inputs?.buildArgs ?? {}) as Record<string, string>, digest: String(found.outputs?.digest ?? "") };
    };
    /** The server of each target is built FROM the base of the same target, as the registry holds them (layers) and as the engine recorded it (build args). */
    const expectChain = async (images: BuiltImages, targets: readonly string[]) => {
        for (const target of targets) {
            const base = images[CHAIN.base][target];
            const server = images[CHAIN.server][target];
            const args = (await imageState(`${CHAIN.server}-${target}-image`)).buildArgs;
            expect(args.BASE_IMAGE, `${target} BASE_IMAGE`).toBe(base.ref);
            expect(args.RUNTIME_BASE_IMAGE, `${target} RUNTIME_BASE_IMAGE`).toBe(base.ref);
            expect(args.BUILD_BASE_IMAGE, `${target} BUILD_BASE_IMAGE: the kernels compile on the Debian base`).toBe(LOCAL_BASE_IMAGE);
            const baseLayers = await layersOf(`ml/${CHAIN.base}`, base.digest);
            const serverLayers = await layersOf(`ml/${CHAIN.server}`, server.digest);
            expect(baseLayers.length).toBeGreaterThan(0);
            expect(serverLayers.slice(0, baseLayers.length), `${target}: the server's first layers are the base's`).toEqual(baseLayers);
            expect(serverLayers.length).toBeGreaterThan(baseLayers.length);
        }
    };

    beforeAll(async () => {
        release = await acquireEngineLock(`real-engine suite (vitest pid ${process.pid})`, 20 * MIN);
        await cleanup();
        project = await PulumiProject.create(tools, STACK, engineConfig());
    }, 25 * MIN);

    afterAll(async () => {
        try {
            await cleanup(OWNER);
            if (project) {
                await project.pulumi(["destroy", "--yes"]);
                project.remove();
            }
        } finally {
            release();
        }
    }, 10 * MIN);

    it("previews what the offline plan plans: the same resources, with the same known inputs", async () => {
        firstPreview = await project.preview();
        const creates = firstPreview.steps.filter((s) => s.op === "create" && s.newState && s.newState.type !== "pulumi:pulumi:Stack");
        const offline = { resources: await offlinePlanOf() };
        const key = (type: string, urn: string) => `${type} ${urn.split("::").pop()}`;
        expect(creates.map((s) => key(s.newState?.type ?? "", s.urn)).sort()).toEqual(offline.resources.map((x) => key(x.type, x.urn)).sort());
        expect(creates.map((s) => s.urn).sort()).toEqual(offline.resources.map((x) => x.urn).sort());
        // Images built FROM a chain base: until the base is built, the engine knows no input derived from its digest
        // (the build args, the release tag, and what TargetImage computes with them); the offline plan has a stand-in digest.
        const pending: Record<string, string[]> = {};
        for (const step of creates) {
            const mine = offline.resources.find((x) => x.urn === step.urn);
            const raw = step.newState?.inputs ?? {};
            const name = step.urn.split("::").pop() ?? "";
            for (const [k, v] of Object.entries(mine?.inputs ?? {})) {
                if (v === "[secret]") continue;
                if (CHAINED.includes(name) && (raw[k] === undefined || unknownPathsOf(raw[k], k).length > 0)) {
                    (pending[name] ??= []).push(k);
                    continue;
                }
                // The provider's Check adds its defaults (e.g. cacheFrom[].disabled): every input the program sets must be there as it set it.
                expect(raw, `${step.urn} input ${k}`).toHaveProperty(k);
                expect(unknownPathsOf(raw[k], k), `${step.urn} input ${k}: unknown in the preview`).toEqual([]);
                const engineInputs = knownInputs(raw) as Record<string, unknown>;
                const wanted = knownInputs(v);
                if (wanted !== null && typeof wanted === "object") expect(engineInputs[k], `${step.urn} input ${k}`).toMatchObject(wanted as object);
                else expect(engineInputs[k], `${step.urn} input ${k}`).toEqual(wanted);
            }
        }
        // Only the chained images wait for their base, and at least for what its digest goes into.
        expect(Object.keys(pending).sort()).toEqual([...CHAINED].sort());
        for (const name of CHAINED) expect(pending[name], name).toEqual(expect.arrayContaining(["buildArgs", "tags"]));
    }, 5 * MIN);

    it("creates what the stack declares on the first up, pushing every image × target to the local registry by digest", async () => {
        // Start as CI's fresh machine does: nothing in BuildKit's own cache and no registry cache (earlier
        // runs here leave theirs). The first build then exports complete caches. (A build whose runtime
        // stages run while its compile stages come from an imported cache can export a cache without
        // them: seen here, BuildKit's moby/buildkit#6893; README: Registry and caching.)
        for (const { image, target } of DECLARED) await emptyCache(`ml/cache/${image}`, `cache-${target}`);
        const pruned = await buildctl(tools, ["prune", "--all"]);
        expect(pruned.code, pruned.stderr).toBe(0);
        const up = await project.up();
        expect(up.stdout).toMatch(/\+ \d+ created/);
        all = await readBuilt();
        built = all[CHAIN.server];
        expect(Object.keys(all).sort()).toEqual([...new Set(DECLARED.map((d) => d.image))].sort());
        for (const { image, target } of DECLARED) {
            const b = all[image][target];
            expect(b?.ref, `${image} ${target}`).toMatch(new RegExp(`^127\\.0\\.0\\.1:5000/ml/${image}@sha256:[0-9a-f]{64}$`));
            expect(b.tag).toMatch(new RegExp(`^127\\.0\\.0\\.1:5000/ml/${image}:${target}\\.[0-9a-f]{16}$`));
            expect(registryHas(b.tag), b.tag).toBe(true);
            expect(registryHas(b.cacheRef), b.cacheRef).toBe(true);
            expect(await resolves(`ml/${image}`, splitTagRef(b.tag).tag), b.tag).toBe(b.digest);
        }
        const kinds = (await project.resources()).map((r) => r.type);
        expect(kinds.filter((t) => t === "docker-build:index:Image")).toHaveLength(DECLARED.length);
    }, 20 * MIN);

    it("builds the chain for real: each server FROM the inference-base digest the same up pushed, its kernel compiled on the Debian base", async () => {
        await expectChain(all, BUILD.images.find((i) => i.name === CHAIN.server)?.targets ?? []);
    });

    it("registers for the chained images what the offline plan plans, with the base's real digest where the plan has a stand-in", async () => {
        const plan = await offlinePlanOf();
        const state = await project.state();
        for (const name of CHAINED) {
            const planned = plan.find((r) => r.urn.endsWith(`::${name}`));
            const registered = state.find((r) => r.urn.endsWith(`::${name}`));
            if (!planned || !registered) throw new Error(`${name} is missing from the offline plan or the state`);
            const target = name.slice(`${CHAIN.server}-`.length, -"-image".length);
            const baseRef = all[CHAIN.base][target].ref;
            for (const [k, v] of Object.entries(planned.inputs)) {
                if (v === "[secret]") continue;
                const got = knownInputs(registered.inputs?.[k]);
                if (k === "tags") expect(got, `${name} ${k}`).toEqual([expect.stringMatching(new RegExp(`^127\\.0\\.0\\.1:5000/ml/${CHAIN.server}:${target}\\.[0-9a-f]{16}$`))]);
                else if (k === "buildArgs") expect(got, `${name} ${k}`).toEqual({ ...(v as Record<string, string>), BASE_IMAGE: baseRef, RUNTIME_BASE_IMAGE: baseRef });
                else if (v !== null && typeof v === "object") expect(got, `${name} ${k}`).toMatchObject(knownInputs(v) as object);
                else expect(got, `${name} ${k}`).toEqual(v);
            }
        }
    });

    it("reports no changes on a second up with nothing changed (no perpetual diff in the real engine), and pushes no tag again", async () => {
        const before = await registrySnapshot(Object.keys(all));
        const expectNone = await project.pulumi(["preview", "--expect-no-changes"]);
        expect(expectNone.code, expectNone.stdout.slice(-3000)).toBe(0);
        const again = await project.up();
        expect(again.stdout).not.toMatch(/\b(created|updated|replaced|deleted)\b/);
        expect(again.stdout).toMatch(/\d+ unchanged/);
        expect(again.stdout, "no build ran").not.toMatch(/pushing layers|exporting to image/);
        expect(await registrySnapshot(Object.keys(all))).toEqual(before);
        expect(await readBuilt()).toEqual(all);
    }, 10 * MIN);

    const declaredTargets = BUILD.images.find((i) => i.name === CHAIN.server)?.targets ?? [];
    it.each(declaredTargets.map((name) => [name, plan.targets[name]] as const))(
        "target %s runs here when the CPU has its instructions, else refuses with exit 78",
        async (name, target) => {
            const image = builtRef(name);
            if (runnable(target)) {
                const probe = [
                    "import os, sys; sys.path.insert(0, '/app'); import server",
                    "server.check_cpu(os.environ['TARGET_NAME'], os.environ['REQUIRED_CPU_FEATURES'].split())",
                    "m = server.Model(os.environ['MODEL_PATH'], os.environ['KERNEL_PATH'])",
                    "print(os.environ['TARGET_NAME'], m.isa, len(m.infer([0.5] * 64)))",
                ].join("\n");
                const out = await runOnce(image, ["python3", "-c", probe]);
                const isa = { "cpu-avx2": "avx2", "cpu-avx512": "avx512", "arm64-neon": "neon-dotprod" }[name];
                expect(out.stdout.trim()).toBe(`${name} ${isa ?? out.stdout.split(" ")[1]} 10`);
            } else {
                const out = await runOnce(image, [], { allowFailure: true });
                expect(out.code).toBe(78);
                const missing = target.cpuFeatures.filter((f) => !FLAGS.has(f));
                expect(out.stderr).toContain(`refusing to start: this image is built for hardware target '${name}'`);
                expect(out.stderr).toContain(`this CPU lacks ${missing.join(", ")}`);
            }
        },
        2 * MIN,
    );

    it("creates the networks and starts the server and the sidecar as planned", async () => {
        serve = await createNetwork(plan.networks.serve, OWNER);
        sidecars = await createNetwork(plan.networks.sidecars, OWNER);
        expect(sidecars.internal).toBe(true);
        // Engine 20.10 lets the host reach an internal network (it is the gateway): close that (see docker.ts).
        await isolateFromHost(sidecars);
        expect((await probeTcp("127.0.0.1", plan.sidecar.port, 500)).connected, `something already listens on 127.0.0.1:${plan.sidecar.port}`).toBe(false);
        expect(plan.sidecar.build.image, "the sidecar runs one of the stack's own builds").toBe("local-metrics");
        sidecar = await runContainer({ ...plan.sidecar, image: all[plan.sidecar.build.image][plan.sidecar.build.target].ref }, OWNER);
        server = await runContainer({ ...plan.server, image: builtRef(plan.server.target) }, OWNER);
        const published = server.ports.find((p) => p.internal === plan.server.port);
        expect(published?.ip).toBe("127.0.0.1");
        serverUrl = `http://127.0.0.1:${published?.external}`;
        await waitForHttp(`${serverUrl}/healthz`, 30_000);
    }, 3 * MIN);

    it("answers the health endpoint and an inference request on 127.0.0.1", async () => {
        const health = await httpRequest(`${serverUrl}/healthz`);
        expect(health.status).toBe(200);
        expect(JSON.parse(health.body)).toMatchObject({ status: "ok", target: plan.server.target });

        const inputs = [Array.from({ length: 64 }, (_, i) => i / 64), Array.from({ length: 64 }, (_, i) => Math.sin(i))];
        const res = await httpRequest(`${serverUrl}/v1/infer`, { body: JSON.stringify({ inputs }), headers: { "Content-Type": "application/json" } });
        expect(res.status).toBe(200);
        const body = JSON.parse(res.body) as { outputs: number[][]; target: string };
        expect(body.target).toBe(plan.server.target);
        expect(body.outputs).toHaveLength(2);
        for (const probs of body.outputs) {
            expect(probs).toHaveLength(10);
            expect(probs.reduce((a, b) => a + b, 0)).toBeCloseTo(1, 4);
        }
        // Deterministic model: the same input gives the same answer.
        const again = await httpRequest(`${serverUrl}/v1/infer`, { body: JSON.stringify({ inputs: [inputs[0]] }) });
        expect((JSON.parse(again.body) as { outputs: number[][] }).outputs[0]).toEqual(body.outputs[0]);

        const bad = await httpRequest(`${serverUrl}/v1/infer`, { body: JSON.stringify({ inputs: [[1, 2, 3]] }) });
        expect(bad.status).toBe(400);
    });

    it("publishes only the server's port, and only on 127.0.0.1", async () => {
        expect(server.ports.length).toBeGreaterThan(0);
        for (const p of (await inspectContainer(plan.server.name)).ports) expect(p.ip).toBe("127.0.0.1");
        expect((await inspectContainer(plan.sidecar.name)).ports).toEqual([]);
    });

    it("reaches the sidecar from the server by name (SIDECAR_METRICS_URL)", async () => {
        const url = plan.server.envs?.find((e) => e.startsWith("SIDECAR_METRICS_URL="))?.split("=")[1];
        expect(url).toBe(`http://${plan.sidecar.alias}:${plan.sidecar.port}/`);
        const out = await execIn(plan.server.name, pythonGet(`${url}status`));
        expect(out.stdout).toContain(`target http://${plan.server.name}:${plan.server.port}/metrics`);
    });

    it("serves Prometheus metrics on the server's own port: request counts by path and status, a latency histogram, the model load time", async () => {
        const res = await httpRequest(`${serverUrl}/metrics`);
        expect(res.status).toBe(200);
        expect(res.headers["content-type"]).toBe("text/plain; version=0.0.4; charset=utf-8");
        expect(res.body).toContain("# TYPE inference_requests_total counter");
        expect(res.body).toContain("# TYPE inference_request_duration_seconds histogram");
        expect(sampleOf(res.body, 'inference_requests_total{path="/v1/infer",status="200"}')).toBeGreaterThanOrEqual(2);
        expect(sampleOf(res.body, 'inference_requests_total{path="/v1/infer",status="400"}')).toBe(1);
        expect(sampleOf(res.body, 'inference_request_duration_seconds_bucket{path="/v1/infer",le="+Inf"}')).toBe(sampleOf(res.body, 'inference_request_duration_seconds_count{path="/v1/infer"}'));
        expect(sampleOf(res.body, "inference_model_load_seconds")).toBeGreaterThan(0);
        expect(sampleOf(res.body, `inference_model_info{target="${plan.server.target}",isa="avx2",model="model.npz"}`)).toBe(1);
    });

    it("the metrics sidecar scrapes the server's /metrics by name and keeps what it read: the requests sent to 127.0.0.1 show up there", async () => {
        const ok = 'inference_requests_total{path="/v1/infer",status="200"}';
        const before = sampleOf((await httpRequest(`${serverUrl}/metrics`)).body, ok);
        const n = 7;
        for (let i = 0; i < n; i++) {
            const res = await httpRequest(`${serverUrl}/v1/infer`, { body: JSON.stringify({ inputs: [Array.from({ length: 64 }, (_, j) => (i + j) / 64)] }) });
            expect(res.status).toBe(200);
        }
        // Read inside the sidecar (docker exec): the last scrape it kept, refreshed every SCRAPE_INTERVAL_SECONDS.
        const deadline = Date.now() + 30_000;
        let scraped = "";
        while (Date.now() < deadline) {
            scraped = (await execIn(plan.sidecar.name, ["cat", "/srv/metrics/metrics"], { allowFailure: true })).stdout;
            if (sampleOf(scraped, ok) >= before + n) break;
            await new Promise((r) => setTimeout(r, 500));
        }
        expect(sampleOf(scraped, ok), scraped.slice(0, 2000)).toBeGreaterThanOrEqual(before + n);
        expect(sampleOf(scraped, 'inference_request_duration_seconds_count{path="/v1/infer"}')).toBeGreaterThanOrEqual(before + n);
        expect(sampleOf(scraped, "inference_model_load_seconds")).toBeGreaterThan(0);
        const status = (await execIn(plan.sidecar.name, ["cat", "/srv/metrics/status"])).stdout;
        expect(status).toContain(`target http://${plan.server.name}:${plan.server.port}/metrics`);
        expect(Number(/scrapes_ok (\d+)/.exec(status)?.[1])).toBeGreaterThan(0);
        expect((await containerLogs(plan.sidecar.name))).toContain(`scraped http://${plan.server.name}:${plan.server.port}/metrics`);
        // It serves what it kept on its own port, inside the internal network only.
        const served = await execIn(plan.server.name, pythonGet(`http://${plan.sidecar.alias}:${plan.sidecar.port}/metrics`));
        expect(served.stdout).toContain("# TYPE inference_requests_total counter");
    }, MIN);

    it("reaches no sidecar port from the host, on 127.0.0.1 or on the sidecar's own address", async () => {
        const ip = sidecar.networks[plan.networks.sidecars.name].ip;
        expect(ip).toMatch(/^\d+\.\d+\.\d+\.\d+$/);
        const viaLoopback = await probeTcp("127.0.0.1", plan.sidecar.port, 2000);
        const viaContainerIp = await probeTcp(ip, plan.sidecar.port, 2000);
        expect(viaLoopback.connected, `127.0.0.1:${plan.sidecar.port}`).toBe(false);
        expect(viaContainerIp.connected, `${ip}:${plan.sidecar.port} (${viaContainerIp.error})`).toBe(false);
        // Control: the same port answers inside the internal network.
        expect((await execIn(plan.server.name, pythonGet(`http://${ip}:${plan.sidecar.port}/status`))).stdout).toContain("scrapes_ok");
    });

    it("gives the sidecar no way out of its internal network", async () => {
        const serverServeIp = server.networks[plan.networks.serve.name].ip;
        const serverInternalIp = server.networks[plan.networks.sidecars.name].ip;
        // Control: the server answers the sidecar over the internal network ...
        const inside = await execIn(plan.sidecar.name, ncGet(serverInternalIp, plan.server.port, "/healthz"));
        expect(inside.stdout).toContain('"status": "ok"');
        // ... but not at its address on the other network (that needs routing out of the internal one).
        const across = await execIn(plan.sidecar.name, ncGet(serverServeIp, plan.server.port, "/healthz"), { allowFailure: true });
        expect(across.stdout, `the sidecar reached ${serverServeIp}`).not.toContain("200 OK");

        // Host services: a listener on each bridge's host address (the gateways) must not be reachable from the sidecar.
        const serveGateway = await canary(serve.gateway);
        const ownGateway = await canary(sidecars.gateway);
        try {
            const control = await execIn(plan.server.name, ["python3", "-c", `import socket; socket.create_connection((${JSON.stringify(serve.gateway)}, ${serveGateway.port}), 3).close()`], { allowFailure: true });
            expect(control.code, `control: the server reaches the host canary on ${serve.gateway}: ${control.stderr}`).toBe(0);
            for (const [gateway, c] of [[serve.gateway, serveGateway], [sidecars.gateway, ownGateway]] as const) {
                const out = await execIn(plan.sidecar.name, ["nc", "-w", "3", gateway, String(c.port)], { allowFailure: true, input: "" });
                expect(out.stdout, `sidecar reached ${gateway}:${c.port}`).not.toContain("canary");
            }
            expect(serveGateway.connections()).toBe(1); // only the control
            expect(ownGateway.connections()).toBe(0);
        } finally {
            await serveGateway.close();
            await ownGateway.close();
        }
        // Its only route is its own network (no route through another network).
        const routes = await execIn(plan.sidecar.name, ["ip", "route"]);
        for (const line of routes.stdout.split("\n").filter((l) => l.startsWith("default"))) expect(line).toContain(`via ${sidecars.gateway} `);
    }, 2 * MIN);


    it("after a one-line code change, preview shows exactly the server images updating; up on an emptied runner rebuilds only that layer from the registry cache, under a new release tag, the old one kept", async () => {
        await cleanup(OWNER);
        fs.appendFileSync(path.join(project.dir, "images/inference-server/app/server.py"), `# e2e code change ${Date.now()}\n`);
        const preview = await project.preview();
        const changed = preview.steps.filter((s) => s.op !== "same");
        const servers = declaredTargets.map((t) => `${CHAIN.server}-${t}-image`);
        expect(changed.map((s) => [s.op, s.urn.split("::").pop()]).sort()).toEqual(servers.map((n) => ["update", n]).sort());
        // The context changed, and so does the release tag (a hash of every build input).
        for (const s of changed) expect([...(s.diffReasons ?? [])].sort()).toEqual(["contextHash", "tags"]);

        // An ephemeral runner: nothing in BuildKit's own cache, only the registry cache. The targets
        // build at once on it, as `pulumi up` builds them on a pool.
        const pruned = await buildctl(tools, ["prune", "--all"]);
        expect(pruned.code, pruned.stderr).toBe(0);
        const up = await project.up();
        const appStep = /^\[runtime-cpu \d+\/\d+\] COPY --link app\/server\.py app\/metrics\.py \/app\/$/;
        for (const name of servers) {
            expect(up.stdout, name).toMatch(new RegExp(`${name}\\b[^\\n]*\\bupdated\\b`));
            const steps = buildStepsOf(up.stdout, name);
            expect(steps.length, `${name}: build steps in the up log`).toBeGreaterThan(5);
            // Everything but the application layer comes from the registry cache (COPY --link: that layer does not depend on the ones below it).
            expect(steps.filter((s) => !s.cached).map((s) => s.name), `${name} re-ran`).toEqual([expect.stringMatching(appStep)]);
        }
        expect(up.stdout).toMatch(/importing cache manifest from 127\.0\.0\.1:5000\/ml\/cache\/inference:cache-/);

        const after = await readBuilt();
        // The base and the sidecar are as they were; each server has a new digest under a new tag, and the old tag still names the old digest.
        expect(after[CHAIN.base]).toEqual(all[CHAIN.base]);
        expect(after["local-metrics"]).toEqual(all["local-metrics"]);
        const tags = await tagsOf(`ml/${CHAIN.server}`);
        for (const target of declaredTargets) {
            const old = all[CHAIN.server][target];
            const now = after[CHAIN.server][target];
            expect(now.digest).not.toBe(old.digest);
            expect(now.tag).not.toBe(old.tag);
            expect(tags, `${target}: the new release tag is in the registry`).toContain(splitTagRef(now.tag).tag);
            expect(tags, `${target}: the old release tag is still there`).toContain(splitTagRef(old.tag).tag);
            expect(await resolves(`ml/${CHAIN.server}`, splitTagRef(old.tag).tag), `${old.tag} still resolves to the old digest`).toBe(old.digest);
            expect(await resolves(`ml/${CHAIN.server}`, splitTagRef(now.tag).tag)).toBe(now.digest);
            // The same image but for its last layer (the application): every other layer, base and compiled kernel included, is byte for byte the old one.
            const [oldLayers, newLayers] = [await layersOf(`ml/${CHAIN.server}`, old.digest), await layersOf(`ml/${CHAIN.server}`, now.digest)];
            expect(newLayers.length, `${target}: layers`).toBe(oldLayers.length);
            expect(newLayers.slice(0, -1), `${target}: every layer but the application's is unchanged`).toEqual(oldLayers.slice(0, -1));
            expect(newLayers.at(-1), `${target}: the application layer changed`).not.toBe(oldLayers.at(-1));
        }
        await expectChain(after, declaredTargets);
        all = after;
    }, 20 * MIN);

    it("after a change to the base's context, preview shows the base and every server built FROM it updating, and nothing else", async () => {
        fs.appendFileSync(path.join(project.dir, BASE_CONTEXT_FILE), `# e2e base change ${Date.now()}\n`);
        const preview = await project.preview();
        const changed = preview.steps.filter((s) => s.op !== "same").map((s) => [s.op, s.urn.split("::").pop()]);
        const bases = declaredTargets.map((t) => `${CHAIN.base}-${t}-image`);
        const servers = declaredTargets.map((t) => `${CHAIN.server}-${t}-image`);
        expect(changed.sort()).toEqual([...bases, ...servers].map((n) => ["update", n]).sort());
    }, 10 * MIN);

    it("then up rebuilds the base and every server FROM its new digest; the compile stages stay cached", async () => {
        expect(fs.readFileSync(path.join(project.dir, BASE_CONTEXT_FILE), "utf8")).toContain("# e2e base change");
        const servers = declaredTargets.map((t) => `${CHAIN.server}-${t}-image`);
        // An ephemeral runner again.
        const pruned = await buildctl(tools, ["prune", "--all"]);
        expect(pruned.code, pruned.stderr).toBe(0);
        const up = await project.up();
        for (const name of [...declaredTargets.map((t) => `${CHAIN.base}-${t}-image`), ...servers]) expect(up.stdout, name).toMatch(new RegExp(`${name}\\b[^\\n]*\\bupdated\\b`));
        const after = await readBuilt();
        for (const target of declaredTargets) {
            expect(after[CHAIN.base][target].digest, `${target}: a new base`).not.toBe(all[CHAIN.base][target].digest);
            expect(after[CHAIN.server][target].digest, `${target}: a new server`).not.toBe(all[CHAIN.server][target].digest);
        }
        expect(after["local-metrics"]).toEqual(all["local-metrics"]);
        await expectChain(after, declaredTargets);
        for (const name of servers) {
            const steps = buildStepsOf(up.stdout, name);
            const step = (pattern: RegExp) => {
                const found = steps.find((s) => pattern.test(s.name));
                if (!found) throw new Error(`${name}: no step ${pattern} in the up log; steps: ${steps.map((s) => s.name).join(" | ")}`);
                return found;
            };
            // FROM the new base: the model is generated again on it; the kernel compiles on BUILD_BASE_IMAGE, untouched.
            expect(step(/^\[model \d+\/\d+\] RUN python3 \/src\/make_model\.py/).cached, `${name}: model`).toBe(false);
            expect(step(/^\[kernel-cpu \d+\/\d+\] RUN mkdir -p \/opt\/kernel && gcc/).cached, `${name}: kernel`).toBe(true);
        }
        all = after;
    }, 20 * MIN);

    it("keeps a removed target's images in the registry (retainOnDelete): up deletes the resources, not the releases", async () => {
        const removed = "cpu-avx512";
        const kept = { ...all[CHAIN.base][removed] };
        const keptServer = { ...all[CHAIN.server][removed] };
        const config = engineConfig() as Record<string, unknown> & { "ml-infra:build": { images: Array<{ name: string; targets: string[] }> } };
        const build = config["ml-infra:build"];
        project.writeConfig({
            ...config,
            "ml-infra:build": { ...build, images: build.images.map((i) => ({ ...i, targets: i.targets.filter((t) => t !== removed) })) },
        });
        const up = await project.up();
        expect(up.stdout).toMatch(/- \d+ deleted/);
        const images = (await project.resources()).filter((r) => r.type === "docker-build:index:Image").map((r) => r.urn.split("::").pop());
        expect(images.filter((n) => n?.includes(removed))).toEqual([]);
        for (const [image, b] of [[CHAIN.base, kept], [CHAIN.server, keptServer]] as const) {
            const { repo, digest } = splitDigestRef(b.ref);
            expect(await resolves(repo, digest), `${b.ref} (manifest by digest)`).toBe(digest);
            expect(await resolves(repo, splitTagRef(b.tag).tag), `${b.tag}`).toBe(digest);
            expect(image).toBeTruthy();
        }
    }, 10 * MIN);

    it("destroy leaves no resource, container, network or builder behind, and every released image in the registry", async () => {
        const destroyed = await project.pulumi(["destroy", "--yes"]);
        expect(destroyed.code, destroyed.stdout.slice(-3000)).toBe(0);
        expect((await project.resources()).filter((r) => r.type !== "pulumi:pulumi:Stack")).toEqual([]);
        for (const targets of Object.values(all)) {
            for (const b of Object.values(targets)) {
                const { repo, digest } = splitDigestRef(b.ref);
                expect(await resolves(repo, digest), b.ref).toBe(digest);
            }
        }
        await cleanup(OWNER);
        const { spawnSync } = await import("node:child_process");
        const ls = spawnSync(tools.buildx, ["ls", "--format", "json"], { encoding: "utf8" })
            .stdout.split("\n")
            .filter((l) => l.trim().startsWith("{"))
            .map((l) => (JSON.parse(l) as { Name: string }).Name);
        expect(ls.filter((b) => b !== BUILD.builder && b !== "default")).toEqual([]);
        const containers = spawnSync("/usr/bin/docker", ["ps", "-aq", "--filter", `label=ml-infra.e2e=${OWNER}`], { encoding: "utf8" }).stdout.trim();
        const networks = spawnSync("/usr/bin/docker", ["network", "ls", "-q", "--filter", `label=ml-infra.e2e=${OWNER}`], { encoding: "utf8" }).stdout.trim();
        expect([containers, networks]).toEqual(["", ""]);
    }, 10 * MIN);
});
