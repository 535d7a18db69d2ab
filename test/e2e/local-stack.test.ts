/**
 * End to end on Pulumi's real engine: the `local` stack with the Pulumi CLI,
 * the Node.js language host and the docker-build provider built here from Go
 * modules (`npm run tools`), building on the local BuildKit runner (buildkitd
 * v0.23 on 127.0.0.1 with mutual TLS, `sudo npm run docker:env`) into the
 * registry on 127.0.0.1:5000 with the product's registry cache settings.
 *
 * preview, up, up again (no changes), a one-line code change (preview shows
 * exactly the affected images; up rebuilds only that layer from the registry
 * cache on an emptied runner), destroy. The offline plan and the real preview
 * are compared resource by resource.
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
import { type Preview, PulumiProject, type Tools, buildStepsOf, engineAvailable, knownInputs } from "./engine";

const ROOT = path.resolve(__dirname, "../..");
const STACK = "local";
const SIDECAR_IMAGE = `${LOCAL_REGISTRY}/busybox:static`;
const OWNER = `e2e-${process.pid}`;
const MIN = 60_000;
const LOCAL = stackFileConfig(STACK);
const BUILD = LOCAL["ml-infra:build"] as { builder: string };

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
    readonly sidecar: ContainerSpec & { readonly port: number; readonly alias: string };
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
    let built: Record<string, { ref: string; tag: string; cacheRef: string }> = {};
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
        // The offline plan of the same config (npm run plan -- --config <file> --json <out>).
        const out = path.join(os.tmpdir(), `ml-e2e-plan-${process.pid}.json`);
        const { spawnSync } = await import("node:child_process");
        const r = spawnSync(process.execPath, [path.join(ROOT, "node_modules/tsx/dist/cli.mjs"), path.join(ROOT, "scripts/plan.ts"), "--stack", STACK, "--config", project.stackFile, "--json", out], { encoding: "utf8", cwd: ROOT });
        expect(r.status, r.stderr + r.stdout).toBe(0);
        const offline = JSON.parse(fs.readFileSync(out, "utf8")) as { resources: Array<{ type: string; name: string; urn: string; inputs: Record<string, unknown> }> };
        const key = (type: string, urn: string) => `${type} ${urn.split("::").pop()}`;
        expect(creates.map((s) => key(s.newState?.type ?? "", s.urn)).sort()).toEqual(offline.resources.map((x) => key(x.type, x.urn)).sort());
        expect(creates.map((s) => s.urn).sort()).toEqual(offline.resources.map((x) => x.urn).sort());
        for (const step of creates) {
            const mine = offline.resources.find((x) => x.urn === step.urn);
            const engineInputs = knownInputs(step.newState?.inputs ?? {}) as Record<string, unknown>;
            // The provider's Check adds its defaults (e.g. cacheFrom[].disabled): every input the program sets must be there as it set it.
            for (const [k, v] of Object.entries(mine?.inputs ?? {})) {
                if (v === "[secret]") continue;
                expect(engineInputs, `${step.urn} input ${k}`).toHaveProperty(k);
                const wanted = knownInputs(v);
                if (wanted !== null && typeof wanted === "object") expect(engineInputs[k], `${step.urn} input ${k}`).toMatchObject(wanted);
                else expect(engineInputs[k], `${step.urn} input ${k}`).toEqual(wanted);
            }
        }
    }, 5 * MIN);

    it("creates what the stack declares on the first up, pushing every target to the local registry by digest", async () => {
        const up = await project.up();
        expect(up.stdout).toMatch(/\+ \d+ created/);
        const outputs = await project.outputs();
        const images = outputs.images as Record<string, { targets: Record<string, { ref: string; tag: string; cacheRef: string }> }>;
        built = images.inference.targets;
        const declared = (LOCAL["ml-infra:build"] as { images: Array<{ targets: string[] }> }).images[0].targets;
        expect(Object.keys(built).sort()).toEqual([...declared].sort());
        for (const b of Object.values(built)) {
            expect(b.ref).toMatch(/^127\.0\.0\.1:5000\/ml\/inference@sha256:[0-9a-f]{64}$/);
            expect(registryHas(b.tag), b.tag).toBe(true);
            expect(registryHas(b.cacheRef), b.cacheRef).toBe(true);
        }
        const resources = await project.resources();
        const kinds = resources.map((r) => r.type);
        expect(kinds.filter((t) => t === "docker-build:index:Image")).toHaveLength(declared.length);
    }, 20 * MIN);

    it("reports no changes on a second up with nothing changed (no perpetual diff in the real engine)", async () => {
        const expectNone = await project.pulumi(["preview", "--expect-no-changes"]);
        expect(expectNone.code, expectNone.stdout.slice(-3000)).toBe(0);
        const again = await project.up();
        expect(again.stdout).not.toMatch(/\b(created|updated|replaced|deleted)\b/);
        expect(again.stdout).toMatch(/\d+ unchanged/);
    }, 10 * MIN);

    const declaredTargets = (LOCAL["ml-infra:build"] as { images: Array<{ targets: string[] }> }).images.flatMap((i) => i.targets);
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
        sidecar = await runContainer(plan.sidecar, OWNER);
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


    it("after a one-line code change, preview shows exactly the affected images updating; up on an emptied runner rebuilds only that layer from the registry cache", async () => {
        await cleanup(OWNER);
        fs.appendFileSync(path.join(project.dir, "images/inference-server/app/server.py"), `# e2e code change ${Date.now()}\n`);
        const preview = await project.preview();
        const changed = preview.steps.filter((s) => s.op !== "same");
        const images = preview.steps.filter((s) => s.newState?.type === "docker-build:index:Image").map((s) => s.urn.split("::").pop());
        expect(changed.map((s) => [s.op, s.urn.split("::").pop()]).sort()).toEqual(images.map((n) => ["update", n]).sort());
        for (const s of changed) expect(s.diffReasons).toEqual(["contextHash"]);

        // An ephemeral runner: nothing in BuildKit's own cache, only the registry cache.
        const pruned = await buildctl(tools, ["prune", "--all"]);
        expect(pruned.code, pruned.stderr).toBe(0);
        const up = await project.up();
        for (const name of images) {
            const steps = buildStepsOf(up.stdout, name ?? "");
            const rerun = steps.filter((s) => !s.cached);
            expect(steps.length, `${name}: build steps in the up log`).toBeGreaterThan(5);
            expect(rerun.map((s) => s.name), `${name} re-ran`).toEqual([expect.stringMatching(/^\[runtime-cpu \d+\/\d+\] COPY (?:--link )?app\/server\.py \/app\/server\.py$/)]);
        }
        expect(up.stdout).toMatch(/importing cache manifest from 127\.0\.0\.1:5000\/ml\/cache\/inference:cache-/);
    }, 20 * MIN);

    it("destroy leaves no resource, container, network or builder behind", async () => {
        const destroyed = await project.pulumi(["destroy", "--yes"]);
        expect(destroyed.code, destroyed.stdout.slice(-3000)).toBe(0);
        expect((await project.resources()).filter((r) => r.type !== "pulumi:pulumi:Stack")).toEqual([]);
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
