/**
 * The reference inference server's Dockerfile serves every hardware target:
 * it parses, every target's stage exists, every build arg a target passes is
 * declared, bases are swappable, layers are ordered for the cache, the
 * Dockerfile frontend is the one the runners' BuildKit ships, and only the
 * CUDA target built on the gpu pool needs a GPU at build time.
 */
import { spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { DockerfileParser, type From } from "dockerfile-ast";
import { describe, expect, it } from "vitest";
import { CATALOG, resolveTarget, targetBuildArgs } from "../components/shared/hardware";
import { ROOT, runnersStackNames, stackFileConfig, stackNames } from "./harness";
import { PROJECT } from "./fixtures";

const CONTEXT = path.join(ROOT, "images/inference-server");
const text = fs.readFileSync(path.join(CONTEXT, "Dockerfile"), "utf8");
const dockerfile = DockerfileParser.parse(text);
const froms = dockerfile.getFROMs();
const stages = froms.map((f) => f.getBuildStage());

/** Stages named by catalog targets and by targets declared in stack files. */
function targetStages(): Map<string, string> {
    const out = new Map<string, string>(Object.entries(CATALOG).map(([n, t]) => [n, t.stage]));
    for (const stack of stackNames()) {
        for (const key of [`${PROJECT}:build`, `${PROJECT}:serve`]) {
            const section = stackFileConfig(stack)[key] as { targets?: Record<string, { stage?: string }> } | undefined;
            for (const [n, t] of Object.entries(section?.targets ?? {})) if (t.stage) out.set(n, t.stage);
        }
    }
    return out;
}

/** Instructions of the stage that starts at `from`. */
function stageInstructions(from: From) {
    const all = dockerfile.getInstructions();
    const start = all.indexOf(from);
    const next = all.findIndex((ins, i) => i > start && ins.getKeyword() === "FROM");
    return all.slice(start + 1, next < 0 ? undefined : next);
}

/** The Dockerfile frontend `npm run tools` builds and docker-env pushes (tools/versions.json). */
const FRONTEND = (JSON.parse(fs.readFileSync(path.join(ROOT, "tools/versions.json"), "utf8")) as { tools: Record<string, { version: string; channel?: string }> }).tools;

/** The stages a stage needs: its FROM, COPY --from and RUN --mount from=, transitively. */
function stageClosure(stage: string): Set<string> {
    const out = new Set<string>();
    const visit = (name: string) => {
        const from = froms.find((f) => f.getBuildStage() === name);
        if (!from || out.has(name)) return;
        out.add(name);
        const parents = [from.getImage() ?? ""];
        for (const ins of stageInstructions(from)) {
            const text = ins.getTextContent();
            parents.push(...[...text.matchAll(/--from=([\w.-]+)/g)].map((m) => m[1]), ...[...text.matchAll(/[,\s]from=([\w.-]+)/g)].map((m) => m[1]));
        }
        for (const p of parents) if (stages.includes(p)) visit(p);
    };
    visit(stage);
    return out;
}

/** The stages in `names` that have a RUN asking for a device, with what it asks. */
function deviceRequests(names: Iterable<string>): Map<string, string[]> {
    const out = new Map<string, string[]>();
    for (const name of names) {
        const from = froms.find((f) => f.getBuildStage() === name) as From;
        const requests = stageInstructions(from)
            .filter((i) => i.getKeyword() === "RUN")
            .flatMap((i) => [...i.getTextContent().matchAll(/--device=(\S+)/g)].map((m) => m[1]));
        if (requests.length > 0) out.set(name, requests);
    }
    return out;
}

describe("reference inference server Dockerfile", () => {
    it("parses, and names the labs channel of the Dockerfile frontend the runners' BuildKit ships (tools/versions.json)", () => {
        expect(froms.length).toBeGreaterThan(3);
        const frontend = FRONTEND["dockerfile-frontend"];
        expect(frontend.channel).toBe("labs");
        expect(dockerfile.getDirectives().map((d) => [d.getName(), d.getValue()])).toEqual([["syntax", `docker/dockerfile:${frontend.version}-${frontend.channel}`]]);
        expect(text.split("\n")[0]).toBe(`# syntax=docker/dockerfile:${frontend.version}-${frontend.channel}`);
    });

    it.each(runnersStackNames())("runners stack %s pulls that frontend through the Docker Hub pull-through rule (runners reach docker.io only through it)", (stack) => {
        const registry = stackFileConfig(stack)[`${PROJECT}:registry`] as { pullThrough?: { enabled?: boolean; dockerHub?: { secretName?: string } } } | undefined;
        expect(registry?.pullThrough?.enabled ?? true).toBe(true);
        expect(registry?.pullThrough?.dockerHub?.secretName, "registry.pullThrough.dockerHub.secretName").toBeTruthy();
    });

    it.each([...targetStages()])("has the stage of target %s (%s)", (_target, stage) => {
        expect(stages).toContain(stage);
    });

    it("gives the GPU check to runtime-cuda only: it needs the GPU (required), runtime-cuda-source and the CPU targets do not", () => {
        const cuda = stageClosure("runtime-cuda");
        expect([...deviceRequests(cuda)].sort()).toEqual([
            ["gpu-check", ["nvidia.com/gpu=all,required=true"]],
            ["gpu-selftest", ["nvidia.com/gpu=all,required=true"]],
        ]);
        expect(CATALOG.cuda12.stage).toBe("runtime-cuda");
        expect(CATALOG.cuda12.pool).toBe("gpu");
        for (const name of Object.keys(CATALOG).filter((n) => CATALOG[n].stage !== "runtime-cuda")) {
            expect([...deviceRequests(stageClosure(CATALOG[name].stage))], name).toEqual([]);
        }
        // The report of the check is copied into the image, before the application code.
        const copies = stageInstructions(froms.find((f) => f.getBuildStage() === "runtime-cuda") as From).filter((i) => i.getKeyword() === "COPY");
        expect(copies.map((c) => c.getTextContent())).toContainEqual(expect.stringMatching(/--from=gpu-selftest \/opt\/gpu-check \/opt\/gpu-check$/));
    });

    it("builds the CPU targets from the same stages as before the GPU check", () => {
        for (const name of ["cpu-avx2", "cpu-avx512", "arm64-neon"]) {
            expect([...stageClosure(CATALOG[name].stage)].sort(), name).toEqual(["kernel-cpu", "model", "python-runtime", "runtime-cpu", "runtime-deps", "toolchain"]);
        }
        expect([...stageClosure("runtime-cuda-source")].sort()).toEqual(["kernel-cuda", "model", "python-runtime", "runtime-cuda-source", "runtime-deps", "toolchain", "torch-source"]);
    });

    it("adds the runtime stages' own layers with COPY --link (a code change pulls none of the layers below)", () => {
        for (const stage of ["runtime-deps", ...new Set(Object.values(CATALOG).map((t) => t.stage))]) {
            const copies = stageInstructions(froms.find((f) => f.getBuildStage() === stage) as From).filter((i) => i.getKeyword() === "COPY");
            expect(copies.length, stage).toBeGreaterThan(0);
            for (const c of copies) expect(c.getTextContent(), stage).toMatch(/^COPY --link /);
        }
    });

    it("lets a build swap the base images", () => {
        expect(dockerfile.getInitialARGs().map((a) => a.getProperty()?.getName())).toEqual(["BASE_IMAGE", "RUNTIME_BASE_IMAGE", "BUILD_BASE_IMAGE"]);
        for (const from of froms) {
            const image = from.getImage() ?? "";
            const internal = stages.includes(image);
            expect(internal || ["${BASE_IMAGE}", "${RUNTIME_BASE_IMAGE}", "${BUILD_BASE_IMAGE}"].includes(image), `FROM ${image}`).toBe(true);
        }
    });

    it.each(Object.keys(CATALOG))("declares every build arg target %s passes", (name) => {
        const declared = new Set(dockerfile.getARGs().map((a) => a.getProperty()?.getName()));
        const args = targetBuildArgs(resolveTarget(name, CATALOG[name]), "b", "r");
        for (const arg of Object.keys(args)) expect(declared, arg).toContain(arg);
    });

    it("runs the multi-hour source build first, so its layers cache independently", () => {
        expect(stages[0]).toBe("torch-source");
        const run = stageInstructions(froms[0]).find((i) => i.getKeyword() === "RUN");
        expect(run?.getTextContent()).toContain("--mount=type=cache,target=/root/.cache/torch-src");
    });

    it("uses BuildKit cache mounts for package downloads", () => {
        const runs = dockerfile.getInstructions().filter((i) => i.getKeyword() === "RUN");
        const cached = runs.filter((r) => r.getTextContent().includes("--mount=type=cache,target=/var/cache/apt"));
        expect(cached.length).toBeGreaterThanOrEqual(2);
        expect(runs.some((r) => r.getTextContent().includes("--mount=type=cache,target=/root/.cache/pip"))).toBe(true);
    });

    it("copies application code last in every runtime stage", () => {
        for (const stage of new Set(Object.values(CATALOG).map((t) => t.stage))) {
            const from = froms.find((f) => f.getBuildStage() === stage) as From;
            const last = stageInstructions(from).at(-1);
            expect(last?.getKeyword()).toBe("COPY");
            expect(last?.getRawArgumentsContent()).toContain("app/server.py");
        }
    });

    it("has a .dockerignore that admits only what the stages copy", () => {
        const ignore = fs.readFileSync(path.join(CONTEXT, ".dockerignore"), "utf8").split("\n");
        expect(ignore).toContain("**");
        const copied = dockerfile
            .getCOPYs()
            // getFromFlag() sees --from only as the first flag; COPY --link --from=... has it second.
            .filter((c) => !c.getFlags().some((f) => f.getName() === "from"))
            .flatMap((c) => c.getArguments().slice(0, -1).map((a) => a.getValue()));
        for (const src of copied) {
            expect(ignore.some((line) => line.startsWith("!") && src.startsWith(line.slice(1))), src).toBe(true);
            expect(fs.existsSync(path.join(CONTEXT, src)), src).toBe(true);
        }
    });
});

describe("the GPU check script (images/inference-server/build/gpu-check.sh)", () => {
    const script = path.join(CONTEXT, "build/gpu-check.sh");
    const query = (env: Record<string, string>) => {
        const dir = fs.mkdtempSync(path.join(os.tmpdir(), "gpu-check-"));
        const report = path.join(dir, "out/report");
        const r = spawnSync("sh", [script, "query", report], { encoding: "utf8", env: { PATH: "/usr/bin:/bin", ...env } });
        const text = fs.existsSync(report) ? fs.readFileSync(report, "utf8") : "";
        fs.rmSync(dir, { recursive: true, force: true });
        return { status: r.status, text, stderr: r.stderr };
    };
    const hostHasGpu = fs.existsSync("/dev") && fs.readdirSync("/dev").some((d) => d.startsWith("nvidia"));

    it("records the device the step saw, deterministically, from the environment CDI set", () => {
        const r = query({ ML_INFRA_GPU_STAND_IN: "1", TARGET_NAME: "cuda12", UNRELATED: "x" });
        expect(r.status, r.stderr).toBe(0);
        expect(r.text.split("\n")).toEqual(expect.arrayContaining(["gpu-check: target=cuda12", "device-request: nvidia.com/gpu=all (required)", "env: ML_INFRA_GPU_STAND_IN=1", "result: device visible"]));
        expect(r.text).not.toContain("UNRELATED");
        expect(query({ ML_INFRA_GPU_STAND_IN: "1", TARGET_NAME: "cuda12" }).text).toBe(r.text);
    });

    it.skipIf(hostHasGpu)("fails when the step saw no GPU at all", () => {
        const r = query({ TARGET_NAME: "cuda12" });
        expect(r.status).toBe(1);
        expect(r.text).toContain("result: no GPU visible");
        expect(r.stderr).toContain("saw no GPU");
    });

    it("refuses wrong usage", () => {
        expect(spawnSync("sh", [script, "selftest", "/nonexistent"]).status).toBe(2);
    });
});
