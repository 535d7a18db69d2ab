/**
 * End to end on a real Docker engine: builds every host-platform target of the
 * reference inference server, pushes it to the registry on 127.0.0.1:5000,
 * realises the serving plan (networks, server, sidecar) with the Docker CLI
 * and checks what the `local` stack promises.
 *
 * The plan is the `local` stack's own: the program is evaluated under Pulumi's
 * mock runtime (`capturedPlan`) and exactly the docker-build Images, Docker
 * networks and containers it registers are realised with the Docker CLI (the
 * mock digests of the server's image are replaced by the digests really built).
 *
 * Needs `scripts/docker-env.sh` first. Without Docker the suite is skipped with
 * the reason; with CI=true it fails instead.
 */
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
    REFERENCE_CONTEXT,
    acquireEngineLock,
    buildImage,
    cleanup,
    createNetwork,
    dockerAvailable,
    dockerfileSteps,
    execIn,
    httpRequest,
    imageSize,
    inspectContainer,
    isolateFromHost,
    probeTcp,
    pruneBuilder,
    registryDelete,
    registryHas,
    removeAllImages,
    runContainer,
    runOnce,
    waitForHttp,
    type BuildResult,
    type ContainerInfo,
    type ContainerSpec,
    type ImageSpec,
    type NetworkInfo,
    type NetworkSpec,
} from "./docker";

const ROOT = path.resolve(__dirname, "../..");
const CONTEXT = REFERENCE_CONTEXT;
const BASE_IMAGE = LOCAL_BASE_IMAGE;
const SIDECAR_IMAGE = `${LOCAL_REGISTRY}/busybox:static`;
const OWNER = `e2e-${process.pid}`;
const MIN = 60_000;

// ------------------------------------------------------------------ the plan

interface PlannedImage {
    readonly target: HardwareTarget;
    readonly spec: ImageSpec;
}

interface LocalPlan {
    readonly images: readonly PlannedImage[];
    readonly networks: { readonly serve: NetworkSpec; readonly sidecars: NetworkSpec };
    /** Containers; `image` names the target whose image they run (server) or an image reference (sidecars). */
    readonly server: ContainerSpec & { readonly target: string; readonly port: number };
    readonly sidecar: ContainerSpec & { readonly port: number; readonly alias: string };
}

function hostPlatform(): string {
    return os.arch() === "arm64" ? "linux/arm64" : "linux/amd64";
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

type Labels = ReadonlyArray<{ readonly label: string; readonly value: string }>;
const labelOf = (labels: Labels | undefined, key: string) => labels?.find((l) => l.label === key)?.value;

/** What the `local` stack registers under mocks, as the plan the Docker CLI realises. */
async function capturedPlan(): Promise<LocalPlan> {
    const config = stackFileConfig("local");
    const targets = loadConfig(config, "local").build?.resolvedTargets;
    if (!targets) throw new Error("the local stack has no build section");
    const ev = await evaluate("local");
    const images = ev.ofType("docker-build:index:Image").map((r) => {
        const spec = r.inputs as unknown as ImageSpec;
        const name = spec.labels?.["ml-infra.target"] ?? "";
        return { target: targets[name], spec };
    });
    const networks = ev.ofType("docker:index/network:Network").map((r) => r.inputs as unknown as NetworkSpec);
    const containers = ev.ofType("docker:index/container:Container").map((r) => r.inputs as unknown as ContainerSpec & { labels?: Labels });
    const server = containers.find((c) => (c.ports ?? []).length > 0);
    const sidecar = containers.find((c) => (c.ports ?? []).length === 0);
    const serveNet = networks.find((n) => !n.internal);
    const sidecarNet = networks.find((n) => n.internal === true);
    if (!server || !sidecar || !serveNet || !sidecarNet) throw new Error("the local stack must declare a server, a sidecar and their two networks");
    return {
        images,
        networks: { serve: serveNet, sidecars: sidecarNet },
        server: { ...server, target: labelOf(server.labels, "ml-infra.target") ?? "", port: (server.ports ?? [])[0].internal },
        sidecar: {
            ...sidecar,
            port: Number(labelOf(sidecar.labels, "ml-infra.sidecar-port")),
            alias: (sidecar.networksAdvanced ?? [])[0]?.aliases?.[0] ?? sidecar.name,
        },
    };
}

// ------------------------------------------------------------------ helpers

/** Cache mount ids the Dockerfile uses for a target directory, by stage. */
function cacheIds(target: string): Map<string, string> {
    const text = fs.readFileSync(path.join(ROOT, CONTEXT, "Dockerfile"), "utf8");
    const ids = new Map<string, string>();
    let stage = "";
    for (const line of text.split("\n")) {
        const from = /^FROM\s+\S+\s+AS\s+(\S+)/i.exec(line);
        if (from) stage = from[1];
        const m = new RegExp(`--mount=type=cache,target=${target.replace(/\//g, "\\/")},id=([^,\\s]+)`).exec(line);
        if (m) ids.set(stage, m[1]);
    }
    return ids;
}

function pythonGet(url: string, timeout = 3): string[] {
    return ["python3", "-c", `import sys, urllib.request; sys.stdout.write(urllib.request.urlopen(${JSON.stringify(url)}, timeout=${timeout}).read().decode())`];
}

/**
 * An HTTP GET from inside the busybox sidecar, with nc: busybox-static's wget
 * crashes resolving even numeric hosts (glibc's static NSS), so the sidecar
 * side uses addresses and nc.
 */
function ncGet(ip: string, port: number, urlPath: string): string[] {
    return ["sh", "-c", `printf 'GET ${urlPath} HTTP/1.0\\r\\n\\r\\n' | nc -w 3 ${ip} ${port}`];
}

/** A TCP listener on a host address (a Docker bridge's gateway: local), counting connections. */
function canary(host: string): Promise<{ port: number; connections: () => number; close: () => Promise<void> }> {
    let count = 0;
    const server = net.createServer((socket) => {
        count++;
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

// ------------------------------------------------------------------ the suite

const availability = dockerAvailable({ images: [BASE_IMAGE, SIDECAR_IMAGE] });
const inCI = process.env.CI === "true";
if (!availability.ok) console.warn(`test/e2e/docker.test.ts: real-Docker suite skipped: ${availability.reason}`);

if (!availability.ok && inCI) {
    describe("real Docker in CI", () => {
        it("is available (CI=true requires the real-Docker suite to run)", () => {
            throw new Error(`Docker is not usable in CI: ${availability.reason}`);
        });
    });
}

describe.skipIf(!availability.ok)(`real Docker${availability.ok ? "" : ` (skipped: ${availability.reason})`}`, async () => {
    const plan = await capturedPlan();
    const built = new Map<string, BuildResult>();
    let tmp = "";
    let serve: NetworkInfo;
    let sidecars: NetworkInfo;
    let server: ContainerInfo;
    let sidecar: ContainerInfo;
    let serverUrl = "";

    const imageOf = (target: string) => {
        const b = built.get(target);
        if (!b) throw new Error(`target ${target} was not built`);
        return b.ref || b.tags[0];
    };

    // The suite starts cold: no containers or networks of an earlier run, an empty
    // builder (cache records and cache mounts), no images, no cache refs in the
    // registry. So the first build really runs every step with the cache mounts,
    // and the rebuild at the end can only use the registry cache this run pushed.
    let release = () => {};

    beforeAll(async () => {
        release = await acquireEngineLock(`e2e suite (vitest pid ${process.pid})`, 12 * MIN);
        tmp = fs.mkdtempSync(path.join(os.tmpdir(), "ml-e2e-"));
        await cleanup();
        await pruneBuilder();
        await removeAllImages();
        for (const { spec } of plan.images) {
            for (const ref of [...(spec.tags ?? []), ...(spec.cacheTo ?? []).flatMap((c) => (c.registry ? [c.registry.ref] : []))]) await registryDelete(ref);
        }
    }, 15 * MIN);

    afterAll(async () => {
        try {
            await cleanup(OWNER);
            if (tmp) fs.rmSync(tmp, { recursive: true, force: true });
        } finally {
            release();
        }
    }, 2 * MIN);

    it("plans every host-platform CPU target and a server this CPU can run", () => {
        expect(plan.images.map((i) => i.target.name)).toContain(hostPlatform() === "linux/amd64" ? "cpu-avx2" : "arm64-neon");
        for (const { spec } of plan.images) expect(spec.buildArgs?.BASE_IMAGE).toBe(BASE_IMAGE);
    });

    it.each(plan.images.map((i) => [i.target.name, i] as const))(
        "builds target %s from the reference Dockerfile and pushes it to the local registry",
        async (name, { spec }) => {
            const result = await buildImage(spec, { cwd: ROOT });
            built.set(name, result);
            console.info(`built ${name} in ${(result.ms / 1000).toFixed(1)} s, pushed in ${(result.pushMs / 1000).toFixed(1)} s: ${result.ref}`);
            expect(result.ref).toMatch(/^127\.0\.0\.1:5000\/ml\/inference@sha256:[0-9a-f]{64}$/);
            // BuildKit builds only the stages this target needs: never the source build or the CUDA kernel.
            const stagesRun = new Set(dockerfileSteps(result.steps).map((st) => /^\[(\S+)/.exec(st.name)?.[1]));
            expect([...stagesRun].sort()).toEqual(["kernel-cpu", "model", "python-runtime", "runtime-cpu", "runtime-deps", "toolchain"]);
            for (const tag of result.tags) expect(registryHas(tag), tag).toBe(true);
            // The runtime image has no compiler and no apt downloads or lists baked in.
            const inside = await runOnce(result.ref, ["sh", "-c", "command -v gcc cc || true; find /var/cache/apt /var/lib/apt/lists -type f -name '*.deb' -o -type f -name '*_Packages*' | wc -l"], { user: "0" });
            expect(inside.stdout.trim()).toBe("0");
        },
        15 * MIN,
    );

    it("keeps the source-build stage cheap when BUILD_FROM_SOURCE=false", async () => {
        const result = await buildImage(
            { context: { location: CONTEXT }, target: "torch-source", buildArgs: { BASE_IMAGE, BUILD_FROM_SOURCE: "false" }, push: false, noCache: true },
            { cwd: ROOT },
        );
        const run = dockerfileSteps(result.steps).find((st) => st.name.startsWith("[torch-source") && st.name.includes("torch-from-source.sh /opt/torch"));
        expect(run?.done).toBe(true);
        expect(run?.seconds ?? 99).toBeLessThan(5);
        expect(result.log).not.toMatch(/Reading package lists|Cloning into/);
    }, 5 * MIN);

    it.each(plan.images.map((i) => [i.target.name, i.target] as const))(
        "target %s runs here when the CPU has its instructions, else refuses with exit 78",
        async (name, target) => {
            const image = imageOf(name);
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
        sidecar = await runContainer(plan.sidecar, OWNER);
        server = await runContainer({ ...plan.server, image: imageOf(plan.server.target) }, OWNER);
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

    it("reaches the sidecar from the server by name", async () => {
        const out = await execIn(plan.server.name, pythonGet(`http://${plan.sidecar.alias}:${plan.sidecar.port}/`));
        expect(out.stdout.trim()).toBe("sidecar");
    });

    it("reaches no sidecar port from the host, on 127.0.0.1 or on the sidecar's own address", async () => {
        const ip = sidecar.networks[plan.networks.sidecars.name].ip;
        expect(ip).toMatch(/^\d+\.\d+\.\d+\.\d+$/);
        const viaLoopback = await probeTcp("127.0.0.1", plan.sidecar.port, 2000);
        const viaContainerIp = await probeTcp(ip, plan.sidecar.port, 2000);
        expect(viaLoopback.connected, `127.0.0.1:${plan.sidecar.port}`).toBe(false);
        expect(viaContainerIp.connected, `${ip}:${plan.sidecar.port} (${viaContainerIp.error})`).toBe(false);
        // Control: the same port answers inside the internal network.
        expect((await execIn(plan.server.name, pythonGet(`http://${ip}:${plan.sidecar.port}/`))).stdout.trim()).toBe("sidecar");
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

    it("used the BuildKit cache mounts for apt: the packages stay in the mount, out of the image", async () => {
        const first = built.get(plan.images[0].target.name);
        if (!first) throw new Error("nothing built");
        const install = first.steps.find((s) => s.name.startsWith("[python-runtime") && s.name.includes("apt-get install"));
        expect(install?.cached, "the cold build ran the dependency install").toBe(false);

        // A later build that mounts the same cache (by the id the Dockerfile gives it) finds the packages there.
        const id = cacheIds("/var/cache/apt").get("python-runtime");
        expect(id).toBeTruthy();
        const probeDir = path.join(tmp, "probe");
        fs.mkdirSync(probeDir, { recursive: true });
        fs.writeFileSync(
            path.join(probeDir, "Dockerfile"),
            [
                "ARG BASE_IMAGE",
                "FROM ${BASE_IMAGE}",
                "ARG NONCE",
                `RUN --mount=type=cache,target=/var/cache/apt,id=${id},sharing=locked echo "probe $NONCE" && ls /var/cache/apt/archives/`,
                "",
            ].join("\n"),
        );
        // A fresh NONCE makes the step run (--no-cache would also give it a fresh, empty cache mount).
        const probe = await buildImage({ context: { location: probeDir }, buildArgs: { BASE_IMAGE, NONCE: String(Date.now()) }, push: false });
        expect(probe.log).toMatch(/python3-numpy_\S+\.deb/);
        expect(probe.log).toMatch(/python3\.\d+-minimal_\S+\.deb/);
    }, 5 * MIN);

    it("after builder prune -af and removing every image, rebuilds a code change from the registry cache re-running only that layer", async () => {
        const target = plan.images.find((i) => i.target.name === plan.server.target);
        if (!target) throw new Error("no server target");
        await cleanup(OWNER); // containers hold their images
        await pruneBuilder();
        expect(await removeAllImages()).toBe(0);

        const context = path.join(tmp, "context");
        fs.cpSync(path.join(ROOT, CONTEXT), context, { recursive: true });
        const marker = `# e2e code change ${Date.now()}`;
        fs.appendFileSync(path.join(context, "app/server.py"), `${marker}\n`);

        const result = await buildImage(
            {
                ...target.spec,
                context: { location: context },
                dockerfile: { location: path.join(context, "Dockerfile") },
                tags: [`${LOCAL_REGISTRY}/ml/inference:e2e-${target.target.name}-changed`],
                cacheTo: [],
                push: false,
            },
            { cwd: ROOT },
        );
        const steps = dockerfileSteps(result.steps);
        const rerun = steps.filter((s) => !s.cached);
        if (rerun.length !== 1) fs.writeFileSync(path.join(os.tmpdir(), "ml-e2e-rebuild.log"), result.log);
        console.info(
            `empty-builder rebuild in ${(result.ms / 1000).toFixed(1)} s; ${steps.length} Dockerfile steps, re-run: ${rerun.map((s) => s.name).join("; ")}`,
        );
        expect(steps.length).toBeGreaterThan(5);
        expect(rerun.map((s) => s.name)).toEqual([expect.stringMatching(/^\[runtime-cpu \d+\/\d+\] COPY app\/server\.py \/app\/server\.py$/)]);
        expect(result.log).toContain(`importing cache manifest from ${target.spec.cacheFrom?.[0].registry?.ref}`);
        const tail = await runOnce(result.tags[0], ["tail", "-n", "1", "/app/server.py"]);
        expect(tail.stdout.trim()).toBe(marker);
        console.info(`runtime image ${result.tags[0]}: ${((await imageSize(result.tags[0])) / 1e6).toFixed(0)} MB`);
    }, 10 * MIN);
});
