/**
 * GPU builds through CDI, proven without a GPU, on Pulumi's real engine.
 *
 * The gpu pool's buildkitd exposes the NVIDIA GPUs through the CDI spec
 * `nvidia-ctk cdi generate` writes at boot and auto-allows the kind
 * `nvidia.com/gpu`; the reference Dockerfile's `gpu-check` stage asks for it
 * with `RUN --device=nvidia.com/gpu=all,required=true` (labs frontend
 * 1.17.1, `# syntax=docker/dockerfile:1.17.1-labs`). Here the local runner
 * (`sudo npm run docker:env`) has the same CDI config with a stand-in spec of
 * the same kind whose device `all` only injects ML_INFRA_GPU_STAND_IN=1.
 *
 * - `buildctl debug workers -v` lists the device as auto-allowed;
 * - `pulumi up` of a stack with one image built for a stand-in target (a
 *   stack-only target: cpu-avx2 with stage `gpu-check` and the local base)
 *   builds that stage through the docker-build provider on the local runner
 *   (the step's earlier results are pruned first, so it runs in this up),
 *   with the labs frontend pulled through the runner's docker.io mirror, and
 *   the pushed image's report shows the stand-in device;
 * - the same stage, with the same inputs the engine gave docker-build
 *   (registry cache included), fails on a throw-away runner that has the
 *   same config but no CDI spec (required=true: BuildKit refuses the LLB
 *   before any step, so not even a cached result of the check is reused),
 *   and that runner lists no device.
 *
 * The stand-in target lives in this suite's own stack config, not in
 * stacks/Pulumi.local.yaml: the local-stack suite runs every image target it
 * finds there as an inference server and expects a code change to re-run
 * COPY app/server.py in each, which a GPU-check image has not.
 *
 * Without the tools, the local runner or root (to start the throw-away
 * runner) the suite is skipped with the reason; with CI=true it fails instead.
 */
import { execFile } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { LOCAL_RUNNER, STAND_IN_GPU_ENV } from "../../components/local/runner";
import { buildctlTcpArgs, freeLoopbackPort, removeLocalRunner, startLocalRunner } from "../../scripts/lib/local-runner";
import { loadConfig, stackFileConfig } from "../harness";
import { type ImageInputs, buildErrors, buildxArgs, dockerfileSteps, runBuildx } from "./buildx";
import { LOCAL_BASE_IMAGE, LOCAL_REGISTRY, acquireEngineLock, dockerAvailable, registryDelete, registryHas, runOnce } from "./docker";
import { PulumiProject, type Tools, engineAvailable } from "./engine";

const MIN = 60_000;
const STACK = "gpu-cdi";
const TARGET = "gpu-stand-in";
const IMAGE = "gpu-cdi-e2e";
const FRONTEND = (JSON.parse(fs.readFileSync(path.join(__dirname, "../../tools/versions.json"), "utf8")) as { tools: Record<string, { version: string; channel: string }> }).tools["dockerfile-frontend"];
const FRONTEND_TAG = `${FRONTEND.version}-${FRONTEND.channel}`;
const FRONTEND_IMAGE = `${LOCAL_REGISTRY}/docker/dockerfile:${FRONTEND_TAG}`;
const REPO = `${LOCAL_REGISTRY}/ml/${IMAGE}`;
const CACHE_REPO = `${LOCAL_REGISTRY}/ml/cache/${IMAGE}`;
/** What the GPU check's RUN step runs (its BuildKit records are described by it). */
const CHECK_STEP = "gpu-check.sh query /opt/gpu-check/report";

/**
 * The suite's stack: the local stack's build section (local registry, the
 * local runner's builder), with one image built for one stack-only stand-in
 * target.
 */
const LOCAL_BUILD = stackFileConfig("local")["ml-infra:build"] as { targets?: Record<string, unknown> } & Record<string, unknown>;
const CONFIG: Record<string, unknown> = {
    "ml-infra:build": {
        ...LOCAL_BUILD,
        targets: {
            ...LOCAL_BUILD.targets,
            [TARGET]: {
                extends: "cpu-avx2",
                description: "the GPU check stage on a CPU machine, with the stand-in CDI GPU of the local runner",
                stage: "gpu-check",
                baseImage: LOCAL_BASE_IMAGE,
            },
        },
        images: [{ name: IMAGE, context: "images/inference-server", targets: [TARGET] }],
    },
};

function buildctl(tools: Tools, stateDir: string, port: number, args: readonly string[]): Promise<{ code: number; stdout: string; stderr: string }> {
    return new Promise((resolve) => {
        execFile(tools.buildctl, [...buildctlTcpArgs(stateDir, port), ...args], { encoding: "utf8", timeout: 2 * MIN }, (error, stdout, stderr) =>
            resolve({ code: error ? 1 : 0, stdout, stderr }),
        );
    });
}

/** When each BuildKit record `buildctl du -v` lists was created, by description. */
function recordsOf(du: string): Array<{ description: string; created: number }> {
    return du
        .split(/\n\s*\n/)
        .map((block) => ({ description: /^Description:\s+(.*)$/m.exec(block)?.[1] ?? "", created: Date.parse((/^Created at:\s+(\S+ \S+)/m.exec(block)?.[1] ?? "").replace(" ", "T") + "Z") }))
        .filter((r) => r.description !== "");
}

/** The devices `buildctl debug workers -v` lists: name and whether BuildKit allows them without `--allow device`. */
function devicesOf(workers: string): Array<{ name: string; autoAllow: boolean }> {
    const section = /^Devices:\n((?:\t.*\n)*)/m.exec(workers)?.[1] ?? "";
    return [...section.matchAll(/Name:\s+(\S+)\n\s+AutoAllow:\s+(\S+)/g)].map((m) => ({ name: m[1], autoAllow: m[2] === "true" }));
}

const engine = engineAvailable(LOCAL_RUNNER.builder);
const dockerReady = dockerAvailable({ images: [LOCAL_BASE_IMAGE, FRONTEND_IMAGE] });
const isRoot = process.getuid?.() === 0;
const why = !dockerReady.ok
    ? dockerReady.reason
    : !engine.ok
      ? engine.reason
      : !isRoot
        ? "starting a throw-away buildkitd (the runner without a GPU spec) needs root"
        : undefined;
const inCI = process.env.CI === "true";
if (why) console.warn(`test/e2e/gpu-cdi.test.ts: skipped: ${why}`);

if (why && inCI) {
    describe("the GPU-through-CDI suite in CI", () => {
        it("is available (CI=true requires the real-engine suites to run)", () => {
            throw new Error(`the GPU-through-CDI suite cannot run in CI: ${why}`);
        });
    });
}

describe.skipIf(why !== undefined)(`GPU builds through CDI on the real engine, with a stand-in GPU${why ? ` (skipped: ${why})` : ""}`, () => {
    const tools = engine.ok ? engine.tools : (undefined as unknown as Tools);
    let project: PulumiProject;
    let release = () => {};
    let built: { ref: string; tag: string; cacheRef: string } | undefined;
    let started = 0;
    const noGpu = { stateDir: "", port: 0, builder: `ml-e2e-no-gpu-${process.pid}` };

    beforeAll(async () => {
        // The configuration is one the program accepts (a stack-only target may change a catalog target's stage and base).
        const target = loadConfig(CONFIG, STACK).build?.resolvedTargets?.[TARGET];
        expect(target).toMatchObject({ stage: "gpu-check", pool: "amd64", platform: "linux/amd64" });
        release = await acquireEngineLock(`GPU-through-CDI suite (vitest pid ${process.pid})`, 20 * MIN);
        // The check must run in this suite's up: no earlier result of it in the runner or the registry cache.
        const pruned = await buildctl(tools, LOCAL_RUNNER.stateDir, LOCAL_RUNNER.port, ["prune", "--filter", `description~="${CHECK_STEP}"`]);
        expect(pruned.code, pruned.stderr).toBe(0);
        for (const ref of [`${REPO}:e2e-${TARGET}`, `${CACHE_REPO}:cache-${TARGET}`]) await registryDelete(ref);
        started = Date.now();
        project = await PulumiProject.create(tools, STACK, CONFIG);
    }, 25 * MIN);

    afterAll(async () => {
        try {
            if (project) {
                await project.pulumi(["destroy", "--yes"]);
                project.remove();
            }
            if (noGpu.stateDir) await removeLocalRunner(noGpu.stateDir, noGpu.builder);
            if (built) for (const ref of [built.tag, built.cacheRef]) await registryDelete(ref);
        } finally {
            release();
        }
    }, 10 * MIN);

    it("the local runner lists the stand-in GPU as a CDI device that needs no --allow (buildctl debug workers -v)", async () => {
        const workers = await buildctl(tools, LOCAL_RUNNER.stateDir, LOCAL_RUNNER.port, ["debug", "workers", "-v"]);
        expect(workers.code, workers.stderr).toBe(0);
        console.log(`buildctl --addr tcp://127.0.0.1:${LOCAL_RUNNER.port} debug workers -v (devices):\n${/^Devices:\n(?:\t.*\n)*/m.exec(workers.stdout)?.[0] ?? "(none)"}`);
        expect(devicesOf(workers.stdout)).toEqual([{ name: "nvidia.com/gpu=all", autoAllow: true }]);
    });

    it("pulumi up builds the GPU stage through docker-build (RUN --device, labs frontend through the docker.io mirror) and the pushed image's report shows the stand-in device", async () => {
        const up = await project.up();
        const outputs = await project.outputs();
        built = (outputs.images as Record<string, { targets: Record<string, { ref: string; tag: string; cacheRef: string }> }>)[IMAGE].targets[TARGET];
        expect(built.ref).toMatch(new RegExp(`^127\\.0\\.0\\.1:5000/ml/${IMAGE}@sha256:[0-9a-f]{64}$`));
        expect(registryHas(built.tag), built.tag).toBe(true);
        expect(registryHas(built.cacheRef), built.cacheRef).toBe(true);

        // The frontend the syntax line names was resolved through the runner's docker.io mirror (the local registry).
        expect(up.stdout).toContain(`resolve image config for docker-image://docker.io/docker/dockerfile:${FRONTEND_TAG}`);
        // The check ran on the local runner during this up (its earlier results were pruned).
        const du = await buildctl(tools, LOCAL_RUNNER.stateDir, LOCAL_RUNNER.port, ["du", "-v", "--filter", `description~="${CHECK_STEP}"`]);
        expect(du.code, du.stderr).toBe(0);
        const records = recordsOf(du.stdout);
        expect(records.map((r) => r.description)).toContainEqual(expect.stringContaining(CHECK_STEP));
        expect(Math.max(...records.map((r) => r.created)), "the check's record was created by this up").toBeGreaterThanOrEqual(started - 1000);

        const report = await runOnce(built.ref, ["cat", "/opt/gpu-check/report"]);
        console.log(`/opt/gpu-check/report of ${built.ref}:\n${report.stdout}`);
        const lines = report.stdout.trim().split("\n");
        expect(lines).toContain(`gpu-check: target=${TARGET}`);
        expect(lines).toContain("device-request: nvidia.com/gpu=all (required)");
        expect(lines).toContain(`env: ${STAND_IN_GPU_ENV}=1`);
        expect(lines.at(-1)).toBe("result: device visible");
        // Only the build step that asked for the device got it: the image itself does not carry the variable.
        const env = await runOnce(built.ref, ["sh", "-c", `echo "\${${STAND_IN_GPU_ENV}:-unset}"`]);
        expect(env.stdout.trim()).toBe("unset");
    }, 20 * MIN);

    it("the same stage, with the inputs the engine gave docker-build, fails on a runner that has no CDI spec (required=true)", async () => {
        noGpu.stateDir = fs.mkdtempSync(path.join(os.tmpdir(), "ml-e2e-no-gpu-"));
        noGpu.port = await freeLoopbackPort();
        const runner = await startLocalRunner({ stateDir: noGpu.stateDir, port: noGpu.port, builder: noGpu.builder, registry: LOCAL_REGISTRY, cdi: "none" });
        expect(runner.version).toMatch(/^v0\.23\./);
        const workers = await buildctl(tools, noGpu.stateDir, noGpu.port, ["debug", "workers", "-v"]);
        expect(workers.code, workers.stderr).toBe(0);
        expect(devicesOf(workers.stdout)).toEqual([]);

        const image = (await project.state()).find((r) => r.type === "docker-build:index:Image");
        expect(image?.inputs, "the Image's inputs in the stack state").toBeDefined();
        const inputs = image?.inputs as ImageInputs;
        expect(inputs.target).toBe("gpu-check");
        // The registry cache holds the check's result from the up above; the build is refused all the same.
        expect(inputs.cacheFrom?.[0]?.registry?.ref).toBe(built?.cacheRef);
        const args = buildxArgs({ ...inputs, push: false, cacheTo: [] }, { cwd: project.dir, builder: noGpu.builder });
        const r = await runBuildx(tools.buildx, args, { timeoutMs: 10 * MIN });
        const errors = buildErrors(r);
        expect(r.code, errors).not.toBe(0);
        expect(errors).toContain('required device "nvidia.com/gpu=all" is not registered');
        // Refused when the LLB is loaded, before any step of the Dockerfile ran or came from the cache.
        expect(dockerfileSteps(r.progress)).toEqual([]);
    }, 10 * MIN);
});
