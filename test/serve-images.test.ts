/**
 * Where every image an environment runs comes from (components/serve/images.ts),
 * pure: digests a build could have produced, references, the allow-list, and
 * the resolution of every container's image from the config and the build
 * stack's outputs with the account, the region and the digests it built.
 */
import { createHash } from "node:crypto";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import {
    type ImageProblem,
    allowedEntryFor,
    allowedImageEntryProblem,
    builtDigests,
    builtRegistry,
    digestProblem,
    refProblem,
    resolveServeImages,
} from "../components/serve/images";
import { serveSchema } from "../components/serve/schema";
import { CATALOG, type HardwareTarget, resolveTarget } from "../components/shared/hardware";
import { REGISTRY, digestOf, refOf, sidecarImageOutputs } from "./fixtures";

const hex = (seed: string) => createHash("sha256").update(seed).digest("hex");
const RUNS = Number(process.env.FUZZ_SCALE ?? 1) * 200;

describe("digests a build could have produced", () => {
    it("accepts real sha256 digests", () => {
        fc.assert(
            fc.property(fc.string(), (seed) => digestProblem(`sha256:${hex(seed)}`) === undefined),
            { numRuns: RUNS },
        );
    });

    it.each([
        ["all zeros", `sha256:${"0".repeat(64)}`, /is all zeros: a placeholder, not a digest a build produced/],
        ["zeros ending in a small number (the old catalogue's)", `sha256:${"0".repeat(63)}1`, /has a run of 63 "0"s: a placeholder/],
        ["one repeated digit", `sha256:${"a".repeat(64)}`, /has a run of 64 "a"s/],
        ["a run of 16 in a real digest", `sha256:${hex("x").slice(0, 40)}${"7".repeat(16)}${hex("x").slice(0, 8)}`, /has a run of 16 "7"s/],
        ["a 32-digit pattern twice (the old prod file's)", "sha256:a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f90", /repeats "a1b2c3d4e5f60718293a4b5c6d7e8f90"/],
        ["a 16-digit pattern four times (the old prod file's)", "sha256:7e6d5c4b3a29180f7e6d5c4b3a29180f7e6d5c4b3a29180f7e6d5c4b3a29180f", /repeats "7e6d5c4b3a29180f"/],
        ["a 3-digit pattern that does not divide 64", `sha256:${"abc".repeat(22).slice(0, 64)}`, /repeats "abc"/],
        ["five distinct digits", `sha256:${"0123401234012343210432104321041230412304123041234013240132401324".slice(0, 64)}`, /only 5 distinct hex digits/],
        ["upper case", `sha256:${hex("u").toUpperCase()}`, /is upper-case; registries write sha256 digests in lower case/],
        ["63 digits", `sha256:${hex("s").slice(0, 63)}`, /has 63 hex digits; a sha256 digest has exactly 64/],
        ["65 digits", `sha256:${hex("s")}0`, /has 65 hex digits/],
        ["not hex", `sha256:${hex("s").slice(0, 63)}g`, /not hex digits/],
        ["another algorithm", `sha512:${hex("s")}`, /is not sha256:<64 hex digits>/],
    ])("refuses %s", (_what, digest, message) => {
        expect(digestProblem(digest)).toMatch(message);
    });
});

describe("image references", () => {
    it.each([
        [refOf("inference"), undefined],
        [`${REGISTRY}/ml/inference:latest`, /is a tag \(":latest"\), not pinned by digest/],
        [`${REGISTRY}/ml/inference`, /is not pinned by digest/],
        [`${REGISTRY}/ml/inference:v1@${digestOf("v1")}`, /names a tag \(":v1"\) as well as a digest/],
        [`inference@${digestOf("x")}`, /names no registry host/],
        [`ml/inference@${digestOf("x")}`, /names no registry host/],
        [`${REGISTRY}/ML/Inference@${digestOf("x")}`, /is not a repository name/],
        [`${REGISTRY}/ml/inference@sha256:${"0".repeat(64)}`, /all zeros/],
        [` ${refOf("inference")}`, /without spaces/],
    ])("%s", (ref, problem) => {
        if (problem === undefined) expect(refProblem(ref)).toBeUndefined();
        else expect(refProblem(ref)).toMatch(problem);
    });
});

describe("serve.allowedImages", () => {
    it.each([
        ["public.ecr.aws/aws-observability/aws-otel-collector", undefined],
        ["210987654321.dkr.ecr.us-east-1.amazonaws.com/shared/", undefined],
        ["registry.example:5000/team/tool", undefined],
        ["ghcr.io", /a whole registry is never allowed/],
        ["ghcr.io/", /allows a whole registry/],
        ["ghcr.io/org/tool:v1", /never a tag or a digest/],
        [`ghcr.io/org/tool@${digestOf("t")}`, /never a tag or a digest/],
        ["org/tool", /must be <registry host>\/<repository>/],
        ["ghcr.io/Org/Tool", /is not a repository name or namespace/],
    ])("%s", (entry, problem) => {
        if (problem === undefined) expect(allowedImageEntryProblem(entry)).toBeUndefined();
        else expect(allowedImageEntryProblem(entry)).toMatch(problem);
    });

    it("admits a repository exactly, or every repository under a namespace", () => {
        const tool = `ghcr.io/org/tool@${digestOf("t")}`;
        expect(allowedEntryFor(tool, ["ghcr.io/org/tool"])).toBe("ghcr.io/org/tool");
        expect(allowedEntryFor(tool, ["ghcr.io/org/"])).toBe("ghcr.io/org/");
        expect(allowedEntryFor(tool, ["ghcr.io/org/to"])).toBeUndefined();
        expect(allowedEntryFor(tool, ["ghcr.io/or/"])).toBeUndefined();
        expect(allowedEntryFor(`ghcr.io/org/tool-two@${digestOf("t")}`, ["ghcr.io/org/tool"])).toBeUndefined();
    });
});

// ------------------------------------------------------------------ resolution

const TARGETS: Record<string, HardwareTarget> = Object.fromEntries(["cpu-avx2", "arm64-neon", "cuda12"].map((n) => [n, resolveTarget(n, CATALOG[n])]));
const BUILD = "organization/ml-infra/build";

function serve(fields: Record<string, unknown> = {}, services?: unknown[]) {
    return serveSchema.parse({
        clients: { cidrs: ["10.0.0.0/16"] },
        services: services ?? [
            { name: "cpu", image: "inference", target: "cpu-avx2", model: { bucket: "ml-models-1", prefix: "m/1" }, sidecars: [{ kind: "metrics-exporter" }] },
            { name: "arm", image: "inference", target: "arm64-neon", model: { bucket: "ml-models-1", prefix: "m/1" }, sidecars: [{ kind: "log-router" }] },
        ],
        ...fields,
    });
}

/** The build stack's `images` output: the server per target, and every sidecar image. */
function builtImages(sidecars: Record<string, unknown> = sidecarImageOutputs()): Record<string, unknown> {
    return {
        inference: {
            repository: `${REGISTRY}/ml/inference`,
            targets: {
                "cpu-avx2": { ref: refOf("inference", "cpu"), platform: "linux/amd64" },
                "arm64-neon": { ref: refOf("inference", "arm"), platform: "linux/arm64" },
                cuda12: { ref: refOf("inference", "gpu"), platform: "linux/amd64" },
            },
        },
        ...sidecars,
    };
}

const FACTS = { account: "123456789012", region: "us-east-1" };
const lines = (problems: readonly ImageProblem[]) => problems.map((p) => `serve.${p.keys.join(".")} = ${JSON.stringify(p.value)}: ${p.message}`);

describe("resolving every image a service runs", () => {
    it("follows the build stack: the server's target ref, each sidecar kind's multi-arch ref (model-sync for the model fetch)", () => {
        const images = builtImages();
        const { images: resolved, problems } = resolveServeImages(serve(), TARGETS, { ...FACTS, build: { stack: BUILD, images } });
        expect(problems).toEqual([]);
        const index = (name: string) => ((images[name] as { multiArch: { ref: string } }).multiArch.ref);
        expect(resolved.cpu).toEqual({
            server: refOf("inference", "cpu"),
            serverSource: "build-stack",
            modelFetch: index("model-sync"),
            sidecars: { "metrics-exporter": index("metrics-exporter") },
            all: [
                { container: "server", ref: refOf("inference", "cpu") },
                { container: "model-fetch", ref: index("model-sync") },
                { container: "metrics-exporter", ref: index("metrics-exporter") },
            ],
        });
        expect(resolved.arm.sidecars).toEqual({ "log-router": index("log-router") });
    });

    it("falls back to a target of the service's platform when a sidecar image has no multi-arch index", () => {
        const sidecars = sidecarImageOutputs() as Record<string, { multiArch?: unknown; targets: Record<string, { ref: string }> }>;
        delete sidecars["model-sync"].multiArch;
        const { images: resolved, problems } = resolveServeImages(serve(), TARGETS, { ...FACTS, build: { stack: BUILD, images: builtImages(sidecars) } });
        expect(problems).toEqual([]);
        expect(resolved.cpu.modelFetch).toBe(sidecars["model-sync"].targets["cpu-avx2"].ref);
        expect(resolved.arm.modelFetch).toBe(sidecars["model-sync"].targets["arm64-neon"].ref);
    });

    it("prefers what the stack pins: serve.sidecarImages, then a sidecar's own image", () => {
        const pinned = refOf("metrics-exporter", "pinned");
        const own = refOf("metrics-exporter", "own");
        const config = serve({ sidecarImages: { "metrics-exporter": pinned } }, [
            { name: "cpu", image: "inference", target: "cpu-avx2", model: { bucket: "ml-models-1", prefix: "m/1" }, sidecars: [{ kind: "metrics-exporter" }, { kind: "metrics-exporter", name: "m2", port: 13134, image: own }] },
        ]);
        const images = builtImages();
        // Where the build stack's outputs are known, pinned digests must be ones it built too.
        const built = { ...images, "metrics-exporter": { ...(images["metrics-exporter"] as object), targets: { a: { ref: pinned }, b: { ref: own } } } };
        const { images: resolved, problems } = resolveServeImages(config, TARGETS, { ...FACTS, build: { stack: BUILD, images: built } });
        expect(problems).toEqual([]);
        expect(resolved.cpu.sidecars).toEqual({ "metrics-exporter": pinned, m2: own });
    });

    it("names the build stack for every image it lacks, once per image, with every service that needs it", () => {
        const images = builtImages();
        delete images["metrics-exporter"];
        delete images["model-sync"];
        (images.inference as { targets: Record<string, unknown> }).targets["arm64-neon"] = { ref: `${REGISTRY}/ml/inference:latest` };
        const { images: resolved, problems } = resolveServeImages(serve(), TARGETS, { ...FACTS, build: { stack: BUILD, images } });
        expect(lines(problems).sort()).toEqual([
            `serve.buildStack = "${BUILD}": exports "${REGISTRY}/ml/inference:latest" as images.inference.targets.arm64-neon.ref, which is a tag (":latest"), not pinned by digest (a tag can move): use <registry>/<repository>@sha256:<64 hex digits>; arm's server runs it: build it there (README: Where every deployed image comes from) or pin serve.services[1].ref`,
            `serve.buildStack = "${BUILD}": exports no image "metrics-exporter" (output images.metrics-exporter.multiArch.ref); cpu's metrics-exporter sidecar runs it: build it there (README: Where every deployed image comes from) or pin serve.sidecarImages.metrics-exporter`,
            `serve.buildStack = "${BUILD}": exports no image "model-sync" (output images.model-sync.multiArch.ref); cpu's model-fetch, arm's model-fetch run it: build it there (README: Where every deployed image comes from) or pin serve.sidecarImages.model-sync`,
        ]);
        expect(resolved).toEqual({});
    });

    it("refuses a digest the build stack did not build, where its outputs are known", () => {
        const stranger = refOf("inference", "never built");
        const config = serve({}, [{ name: "cpu", image: "inference", target: "cpu-avx2", ref: stranger, model: { bucket: "ml-models-1", prefix: "m/1" } }]);
        const { problems } = resolveServeImages(config, TARGETS, { ...FACTS, build: { stack: BUILD, images: builtImages() } });
        expect(lines(problems)).toEqual([
            `serve.services.0.ref = ${JSON.stringify(stranger)}: digest ${digestOf("never built")} is not one the build stack ${BUILD} exports (images.*.targets.*.ref, images.*.multiArch.ref): it was not built there`,
        ]);
        // Without the build stack's outputs (a pinned stack reads none) the same digest is accepted.
        expect(resolveServeImages(config, TARGETS, FACTS).problems).toEqual([]);
    });

    it.each([
        ["a foreign registry", `ghcr.io/someone/inference@${digestOf("g")}`, /ghcr\.io is not this stack's registry: an environment deploys only from its own ECR registry \(123456789012\.dkr\.ecr\.us-east-1\.amazonaws\.com\/<prefix>\/<image>@sha256:<digest>\) or list ghcr\.io\/someone\/inference in serve\.allowedImages/],
        ["another account's ECR", `210987654321.dkr.ecr.us-east-1.amazonaws.com/ml/inference@${digestOf("o")}`, /is account 210987654321's registry; this stack deploys only from the deploying account's \(123456789012\) registry/],
        ["another region's ECR", `123456789012.dkr.ecr.eu-west-1.amazonaws.com/ml/inference@${digestOf("r")}`, /is a registry in eu-west-1; this stack \(aws:region us-east-1\) deploys only from its own registry/],
        ["another image's repository", `${REGISTRY}/ml/other@${digestOf("o")}`, /repository "ml\/other" is not image "inference"/],
    ])("refuses %s for a server", (_what, ref, message) => {
        const config = serve({ sidecarImages: { "model-sync": refOf("model-sync") } }, [{ name: "cpu", image: "inference", target: "cpu-avx2", ref, model: { bucket: "ml-models-1", prefix: "m/1" } }]);
        const { problems, images } = resolveServeImages(config, TARGETS, FACTS);
        expect(problems.map((p) => p.keys)).toEqual([["services", 0, "ref"]]);
        expect(problems[0].message).toMatch(message);
        expect(images.cpu).toBeDefined(); // resolved, but the caller refuses to register anything with problems
    });

    it("admits an allow-listed repository still pinned by digest, never a tag of it", () => {
        const otel = `public.ecr.aws/aws-observability/aws-otel-collector@${digestOf("otel")}`;
        const config = serve({ allowedImages: ["public.ecr.aws/aws-observability/"], sidecarImages: { "model-sync": refOf("model-sync"), "metrics-exporter": otel, "log-router": refOf("log-router") } });
        const pinned = serve({ ...config, services: config.services.map((s, i) => ({ ...s, ref: refOf("inference", `s${i}`) })) });
        expect(resolveServeImages(pinned, TARGETS, FACTS).problems).toEqual([]);
        const tagged = serve({ ...pinned, sidecarImages: { ...pinned.sidecarImages, "metrics-exporter": "public.ecr.aws/aws-observability/aws-otel-collector:latest" } });
        expect(lines(resolveServeImages(tagged, TARGETS, FACTS).problems)).toEqual([expect.stringMatching(/^serve\.sidecarImages\.metrics-exporter = .*is a tag \(":latest"\), not pinned by digest/)]);
    });

    it("refuses one digest for two image x target pairs, or for two sidecar kinds", () => {
        const same = refOf("inference", "same");
        const twoTargets = serve({ sidecarImages: { "model-sync": refOf("model-sync") } }, [
            { name: "cpu", image: "inference", target: "cpu-avx2", ref: same, model: { bucket: "ml-models-1", prefix: "m/1" } },
            { name: "gpu", image: "inference", target: "cuda12", ref: same, model: { bucket: "ml-models-1", prefix: "m/1" } },
            { name: "cpu-two", image: "inference", target: "cpu-avx2", ref: same, model: { bucket: "ml-models-1", prefix: "m/1" } },
        ]);
        expect(lines(resolveServeImages(twoTargets, TARGETS, FACTS).problems)).toEqual([
            `serve.services.1.ref = ${JSON.stringify(same)}: digest sha256:${hex("same").slice(0, 12)}… is also inference/cpu-avx2 (serve.services[0].ref, cpu); one digest is one image x target or one sidecar kind: copy the right digest for inference/cuda12`,
        ]);
        const digest = digestOf("shared");
        const twoKinds = serve({ sidecarImages: { "model-sync": `${REGISTRY}/ml/model-sync@${digest}`, "log-router": `${REGISTRY}/ml/log-router@${digest}` } });
        expect(resolveServeImages(twoKinds, TARGETS, { ...FACTS, build: { stack: BUILD, images: builtImages() } }).problems.map((p) => p.keys)).toEqual(
            expect.arrayContaining([["sidecarImages", "log-router"]]),
        );
    });

    it("keeps one registry and one prefix for the whole stack (the build stack's, when known)", () => {
        const config = serve({ sidecarImages: { "model-sync": `${REGISTRY}/team/model-sync@${digestOf("ms")}`, "metrics-exporter": refOf("metrics-exporter"), "log-router": refOf("log-router") } }, [
            { name: "cpu", image: "inference", target: "cpu-avx2", ref: refOf("inference", "c"), model: { bucket: "ml-models-1", prefix: "m/1" }, sidecars: [{ kind: "metrics-exporter" }] },
            { name: "arm", image: "inference", target: "arm64-neon", ref: refOf("inference", "a"), model: { bucket: "ml-models-1", prefix: "m/1" }, sidecars: [{ kind: "log-router" }] },
        ]);
        expect(lines(resolveServeImages(config, TARGETS, FACTS).problems)).toEqual([
            expect.stringMatching(/^serve\.sidecarImages\.model-sync = .*: repository prefix "team" differs from "ml", which the stack's other images use: every image is <prefix>\/<image> with one prefix for the stack$/),
        ]);
    });
});

describe("the build stack's outputs", () => {
    it("give every digest they hold, and their registry and prefix", () => {
        const images = builtImages();
        const digests = builtDigests(images);
        expect(digests.has(digestOf("cpu"))).toBe(true);
        expect(digests.has(digestOf("sidecars/model-sync/index"))).toBe(true);
        expect(digests.has(digestOf("nothing"))).toBe(false);
        expect(builtRegistry(images)).toEqual({ host: REGISTRY, prefix: "ml" });
        expect(builtRegistry({})).toBeUndefined();
    });
});
