/**
 * The Dockerfiles of the shipped images: the reference inference server
 * serves every hardware target (it parses, every target's stage exists, every
 * build arg a target passes is declared, bases are swappable, layers are
 * ordered for the cache, the Dockerfile frontend is the one the runners'
 * BuildKit ships, only the CUDA target built on the gpu pool needs a GPU at
 * build time); inference-base carries what the server is built FROM, per
 * target stage; every sidecar kind has a small Dockerfile on a pinned upstream
 * image, declared as such in the build stack; the server's /metrics renders
 * the Prometheus text format (the real module, run by python3).
 */
import { spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { type Dockerfile, DockerfileParser, type From, type Instruction } from "dockerfile-ast";
import { describe, expect, it } from "vitest";
import { SIDECAR_KINDS } from "../components/serve/sidecars";
import { CATALOG, resolveTarget, targetBuildArgs } from "../components/shared/hardware";
import { ROOT, runnersStackNames, stackFileConfig, stackNames } from "./harness";
import { PROJECT } from "./fixtures";

const IN_CI = process.env.CI === "true";

/** A Dockerfile parsed, with the helpers the tests below need. */
interface Parsed {
    readonly context: string;
    readonly text: string;
    readonly dockerfile: Dockerfile;
    readonly froms: From[];
    readonly stages: string[];
    /** Instructions of the stage that starts at `from`. */
    stageInstructions(from: From): Instruction[];
    /** Instructions of the stage named `stage`. */
    instructionsOf(stage: string): Instruction[];
    /** The stages a stage needs: its FROM, COPY --from and RUN --mount from=, transitively. */
    closure(stage: string): Set<string>;
    /** The image a stage starts from, following FROM through the file's own stages (e.g. `${RUNTIME_BASE_IMAGE}`). */
    rootImage(stage: string): string;
}

function parse(context: string, file = "Dockerfile"): Parsed {
    const text = fs.readFileSync(path.join(context, file), "utf8");
    const dockerfile = DockerfileParser.parse(text);
    const froms = dockerfile.getFROMs();
    const stages = froms.map((f) => f.getBuildStage() ?? "");
    const all = dockerfile.getInstructions();
    const stageInstructions = (from: From) => {
        const start = all.indexOf(from);
        const next = all.findIndex((ins, i) => i > start && ins.getKeyword() === "FROM");
        return all.slice(start + 1, next < 0 ? undefined : next);
    };
    const fromOf = (stage: string) => {
        const from = froms.find((f) => f.getBuildStage() === stage);
        if (!from) throw new Error(`no stage ${stage} in ${path.join(context, file)}`);
        return from;
    };
    const closure = (stage: string) => {
        const out = new Set<string>();
        const visit = (name: string) => {
            const from = froms.find((f) => f.getBuildStage() === name);
            if (!from || out.has(name)) return;
            out.add(name);
            const parents = [from.getImage() ?? ""];
            for (const ins of stageInstructions(from)) {
                const t = ins.getTextContent();
                parents.push(...[...t.matchAll(/--from=([\w.-]+)/g)].map((m) => m[1]), ...[...t.matchAll(/[,\s]from=([\w.-]+)/g)].map((m) => m[1]));
            }
            for (const p of parents) if (stages.includes(p)) visit(p);
        };
        visit(stage);
        return out;
    };
    const rootImage = (stage: string): string => {
        const image = fromOf(stage).getImage() ?? "";
        return stages.includes(image) ? rootImage(image) : image;
    };
    return { context, text, dockerfile, froms, stages, stageInstructions, instructionsOf: (stage) => stageInstructions(fromOf(stage)), closure, rootImage };
}

const SERVER = parse(path.join(ROOT, "images/inference-server"));
const BASE = parse(path.join(ROOT, "images/inference-base"));
const CONTEXT = SERVER.context;
const { text, dockerfile, froms, stages } = SERVER;
const stageInstructions = SERVER.stageInstructions;
const stageClosure = SERVER.closure;
/** The runtime stages the catalog's targets build. */
const CATALOG_STAGES = [...new Set(Object.values(CATALOG).map((t) => t.stage))];

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

/** The Dockerfile frontend `npm run tools` builds and docker-env pushes (tools/versions.json). */
const FRONTEND = (JSON.parse(fs.readFileSync(path.join(ROOT, "tools/versions.json"), "utf8")) as { tools: Record<string, { version: string; channel?: string }> }).tools;

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

/** The sources a Dockerfile COPYs from its context (not from another stage). */
function contextSources(parsed: Parsed): string[] {
    return parsed.dockerfile
        .getCOPYs()
        // getFromFlag() sees --from only as the first flag; COPY --link --from=... has it second.
        .filter((c) => !c.getFlags().some((f) => f.getName() === "from"))
        .flatMap((c) => c.getArguments().slice(0, -1).map((a) => a.getValue()));
}

/** The context's .dockerignore admits exactly what is copied, and every copied source exists. */
function expectIgnoreAdmitsCopies(parsed: Parsed): void {
    const ignore = fs.readFileSync(path.join(parsed.context, ".dockerignore"), "utf8").split("\n");
    expect(ignore).toContain("**");
    const copied = contextSources(parsed);
    expect(copied.length).toBeGreaterThan(0);
    for (const src of copied) {
        expect(ignore.some((line) => line.startsWith("!") && src.startsWith(line.slice(1))), src).toBe(true);
        expect(fs.existsSync(path.join(parsed.context, src)), src).toBe(true);
    }
}

/** Images of a stack file's build section. */
type StackImage = { name: string; context: string; targets: string[]; base?: string; baseImage?: string; stage?: string; multiArch?: { amd64: string; arm64: string } };
const stackImages = (stack: string) => (stackFileConfig(stack)[`${PROJECT}:build`] as { images: StackImage[] }).images;

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

    it("builds the CPU targets from the same stages as before; the source-built PyTorch is no stage of its own any more (it comes with inference-base)", () => {
        for (const name of ["cpu-avx2", "cpu-avx512", "arm64-neon"]) {
            expect([...stageClosure(CATALOG[name].stage)].sort(), name).toEqual(["kernel-cpu", "model", "python-runtime", "runtime-cpu", "runtime-deps", "toolchain"]);
        }
        expect([...stageClosure("runtime-cuda-source")].sort()).toEqual(["kernel-cuda", "model", "python-runtime", "runtime-cuda-source", "runtime-deps", "toolchain"]);
        expect(stages).not.toContain("torch-source");
    });

    it("starts every runtime stage from RUNTIME_BASE_IMAGE (the inference-base digest in the chain) and compiles on BUILD_BASE_IMAGE (the target's build base)", () => {
        for (const stage of [...CATALOG_STAGES, "model", "gpu-check"]) expect(SERVER.rootImage(stage), stage).toBe("${RUNTIME_BASE_IMAGE}");
        for (const stage of ["toolchain", "kernel-cpu", "kernel-cuda"]) expect(SERVER.rootImage(stage), stage).toBe("${BUILD_BASE_IMAGE}");
        // Nothing of a compile stage reaches a runtime image but the compiled kernel (COPY --from).
        for (const stage of CATALOG_STAGES) {
            const fromCompile = SERVER.instructionsOf(stage).filter((i) => /--from=kernel-/.test(i.getTextContent()));
            expect(fromCompile.map((i) => i.getTextContent().replace(/--from=kernel-\w+/, "--from=kernel")), stage).toEqual(["COPY --link --from=kernel /opt/kernel /opt/kernel"]);
        }
    });

    it("keys every stage of every shipped Dockerfile that starts from a base image by TARGET_NAME before its first RUN, so each target's registry cache is self-contained", () => {
        // Targets on one base would otherwise share these steps; BuildKit runs shared steps once for
        // builds that run at once on one runner, and a target's cache export can then lack them.
        const sidecars = fs.readdirSync(path.join(ROOT, "images/sidecars")).map((kind) => parse(path.join(ROOT, "images/sidecars", kind)));
        for (const parsed of [SERVER, BASE, ...sidecars]) {
            for (const from of parsed.froms) {
                if (!(from.getImage() ?? "").startsWith("${")) continue;
                const ins = parsed.stageInstructions(from);
                const firstRun = ins.findIndex((i) => i.getKeyword() === "RUN");
                if (firstRun < 0) continue;
                const arg = ins.findIndex((i) => i.getKeyword() === "ARG" && /^ARG TARGET_NAME(?:=|$)/.test(i.getTextContent()));
                expect(arg, `${parsed.context}: stage ${from.getBuildStage()} declares ARG TARGET_NAME before its first RUN`).toBeGreaterThanOrEqual(0);
                expect(arg, `${parsed.context}: stage ${from.getBuildStage()}`).toBeLessThan(firstRun);
            }
        }
        // ...and every target passes its own name.
        for (const name of Object.keys(CATALOG)) expect(targetBuildArgs(resolveTarget(name, CATALOG[name]), "b", "r").TARGET_NAME, name).toBe(name);
    });

    it("stays buildable on its own (the build benchmark, the GPU suite): Python, NumPy and the PyTorch wheels are installed only when the base lacks them", () => {
        const python = SERVER.instructionsOf("python-runtime").find((i) => i.getKeyword() === "RUN")?.getTextContent() ?? "";
        expect(python).toMatch(/if python3 -c 'import numpy' 2>\/dev\/null; then exit 0; fi/);
        expect(python).toContain("apt-get install -y --no-install-recommends python3 python3-numpy");
        const torch = SERVER.instructionsOf("runtime-cuda").find((i) => i.getKeyword() === "RUN")?.getTextContent() ?? "";
        expect(torch).toMatch(/find_spec\("torch"\) is None\)'; then exit 0; fi/);
        expect(torch).toContain('--index-url "https://download.pytorch.org/whl/${TORCH_VARIANT}" torch');
        // The multi-hour source build is only in the base: without it, runtime-cuda-source refuses to build.
        const source = SERVER.instructionsOf("runtime-cuda-source").find((i) => i.getKeyword() === "RUN")?.getTextContent() ?? "";
        expect(source).toMatch(/test -d \/opt\/torch\/site-packages\/torch[\s\\]*\|\| \{ echo "runtime-cuda-source is built FROM inference-base/);
    });

    it("adds the runtime stages' own layers with COPY --link (a code change pulls none of the layers below)", () => {
        for (const stage of ["runtime-deps", ...CATALOG_STAGES]) {
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

    it.each(Object.keys(CATALOG))("declares every build arg target %s passes, in the server or in inference-base", (name) => {
        const declared = new Set([...dockerfile.getARGs(), ...BASE.dockerfile.getARGs()].map((a) => a.getProperty()?.getName()));
        const args = targetBuildArgs(resolveTarget(name, CATALOG[name]), "b", "r");
        for (const arg of Object.keys(args)) expect(declared, arg).toContain(arg);
    });

    it("declares the kernel's build args in the server and PyTorch's in inference-base", () => {
        const declaredIn = (p: Parsed) => new Set(p.dockerfile.getARGs().map((a) => a.getProperty()?.getName()));
        for (const arg of ["KERNEL_CFLAGS", "CUDA_ARCH_LIST", "CUDA_VERSION", "TARGET_NAME", "REQUIRED_CPU_FEATURES"]) expect(declaredIn(SERVER), arg).toContain(arg);
        for (const arg of ["TORCH_VARIANT", "BUILD_FROM_SOURCE", "TORCH_CUDA_ARCH_LIST"]) expect(declaredIn(BASE), arg).toContain(arg);
    });

    it("uses BuildKit cache mounts for package downloads", () => {
        const runs = dockerfile.getInstructions().filter((i) => i.getKeyword() === "RUN");
        const cached = runs.filter((r) => r.getTextContent().includes("--mount=type=cache,target=/var/cache/apt"));
        expect(cached.length).toBeGreaterThanOrEqual(2);
        expect(runs.some((r) => r.getTextContent().includes("--mount=type=cache,target=/root/.cache/pip"))).toBe(true);
    });

    it("copies application code last in every runtime stage, in one layer", () => {
        for (const stage of CATALOG_STAGES) {
            const from = froms.find((f) => f.getBuildStage() === stage) as From;
            const last = stageInstructions(from).at(-1);
            expect(last?.getKeyword()).toBe("COPY");
            expect(last?.getTextContent(), stage).toBe("COPY --link app/server.py app/metrics.py /app/");
        }
    });

    it("has a .dockerignore that admits only what the stages copy", () => {
        expectIgnoreAdmitsCopies(SERVER);
    });
});

describe("inference-base Dockerfile (the base of the shipped chain)", () => {
    it("has the stage of every catalog target, so a dependent's base is its own target's", () => {
        for (const stage of CATALOG_STAGES) expect(BASE.stages, stage).toContain(stage);
        for (const [target, stage] of targetStages()) expect(BASE.stages, `${target} (${stage})`).toContain(stage);
    });

    it("starts every runtime stage from RUNTIME_BASE_IMAGE and the source build from BUILD_BASE_IMAGE (nvcc)", () => {
        expect(BASE.dockerfile.getInitialARGs().map((a) => a.getProperty()?.getName())).toEqual(["BASE_IMAGE", "RUNTIME_BASE_IMAGE", "BUILD_BASE_IMAGE"]);
        for (const stage of CATALOG_STAGES) expect(BASE.rootImage(stage), stage).toBe("${RUNTIME_BASE_IMAGE}");
        expect(BASE.rootImage("torch-source")).toBe("${BUILD_BASE_IMAGE}");
    });

    it("runs the multi-hour source build first, so its layers cache independently, and only runtime-cuda-source needs it", () => {
        expect(BASE.stages[0]).toBe("torch-source");
        const run = BASE.stageInstructions(BASE.froms[0]).find((i) => i.getKeyword() === "RUN");
        expect(run?.getTextContent()).toContain("--mount=type=cache,target=/root/.cache/torch-src");
        expect([...BASE.closure("runtime-cuda-source")].sort()).toEqual(["python-runtime", "runtime-cuda-source", "torch-source"]);
        expect([...BASE.closure("runtime-cuda")].sort()).toEqual(["python-runtime", "runtime-cuda"]);
        expect([...BASE.closure("runtime-cpu")].sort()).toEqual(["python-runtime", "runtime-cpu"]);
    });

    it("carries Python, NumPy and pip for every target, PyTorch's wheels for runtime-cuda and its source build for runtime-cuda-source", () => {
        const python = BASE.instructionsOf("python-runtime").find((i) => i.getKeyword() === "RUN")?.getTextContent() ?? "";
        expect(python).toContain("apt-get install -y --no-install-recommends python3 python3-numpy python3-pip");
        expect(python).toContain("--mount=type=cache,target=/var/cache/apt");
        const cuda = BASE.instructionsOf("runtime-cuda").map((i) => i.getTextContent()).join("\n");
        expect(cuda).toContain('--index-url "https://download.pytorch.org/whl/${TORCH_VARIANT}" torch');
        expect(cuda).toContain("--mount=type=cache,target=/root/.cache/pip");
        const source = BASE.instructionsOf("runtime-cuda-source").map((i) => i.getTextContent());
        expect(source).toContain("COPY --link --from=torch-source /opt/torch /opt/torch");
        expect(source).toContain("ENV PYTHONPATH=/opt/torch/site-packages");
    });

    it("ends every target's stage with the pip configuration its services inherit (COPY --link: changing it re-runs nothing below)", () => {
        for (const stage of CATALOG_STAGES) {
            expect(BASE.instructionsOf(stage).at(-1)?.getTextContent(), stage).toBe("COPY --link etc/pip.conf /etc/pip.conf");
        }
        expect(fs.readFileSync(path.join(BASE.context, "etc/pip.conf"), "utf8")).toMatch(/^\[global\]\nbreak-system-packages = true$/m);
    });

    it("has a .dockerignore that admits only what the stages copy", () => {
        expectIgnoreAdmitsCopies(BASE);
    });

    it.each(["build", "local"])("is the base of the reference server in stack %s: the same targets, the server FROM its digest", (stack) => {
        const images = stackImages(stack);
        const base = images.find((i) => i.context === "images/inference-base");
        const server = images.find((i) => i.context === "images/inference-server");
        expect(base?.name).toBe("inference-base");
        expect(server?.base).toBe("inference-base");
        expect(server?.baseImage).toBeUndefined();
        expect([...(server?.targets ?? [])].sort()).toEqual([...(base?.targets ?? [])].sort());
        expect(images.indexOf(base as StackImage)).toBeLessThan(images.indexOf(server as StackImage));
    });
});

/** Upstream registries the shipped runners stack has pull-through rules for. */
const PULL_THROUGH_HOSTS = ["public.ecr.aws", "quay.io", "docker.io"];

describe.each(SIDECAR_KINDS)("the %s sidecar image", (kind) => {
    const context = path.join(ROOT, "images/sidecars", kind);
    const parsed = parse(context);
    const declared = stackImages("build").find((i) => i.name === kind);
    const initial = parsed.dockerfile.getInitialARGs();
    const defaultBase = initial.find((a) => a.getProperty()?.getName() === "BASE_IMAGE")?.getProperty()?.getValue() ?? "";

    it("declares BASE_IMAGE, a pinned upstream release on a registry the pull-through cache serves, and builds a `sidecar` stage FROM it", () => {
        expect(initial.map((a) => a.getProperty()?.getName())).toEqual(["BASE_IMAGE"]);
        const host = defaultBase.split("/")[0];
        expect(PULL_THROUGH_HOSTS, defaultBase).toContain(host);
        const tag = /:([A-Za-z0-9_.-]+)$/.exec(defaultBase)?.[1] ?? "";
        expect(tag, `${defaultBase} names a version`).toMatch(/\d+\.\d+|RELEASE\.\d{4}-\d{2}-\d{2}/);
        expect(tag).not.toMatch(/latest|stable|^\d+$/);
        expect(parsed.stages).toEqual(["sidecar"]);
        expect(parsed.froms[0].getImage()).toBe("${BASE_IMAGE}");
        // The image records what it was built from.
        expect(parsed.text).toMatch(/org\.opencontainers\.image\.base\.name="\$\{BASE_IMAGE\}"/);
        expect(parsed.text).toMatch(new RegExp(`org\\.opencontainers\\.image\\.title="${kind}"`));
    });

    it("is built by the build stack under the kind's name: from that upstream image, stage sidecar, multi-arch amd64 + arm64", () => {
        expect(declared).toEqual({
            name: kind,
            context: `images/sidecars/${kind}`,
            baseImage: defaultBase,
            stage: "sidecar",
            targets: ["cpu-avx2", "arm64-neon"],
            multiArch: { amd64: "cpu-avx2", arm64: "arm64-neon" },
        });
    });

    it("copies only files it has", () => {
        for (const src of contextSources(parsed)) expect(fs.existsSync(path.join(context, src)), src).toBe(true);
        if (contextSources(parsed).length > 0) expectIgnoreAdmitsCopies(parsed);
    });
});

describe("what each sidecar image keeps or changes of its upstream image", () => {
    const of = (kind: string) => parse(path.join(ROOT, "images/sidecars", kind));
    const keyword = (p: Parsed, word: string) => p.dockerfile.getInstructions().filter((i) => i.getKeyword() === word).map((i) => i.getArgumentsContent() ?? "");

    it("model-sync: the entrypoint is the aws CLI (model-fetch passes `s3 sync ...` as its command)", () => {
        expect(keyword(of("model-sync"), "ENTRYPOINT")).toEqual(['["/usr/local/bin/aws"]']);
        expect(keyword(of("model-sync"), "CMD")).toEqual([]);
    });

    it("metrics-exporter: keeps the collector's entrypoint and command (its config comes in AOT_CONFIG_CONTENT) and drops root", () => {
        expect(keyword(of("metrics-exporter"), "ENTRYPOINT")).toEqual([]);
        expect(keyword(of("metrics-exporter"), "CMD")).toEqual([]);
        expect(keyword(of("metrics-exporter"), "USER")).toEqual(["10001:10001"]);
    });

    it("tensorboard: pinned TensorBoard on the upstream Python, unprivileged, bound to 127.0.0.1 by default", () => {
        const tb = of("tensorboard");
        expect(keyword(tb, "USER")).toEqual(["10001:10001"]);
        expect(keyword(tb, "CMD")[0]).toContain('"--host", "127.0.0.1"');
        const requirements = fs.readFileSync(path.join(tb.context, "requirements.txt"), "utf8").split("\n").filter((l) => l && !l.startsWith("#"));
        expect(requirements).toContain("tensorboard==2.20.0");
        for (const line of requirements) expect(line, "every requirement is pinned or bounded").toMatch(/(==|<)/);
    });

    it.each(["log-router", "minio"])("%s: keeps the upstream image's user, entrypoint and command (FireLens and the task volume need them)", (kind) => {
        for (const word of ["USER", "ENTRYPOINT", "CMD", "RUN"]) expect(keyword(of(kind), word), word).toEqual([]);
    });
});

describe("the local stack's metrics sidecar (images/sidecars/local-metrics)", () => {
    const parsed = parse(path.join(ROOT, "images/sidecars/local-metrics"));
    const script = path.join(parsed.context, "scrape.sh");
    const declared = stackImages("local").find((i) => i.name === "local-metrics");

    it("builds a `sidecar` stage on the local registry's busybox, unprivileged, and the local stack builds it from there", () => {
        expect(parsed.stages).toEqual(["sidecar"]);
        expect(parsed.froms[0].getImage()).toBe("${BASE_IMAGE}");
        expect(declared).toMatchObject({ context: "images/sidecars/local-metrics", baseImage: "127.0.0.1:5000/busybox:static", stage: "sidecar" });
        expect(parsed.text).toMatch(/^USER 65534:65534$/m);
        expect(parsed.text).toMatch(/^COPY --chmod=0755 scrape\.sh \/bin\/scrape-metrics$/m);
    });

    it("scrapes the server by name from SERVER_URL and keeps the last good scrape", () => {
        const body = fs.readFileSync(script, "utf8");
        expect(body).toContain('url="${SERVER_URL%/}${path}"');
        expect(body).toMatch(/timeout 5 wget -q -O "\$dir\/\.scrape" "\$url"/);
        expect(body).toMatch(/mv -f "\$dir\/\.scrape" "\$dir\/metrics"/);
        const r = spawnSync("sh", ["-n", script], { encoding: "utf8" });
        expect(r.status, r.stderr).toBe(0);
    });

    it("refuses to start without SERVER_URL, saying what it needs", () => {
        const r = spawnSync("sh", [script], { encoding: "utf8", env: { PATH: "/usr/bin:/bin" } });
        expect(r.status).not.toBe(0);
        expect(r.stderr).toContain("SERVER_URL (the server by name, e.g. http://inference:8080/) is required");
    });

    it.for(["images/sidecars/local-metrics/scrape.sh", "images/inference-base/build/torch-from-source.sh"])("%s passes shellcheck", (file, ctx) => {
        const has = spawnSync("sh", ["-c", "command -v shellcheck"]).status === 0;
        if (!has) {
            if (IN_CI) throw new Error("shellcheck is not installed; .ci/run must install it");
            ctx.skip("shellcheck is not installed here (CI installs it)");
        }
        const r = spawnSync("shellcheck", [path.join(ROOT, file)], { encoding: "utf8" });
        expect(r.status, r.stdout + r.stderr).toBe(0);
    });
});

// ------------------------------------------------------------------ /metrics (the real module, run by python3)

interface Sample {
    readonly name: string;
    readonly labels: Readonly<Record<string, string>>;
    readonly value: number;
}
interface Exposition {
    readonly types: ReadonlyMap<string, string>;
    readonly helps: ReadonlyMap<string, string>;
    readonly samples: readonly Sample[];
}

const METRIC_NAME = "[a-zA-Z_:][a-zA-Z0-9_:]*";
const LABEL = `([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\\\\\n]|\\\\[\\\\"n])*)"`;
const VALUE = "([+-]?(?:\\d+(?:\\.\\d*)?(?:[eE][+-]?\\d+)?|\\.\\d+(?:[eE][+-]?\\d+)?)|[+-]Inf|NaN)";

/**
 * Parses the Prometheus text exposition format 0.0.4 strictly: every line a
 * HELP, a TYPE (once per family, before its samples) or a sample of a declared
 * family; label values escaped. Throws on the first line that is not.
 */
function parseExposition(body: string): Exposition {
    expect(body.endsWith("\n"), "ends with a line feed").toBe(true);
    const types = new Map<string, string>();
    const helps = new Map<string, string>();
    const samples: Sample[] = [];
    const seenSamples = new Set<string>();
    const family = (name: string) => {
        if (types.has(name)) return name;
        const m = /^(.*)_(bucket|sum|count)$/.exec(name);
        if (m && ["histogram", "summary"].includes(types.get(m[1]) ?? "")) return m[1];
        throw new Error(`sample ${name} has no # TYPE before it`);
    };
    for (const line of body.slice(0, -1).split("\n")) {
        let m: RegExpExecArray | null;
        if ((m = new RegExp(`^# HELP (${METRIC_NAME}) (.*)$`).exec(line))) {
            if (helps.has(m[1])) throw new Error(`second HELP for ${m[1]}`);
            helps.set(m[1], m[2]);
        } else if ((m = new RegExp(`^# TYPE (${METRIC_NAME}) (counter|gauge|histogram|summary|untyped)$`).exec(line))) {
            if (types.has(m[1])) throw new Error(`second TYPE for ${m[1]}`);
            if (seenSamples.has(m[1])) throw new Error(`TYPE of ${m[1]} after its samples`);
            types.set(m[1], m[2]);
        } else if ((m = new RegExp(`^(${METRIC_NAME})(?:\\{((?:${LABEL})(?:,${LABEL})*)?\\})? ${VALUE}(?: -?\\d+)?$`).exec(line))) {
            const labels: Record<string, string> = {};
            for (const l of (m[2] ?? "").matchAll(new RegExp(LABEL, "g"))) {
                if (l[1] in labels) throw new Error(`label ${l[1]} twice in ${line}`);
                labels[l[1]] = l[2].replace(/\\(["\\n])/g, (_x, c: string) => (c === "n" ? "\n" : c));
            }
            const raw = line.slice(line.lastIndexOf(" ") + 1);
            seenSamples.add(family(m[1]));
            samples.push({ name: m[1], labels, value: raw === "+Inf" ? Infinity : raw === "-Inf" ? -Infinity : Number(raw) });
        } else {
            throw new Error(`not a line of the text format 0.0.4: ${JSON.stringify(line)}`);
        }
    }
    return { types, helps, samples };
}

const hasPython = spawnSync("python3", ["-c", "import sys; sys.exit(sys.version_info < (3, 9))"]).status === 0;

/** Runs the server's real metrics module with python3: `script` gets `m`, a ServerMetrics with a fixed clock. */
function renderMetrics(script: string): { body: string; stdout: string } {
    const program = [
        "import sys",
        `sys.path.insert(0, ${JSON.stringify(path.join(CONTEXT, "app"))})`,
        "import metrics",
        "m = metrics.ServerMetrics(clock=lambda: 1700000000.25)",
        script,
        "sys.stdout.write(metrics.CONTENT_TYPE + '\\n' + m.render())",
    ].join("\n");
    const r = spawnSync("python3", ["-c", program], { encoding: "utf8" });
    if (r.status !== 0) throw new Error(`python3 failed: ${r.stderr}`);
    const [contentType, ...rest] = r.stdout.split("\n");
    expect(contentType).toBe("text/plain; version=0.0.4; charset=utf-8");
    return { body: rest.join("\n"), stdout: r.stdout };
}

describe("the reference server's /metrics (images/inference-server/app/metrics.py, standard library only)", () => {
    const need = (ctx: { skip: (note: string) => void }) => {
        if (hasPython) return;
        if (IN_CI) throw new Error("python3 (3.9 or later) is not installed");
        ctx.skip("python3 (3.9 or later) is not installed here");
    };
    const sample = (e: Exposition, name: string, labels: Record<string, string> = {}) => e.samples.find((s) => s.name === name && JSON.stringify(s.labels) === JSON.stringify(labels))?.value;

    it("renders the request counter, the latency histogram, the model load time and the model info in the text format 0.0.4", (ctx) => {
        need(ctx);
        const { body } = renderMetrics(
            [
                "m.model_load.set(0.125)",
                "m.model_info.set(1, target='cpu-avx2', isa='avx2', model='model.npz')",
                "for seconds in (0.0004, 0.003, 0.003, 0.07, 12.0): m.observe_request('/v1/infer', 200, seconds)",
                "m.observe_request('/v1/infer?debug=1', 400, 0.002)",
                "m.observe_request('/healthz', 200, 0.0001)",
                "m.observe_request('/etc/passwd', 404, 0.0001)",
                "m.inputs.inc(7)",
            ].join("\n"),
        );
        const e = parseExposition(body);
        expect(Object.fromEntries(e.types)).toEqual({
            inference_requests_total: "counter",
            inference_request_duration_seconds: "histogram",
            inference_requests_in_flight: "gauge",
            inference_inputs_total: "counter",
            inference_model_load_seconds: "gauge",
            inference_model_info: "gauge",
            process_start_time_seconds: "gauge",
        });
        for (const name of e.types.keys()) expect(e.helps.get(name), name).toBeTruthy();
        expect(sample(e, "inference_requests_total", { path: "/v1/infer", status: "200" })).toBe(5);
        expect(sample(e, "inference_requests_total", { path: "/v1/infer", status: "400" })).toBe(1);
        expect(sample(e, "inference_requests_total", { path: "/healthz", status: "200" })).toBe(1);
        // Unknown paths share one series: a scanner cannot grow the label set.
        expect(sample(e, "inference_requests_total", { path: "other", status: "404" })).toBe(1);
        expect(e.samples.filter((s) => s.name === "inference_requests_total").map((s) => s.labels.path).sort()).toEqual(["/healthz", "/v1/infer", "/v1/infer", "other"]);
        expect(sample(e, "inference_model_load_seconds")).toBe(0.125);
        expect(sample(e, "inference_model_info", { target: "cpu-avx2", isa: "avx2", model: "model.npz" })).toBe(1);
        expect(sample(e, "inference_inputs_total")).toBe(7);
        expect(sample(e, "inference_requests_in_flight")).toBe(0);
        expect(sample(e, "process_start_time_seconds")).toBe(1700000000.25);
    });

    it("keeps the histogram cumulative, in increasing `le` order, with +Inf equal to _count and _sum the sum of what it saw", (ctx) => {
        need(ctx);
        const { body } = renderMetrics("for seconds in (0.0004, 0.003, 0.003, 0.07, 12.0): m.observe_request('/v1/infer', 200, seconds)\nm.observe_request('/v1/infer', 400, 0.002)");
        const e = parseExposition(body);
        const buckets = e.samples.filter((s) => s.name === "inference_request_duration_seconds_bucket" && s.labels.path === "/v1/infer");
        const les = buckets.map((b) => b.labels.le);
        expect(les.at(-1)).toBe("+Inf");
        const bounds = les.map((l) => (l === "+Inf" ? Infinity : Number(l)));
        expect(bounds).toEqual([...bounds].sort((a, b) => a - b));
        expect(new Set(bounds).size).toBe(bounds.length);
        expect(bounds.slice(0, -1)).toEqual([0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10]);
        const counts = buckets.map((b) => b.value);
        expect(counts).toEqual([...counts].sort((a, b) => a - b));
        const count = sample(e, "inference_request_duration_seconds_count", { path: "/v1/infer" });
        expect(count).toBe(6);
        expect(counts.at(-1)).toBe(count);
        // 0.0004 <= 0.001; two 0.003 and the 0.002 <= 0.005; 0.07 <= 0.1; 12 s only in +Inf.
        const at = (le: string) => buckets.find((b) => b.labels.le === le)?.value;
        expect([at("0.001"), at("0.0025"), at("0.005"), at("0.1"), at("10.0"), at("+Inf")]).toEqual([1, 2, 4, 5, 5, 6]);
        expect(sample(e, "inference_request_duration_seconds_sum", { path: "/v1/infer" })).toBeCloseTo(0.0004 + 0.003 + 0.003 + 0.07 + 12 + 0.002, 10);
    });

    it("escapes label values and refuses what the format cannot carry", (ctx) => {
        need(ctx);
        const { body } = renderMetrics("m.model_info.set(1, target='a\"b', isa='back\\\\slash', model='two\\nlines')");
        const e = parseExposition(body);
        expect(e.samples.find((s) => s.name === "inference_model_info")?.labels).toEqual({ target: 'a"b', isa: "back\\slash", model: "two\nlines" });
        expect(body).toContain('inference_model_info{target="a\\"b",isa="back\\\\slash",model="two\\nlines"} 1');
        const bad = spawnSync("python3", ["-c", `import sys; sys.path.insert(0, ${JSON.stringify(path.join(CONTEXT, "app"))}); import metrics; m = metrics.ServerMetrics(); m.requests.inc(path="/x")`], { encoding: "utf8" });
        expect(bad.status).not.toBe(0);
        expect(bad.stderr).toContain("inference_requests_total takes labels path, status, got path");
        const negative = spawnSync("python3", ["-c", `import sys; sys.path.insert(0, ${JSON.stringify(path.join(CONTEXT, "app"))}); import metrics; metrics.ServerMetrics().inputs.inc(-1)`], { encoding: "utf8" });
        expect(negative.stderr).toContain("a counter only goes up");
    });

    it("the strict parser refuses what is not the format (so the checks above can fail)", () => {
        expect(() => parseExposition("inference_requests_total 1\n")).toThrow(/no # TYPE before it/);
        expect(() => parseExposition("# TYPE x counter\nx{a=\"1\"} one\n")).toThrow(/not a line of the text format/);
        expect(() => parseExposition('# TYPE x gauge\nx{a="un"escaped"} 1\n')).toThrow(/not a line/);
        expect(() => parseExposition("# TYPE x gauge\nx 1\n# TYPE x gauge\n")).toThrow(/second TYPE/);
        expect(parseExposition('# TYPE x gauge\nx{a="q\\"",b="n"} +Inf\n').samples).toEqual([{ name: "x", labels: { a: 'q"', b: "n" }, value: Infinity }]);
    });

    it("is served by the server on its own port, as its one new route", () => {
        const server = fs.readFileSync(path.join(CONTEXT, "app/server.py"), "utf8");
        expect(server).toMatch(/elif path == "\/metrics":\n\s+self\._send_bytes\(200, metrics\.render\(\)\.encode\(\), METRICS_CONTENT_TYPE\)/);
        expect(server).toContain("metrics.model_load.set(time.perf_counter() - loading)");
        // Standard library only: the metrics module imports nothing else.
        const imports = [...fs.readFileSync(path.join(CONTEXT, "app/metrics.py"), "utf8").matchAll(/^(?:import|from) (\w+)/gm)].map((m) => m[1]);
        expect(imports.sort()).toEqual(["math", "threading", "time"]);
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
