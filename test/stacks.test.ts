/**
 * Evaluates the real program (index.ts) for every stack file under stacks/
 * and checks what a provisioning team relies on: the registry, its caches,
 * lifecycle and pull-through rules, the per-target images, and that
 * environments deploy digests only.
 */
import * as fs from "node:fs";
import * as path from "node:path";
import { beforeAll, describe, expect, it } from "vitest";
import type { BuildConfig } from "../components/build/schema";
import { isDigestRef } from "../components/shared/image-refs";
import { CATALOG } from "../components/shared/hardware";
import { type Evaluation, REGISTRY_HOST, STACKS_DIR, awsBuildStackNames, buildStackOutputs, collectRejections, evaluate, evaluateFailure, evaluateRejection, runnersStackNames, stackFileConfig, stackNames } from "./harness";
import { PROJECT, digestOf, promotedStack, withSidecarImages } from "./fixtures";

const BUILD_KEY = `${PROJECT}:build`;
const SERVE_KEY = `${PROJECT}:serve`;
const buildStacks = awsBuildStackNames();
type BuildStackConfig = BuildConfig & { runners?: { pools: Record<string, unknown> } };
const envStacks = stackNames().filter((s) => SERVE_KEY in stackFileConfig(s));

type Inputs = Record<string, unknown>;
const policyOf = (r: { inputs: Inputs }) => JSON.parse(String(r.inputs.policy)) as { rules: Array<{ selection: Inputs }> };


describe("stack files", () => {
    it("include the shared build stack and the dev, staging and prod environments", () => {
        expect(buildStacks).toContain("build");
        expect(envStacks).toEqual(expect.arrayContaining(["dev", "staging", "prod"]));
    });
});

describe.each(runnersStackNames())("runners stack %s", (stack) => {
    let ev: Evaluation;
    beforeAll(async () => {
        ev = await evaluate(stack);
    });

    it("caches ECR Public and Quay, and Docker Hub and GHCR with ecr-pullthroughcache/ secrets", () => {
        const rules = ev.ofType("aws:ecr/pullThroughCacheRule:PullThroughCacheRule");
        const byPrefix = Object.fromEntries(rules.map((r) => [r.inputs.ecrRepositoryPrefix, r.inputs]));
        expect(byPrefix["ecr-public"]).toMatchObject({ upstreamRegistryUrl: "public.ecr.aws" });
        expect(byPrefix["ecr-public"].credentialArn).toBeUndefined();
        expect(byPrefix.quay).toMatchObject({ upstreamRegistryUrl: "quay.io" });
        expect(String(byPrefix["docker-hub"].credentialArn)).toMatch(/:secret:ecr-pullthroughcache\//);
        expect(String(byPrefix.github.credentialArn)).toMatch(/:secret:ecr-pullthroughcache\//);
        const templates = ev.ofType("aws:ecr/repositoryCreationTemplate:RepositoryCreationTemplate");
        expect(templates.map((t) => t.inputs.prefix).sort()).toEqual(Object.keys(byPrefix).sort());
        for (const t of templates) {
            expect(t.inputs.appliedFors).toEqual(["PULL_THROUGH_CACHE"]);
            // No key, no tags: the templates need no role, and nothing known to break pull-through creation.
            expect(t.inputs.encryptionConfigurations).toEqual([{ encryptionType: "AES256" }]);
            expect(t.inputs.resourceTags).toBeUndefined();
            expect(t.inputs.customRoleArn).toBeUndefined();
        }
        // No secret is ever created by the program (so none can carry a value from code).
        expect(ev.resources.filter((r) => r.type.startsWith("aws:secretsmanager/"))).toEqual([]);
    });

    it("exports the registry the build stack reads: its host, the project's namespace, the pull-through prefixes", () => {
        expect(ev.outputs.registry).toEqual({ host: REGISTRY_HOST, repositoryPrefix: "ml", pullThroughPrefixes: ["ecr-public", "quay", "docker-hub", "github"] });
    });
});

describe.each(buildStacks)("build stack %s", (stack) => {
    let ev: Evaluation;
    const build = stackFileConfig(stack)[BUILD_KEY] as BuildStackConfig;
    beforeAll(async () => {
        ev = await evaluate(stack);
    });

    const repos = () => ev.ofType("aws:ecr/repository:Repository");
    const releaseRepos = () => repos().filter((r) => !String(r.inputs.name).includes("/cache/"));
    const cacheRepos = () => repos().filter((r) => String(r.inputs.name).includes("/cache/"));

    it("has one scanned, KMS-encrypted release repository per image whose tags are immutable but for the deployment markers", () => {
        expect(releaseRepos().map((r) => r.inputs.name).sort()).toEqual(build.images.map((i) => `ml/${i.name}`).sort());
        for (const repo of releaseRepos()) {
            expect(repo.inputs.imageTagMutability).toBe("IMMUTABLE_WITH_EXCLUSION");
            expect(repo.inputs.imageTagMutabilityExclusionFilters).toEqual([{ filter: "deployed-*", filterType: "WILDCARD" }]);
            expect(repo.inputs.imageScanningConfiguration).toEqual({ scanOnPush: true });
            expect(repo.inputs.encryptionConfigurations).toEqual([expect.objectContaining({ encryptionType: "KMS" })]);
        }
    });

    it("has one cache repository per image where only cache-* tags can be overwritten", () => {
        expect(cacheRepos()).toHaveLength(build.images.length);
        for (const repo of cacheRepos()) {
            expect(repo.inputs.imageTagMutability).toBe("IMMUTABLE_WITH_EXCLUSION");
            expect(repo.inputs.imageTagMutabilityExclusionFilters).toEqual([{ filter: "cache-*", filterType: "WILDCARD" }]);
            expect(repo.inputs.encryptionConfigurations).toEqual([expect.objectContaining({ encryptionType: "KMS" })]);
        }
        expect(repos().filter((r) => String(r.inputs.imageTagMutability).startsWith("MUTABLE"))).toEqual([]);
    });

    it("keeps deployed images, the last N releases per target and never expires untagged images in a release repository", () => {
        for (const image of build.images) {
            const policy = ev.ofType("aws:ecr/lifecyclePolicy:LifecyclePolicy").find((p) => p.name === `registry-${image.name}-lifecycle`);
            expect(policy).toBeDefined();
            const rules = policyOf(policy as { inputs: Inputs }).rules;
            expect(rules[0].selection.tagPatternList).toEqual(["deployed-*"]);
            expect(rules.map((r) => r.selection.tagPatternList).flat().sort()).toEqual(["deployed-*", "multiarch.*", ...image.targets.map((t) => `${t}.*`)].sort());
            expect(rules.every((r) => r.selection.tagStatus === "tagged")).toBe(true);
        }
    });

    it("expires superseded cache manifests after N days", () => {
        for (const image of build.images) {
            const policy = ev.ofType("aws:ecr/lifecyclePolicy:LifecyclePolicy").find((p) => p.name === `registry-${image.name}-cache-lifecycle`);
            const rules = policyOf(policy as { inputs: Inputs }).rules;
            expect(rules).toEqual([expect.objectContaining({ selection: expect.objectContaining({ tagStatus: "untagged", countType: "sinceImagePushed" }) })]);
        }
    });

    /** The image and target of an Image resource `<image>-<target>-image` (both may contain dashes). */
    const imageAndTarget = (resource: string): { img: string; target: string } => {
        for (const img of build.images) {
            for (const target of img.targets) if (resource === `${img.name}-${target}-image`) return { img: img.name, target };
        }
        throw new Error(`no image x target named ${resource}`);
    };

    it("builds one image per image x target, for the target's one platform and stage", () => {
        const images = ev.ofType("docker-build:index:Image");
        expect(images.map((i) => i.name).sort()).toEqual(
            build.images.flatMap((img) => img.targets.map((t) => `${img.name}-${t}-image`)).sort(),
        );
        const targets = { ...CATALOG, ...(build.targets as Record<string, Partial<(typeof CATALOG)[string]>> | undefined) };
        for (const img of build.images) {
            for (const t of img.targets) {
                const r = images.find((i) => i.name === `${img.name}-${t}-image`) as { inputs: Inputs };
                const base = targets[t] as { platform?: string; stage?: string; extends?: string };
                const parent = base.extends ? CATALOG[base.extends] : CATALOG[t];
                expect(r.inputs.platforms).toEqual([base.platform ?? parent.platform]);
                expect(r.inputs.target).toBe((img as { stage?: string }).stage ?? base.stage ?? parent.stage);
                expect(r.inputs.push).toBe(true);
                expect(r.inputs.tags).toEqual([expect.stringMatching(new RegExp(`^${REGISTRY_HOST.replace(/\./g, "\\.")}/ml/${img.name}:${t}\\.[0-9a-f]{16}$`))]);
                expect(r.inputs.context).toEqual({ location: img.context });
                expect(r.inputs.buildOnPreview).toBe(build.buildOnPreview ?? false);
            }
        }
    });

    it("exports and imports each target's BuildKit cache in ECR as an OCI image manifest", () => {
        for (const r of ev.ofType("docker-build:index:Image")) {
            const { img, target } = imageAndTarget(r.name);
            const ref = `${REGISTRY_HOST}/ml/cache/${img}:cache-${target}`;
            expect(r.inputs.cacheFrom).toEqual([{ registry: { ref } }]);
            expect(r.inputs.cacheTo).toEqual([{ registry: { ref, mode: "max", imageManifest: true, ociMediaTypes: true } }]);
        }
    });

    it("logs in to ECR with a token and pulls base images through the pull-through cache", () => {
        for (const r of ev.ofType("docker-build:index:Image")) {
            expect(r.inputs.registries).toEqual([{ address: REGISTRY_HOST, username: "AWS", password: "mock-ecr-password" }]);
            expect(r.secretInputs).toContain("registries");
            const args = r.inputs.buildArgs as Record<string, string>;
            expect(args.BASE_IMAGE.startsWith(`${REGISTRY_HOST}/`)).toBe(true);
            expect(args.RUNTIME_BASE_IMAGE.startsWith(`${REGISTRY_HOST}/`)).toBe(true);
        }
    });

    it("gives each build the timeout of its target", () => {
        const cuda11 = ev.ofType("docker-build:index:Image").find((i) => i.name.endsWith("-cuda11-source-image"));
        if (cuda11) expect(cuda11.customTimeouts.create).toBe(`${CATALOG["cuda11-source"].buildTimeoutMinutes}m`);
        for (const r of ev.ofType("docker-build:index:Image")) expect(r.customTimeouts.create).toMatch(/^\d+m$/);
    });

    it("joins the configured amd64 and arm64 targets under one multi-arch tag", () => {
        for (const img of build.images.filter((i) => i.multiArch)) {
            const index = ev.ofType("docker-build:index:Index").find((i) => i.name === `${img.name}-multiarch-index`);
            expect(index?.inputs.tag).toMatch(new RegExp(`^${REGISTRY_HOST.replace(/\./g, "\\.")}/ml/${img.name}:multiarch\\.[0-9a-f]{16}$`));
            const outputs = ev.outputs.images as Record<string, { targets: Record<string, { ref: string }> }>;
            const multi = img.multiArch as { amd64: string; arm64: string };
            expect(index?.inputs.sources).toEqual([outputs[img.name].targets[multi.amd64].ref, outputs[img.name].targets[multi.arm64].ref]);
        }
    });

    it("builds each target on the runners stack's pool its target names (or on the stack's own builder)", () => {
        const runnersStack = stackFileConfig("runners")["ml-infra:runners"] as { pools: Record<string, unknown> };
        const outputs = ev.outputs.images as Record<string, { targets: Record<string, { pool: string }> }>;
        for (const r of ev.ofType("docker-build:index:Image")) {
            const builder = (r.inputs.builder as { name?: string } | undefined)?.name;
            const { img, target } = imageAndTarget(r.name);
            const pool = outputs[img].targets[target].pool;
            if (build.builder) {
                expect(builder).toBe(build.builder);
            } else {
                expect(Object.keys(runnersStack.pools)).toContain(pool);
                expect(builder).toBe(`ml-${pool}`);
            }
        }
        // The build stack makes no runner: it reads the runners stack.
        expect(ev.resources.filter((x) => x.type === "ml-infra:build:BuildRunnerPool")).toEqual([]);
        expect(ev.ofType("pulumi:pulumi:StackReference").map((x) => x.inputs.name)).toEqual(build.builder ? [] : ["organization/ml-infra/runners"]);
    });


    it("keeps runner certificates and keys secret", () => {
        for (const r of ev.ofType("aws:ssm/parameter:Parameter")) expect(r.secretInputs).toContain("value");
        for (const r of ev.ofType("aws:ec2/launchTemplate:LaunchTemplate")) {
            const userData = Buffer.from(String(r.inputs.userData), "base64").toString("utf8");
            expect(userData).not.toMatch(/BEGIN (RSA |EC )?PRIVATE KEY/);
        }
    });

    it("exports a digest-pinned reference for every image x target", () => {
        const outputs = ev.outputs.images as Record<string, { targets: Record<string, { ref: string; platform: string; pool: string }> }>;
        for (const img of build.images) {
            expect(Object.keys(outputs[img.name].targets).sort()).toEqual([...img.targets].sort());
            for (const t of img.targets) {
                const built = outputs[img.name].targets[t];
                expect(isDigestRef(built.ref), built.ref).toBe(true);
                expect(built.ref.startsWith(`${REGISTRY_HOST}/ml/${img.name}@sha256:`)).toBe(true);
            }
        }
    });
});

/** Sidecar kinds a serve section (as written) runs without an image of its own: model-sync for every model fetch, and its sidecars'. */
const kindsOf = (serve: { services: Array<{ sidecars?: Array<{ kind: string; image?: string }> }> }) =>
    [...new Set(["model-sync", ...serve.services.flatMap((s) => (s.sidecars ?? []).filter((c) => c.image === undefined).map((c) => c.kind))])].sort();

interface Deployment {
    ref: string;
    source: string;
    images: Array<{ container: string; ref: string }>;
}

describe.each(envStacks)("environment stack %s", (stack) => {
    let ev: Evaluation;
    let built: Record<string, unknown>;
    const file = stackFileConfig(stack)[SERVE_KEY] as { buildStack?: string; requirePinned?: boolean; services: Array<{ name: string; image: string; target: string; ref?: string }> };
    /** The serve section evaluated: the stack file's, or (pinned-only stacks) the file as promotion from the build leaves it. */
    let serve: typeof file & { sidecarImages?: Record<string, string> };
    beforeAll(async () => {
        built = withSidecarImages(await buildStackOutputs());
        serve = (file.requirePinned ? promotedStack(stack, built).config[SERVE_KEY] : file) as typeof serve;
        ev = await evaluate(stack, { buildOutputs: built });
    });

    it("deploys only digests, never a mutable tag: the servers, the model fetches and every sidecar", () => {
        const deployments = ev.outputs.deployments as Record<string, Deployment>;
        expect(Object.keys(deployments).sort()).toEqual(file.services.map((s) => s.name).sort());
        for (const [service, d] of Object.entries(deployments)) {
            expect(isDigestRef(d.ref), `${service}: ${d.ref}`).toBe(true);
            for (const i of d.images) expect(isDigestRef(i.ref), `${service}/${i.container}: ${i.ref}`).toBe(true);
        }
    });

    it("runs only images from its own registry (the mock account's, in its region), one repository <prefix>/<image> each", () => {
        const containers = ev.ofType("aws:ecs/taskDefinition:TaskDefinition").flatMap((td) => JSON.parse(String(td.inputs.containerDefinitions)) as Array<{ name: string; image: string }>);
        expect(containers.length).toBeGreaterThan(0);
        for (const c of containers) expect(c.image, c.name).toMatch(new RegExp(`^${REGISTRY_HOST.replace(/\./g, "\\.")}/ml/[a-z0-9-]+@sha256:[a-f0-9]{64}$`));
    });

    it("lists every image each service's task runs in its deployments output (server, model-fetch, sidecars), as the task definition runs them", () => {
        const deployments = ev.outputs.deployments as Record<string, Deployment>;
        for (const s of file.services) {
            const td = ev.ofType("aws:ecs/taskDefinition:TaskDefinition").find((r) => r.name === `${s.name}-definition`);
            const containers = JSON.parse(String(td?.inputs.containerDefinitions)) as Array<{ name: string; image: string }>;
            expect(deployments[s.name].images).toEqual(containers.map((c) => ({ container: c.name, ref: c.image })));
            expect(deployments[s.name].images.map((i) => i.container).slice(0, 2)).toEqual(["server", "model-fetch"]);
            expect(deployments[s.name].images[0].ref).toBe(deployments[s.name].ref);
        }
    });

    it("creates no build resources", () => {
        expect(ev.resources.filter((r) => r.type.startsWith("docker-build:") || r.type.startsWith("aws:ecr/"))).toEqual([]);
    });

    it("deploys the pinned digest of each service, or the build stack's latest for followed ones; each sidecar kind's image likewise", () => {
        const deployments = ev.outputs.deployments as Record<string, Deployment>;
        const images = built.images as Record<string, { targets: Record<string, { ref: string }>; multiArch?: { ref: string } }>;
        for (const s of serve.services) {
            if (s.ref) expect(deployments[s.name]).toMatchObject({ ref: s.ref, source: "pinned" });
            else expect(deployments[s.name]).toMatchObject({ ref: images[s.image].targets[s.target].ref, source: "build-stack" });
            const fetch = deployments[s.name].images.find((i) => i.container === "model-fetch")?.ref;
            expect(fetch).toBe(serve.sidecarImages?.["model-sync"] ?? images["model-sync"].multiArch?.ref);
        }
        // A pinned-only stack pins what promotion wrote: the build's digests.
        if (file.requirePinned) {
            expect(serve.sidecarImages).toEqual(Object.fromEntries(kindsOf(serve as never).map((k) => [k, images[k].multiArch?.ref])));
            for (const s of serve.services) expect(s.ref).toBe(images[s.image].targets[s.target].ref);
        }
        const refs = ev.ofType("pulumi:pulumi:StackReference");
        expect(refs.length).toBe(file.requirePinned ? 0 : 1);
        if (refs.length) expect(refs[0].inputs.name).toBe(file.buildStack ?? "organization/ml-infra/build");
    });
});

describe("promotion stacks", () => {
    it.each(["staging", "prod"])("%s pins nothing until it is promoted: no ref, no sidecar image, no build stack", (stack) => {
        const serve = stackFileConfig(stack)[SERVE_KEY] as { requirePinned: boolean; buildStack?: string; sidecarImages?: unknown; services: Array<{ ref?: string; sidecars?: Array<{ image?: string }> }> };
        expect(serve.requirePinned).toBe(true);
        expect(serve.buildStack).toBeUndefined();
        expect(serve.sidecarImages).toBeUndefined();
        for (const s of serve.services) {
            expect(s.ref).toBeUndefined();
            for (const c of s.sidecars ?? []) expect(c.image).toBeUndefined();
        }
    });

    it("no stack file holds a digest: environments deploy what the build stack produced, written by promotion", () => {
        for (const stack of stackNames()) expect(fs.readFileSync(path.join(STACKS_DIR, `Pulumi.${stack}.yaml`), "utf8"), stack).not.toMatch(/@sha256:/);
    });

    it("dev follows the build stack (named by default: <organization>/<project>/build, valid on Pulumi Cloud and a self-managed backend)", () => {
        const serve = stackFileConfig("dev")[SERVE_KEY] as { buildStack?: string; sidecarImages?: unknown; services: Array<{ ref?: string }> };
        expect(serve.buildStack).toBeUndefined();
        expect(serve.sidecarImages).toBeUndefined();
        expect(serve.services.every((s) => s.ref === undefined)).toBe(true);
    });
});

describe("a hardware target declared only in stack files", () => {
    const npuTarget = {
        description: "x86 with AVX10.1 (Granite Rapids)",
        platform: "linux/amd64",
        baseImage: "public.ecr.aws/docker/library/debian:trixie-slim",
        stage: "runtime-cpu",
        pool: "amd64",
        buildArgs: { KERNEL_CFLAGS: "-O3 -mavx10.1-512" },
        cpuFeatures: ["avx10_1"],
        buildTimeoutMinutes: 45,
    };
    const buildConfig = {
        [BUILD_KEY]: {
            targets: { "x86-avx10": npuTarget },
            images: [{ name: "inference", context: "images/inference-server", targets: ["cpu-avx2", "x86-avx10"] }],
        },
    };

    it("is built, cached, expired and exported like a catalog target", async () => {
        const ev = await evaluate("build", { config: buildConfig });
        const image = ev.ofType("docker-build:index:Image").find((i) => i.name === "inference-x86-avx10-image");
        expect(image?.inputs).toMatchObject({
            platforms: ["linux/amd64"],
            target: "runtime-cpu",
            tags: [expect.stringMatching(/\/ml\/inference:x86-avx10\.[0-9a-f]{16}$/)],
            cacheTo: [{ registry: { ref: `${REGISTRY_HOST}/ml/cache/inference:cache-x86-avx10`, imageManifest: true, ociMediaTypes: true, mode: "max" } }],
        });
        expect(image?.inputs.buildArgs).toMatchObject({
            KERNEL_CFLAGS: "-O3 -mavx10.1-512",
            REQUIRED_CPU_FEATURES: "avx10_1",
            TARGET_NAME: "x86-avx10",
            BASE_IMAGE: `${REGISTRY_HOST}/ecr-public/docker/library/debian:trixie-slim`,
        });
        expect(image?.customTimeouts.create).toBe("45m");
        const lifecycle = ev.ofType("aws:ecr/lifecyclePolicy:LifecyclePolicy").find((p) => p.name === "registry-inference-lifecycle");
        expect(JSON.stringify(policyOf(lifecycle as { inputs: Inputs }))).toContain('"x86-avx10.*"');

        const env = await evaluate("dev", {
            config: {
                "ml-infra:network": { cidr: "10.0.0.0/16", availabilityZones: ["us-east-1a", "us-east-1b"], natGateways: "single" },
                [SERVE_KEY]: {
                    buildStack: "organization/ml-infra/build",
                    targets: { "x86-avx10": npuTarget },
                    clients: { cidrs: ["10.0.0.0/16"] },
                    loadBalancer: { protocol: "http" },
                    services: [{ name: "avx10", image: "inference", target: "x86-avx10", model: { bucket: "ml-models-123456789012", prefix: "avx10/1" } }],
                },
            },
            buildOutputs: withSidecarImages(ev.outputs),
        });
        const deployments = env.outputs.deployments as Record<string, { ref: string; platform: string; gpu: boolean }>;
        const images = ev.outputs.images as Record<string, { targets: Record<string, { ref: string }> }>;
        expect(deployments.avx10).toMatchObject({ ref: images.inference.targets["x86-avx10"].ref, platform: "linux/amd64", gpu: false });
    });

    it("a stack override of a catalog target changes only what it names", async () => {
        const ev = await evaluate("build", {
            config: {
                [BUILD_KEY]: {
                    targets: { cuda12: { cuda: { version: "12.8.1", archList: ["8.0", "9.0"] } } },
                    images: [{ name: "inference", context: "images/inference-server", targets: ["cuda12"] }],
                },
            },
        });
        const args = ev.ofType("docker-build:index:Image")[0].inputs.buildArgs as Record<string, string>;
        expect(args.CUDA_ARCH_LIST).toBe("8.0;9.0");
        expect(args.TORCH_VARIANT).toBe(CATALOG.cuda12.buildArgs.TORCH_VARIANT);
        // The runners stack has a docker-hub pull-through rule: the base comes through it.
        expect(args.BASE_IMAGE).toBe(`${REGISTRY_HOST}/docker-hub/nvidia/cuda:12.8.1-devel-ubuntu22.04`);
    });

    it("dev refuses a build stack output that is not a digest", async () => {
        const bad = { images: { inference: { targets: { "cpu-avx2": { ref: `${REGISTRY_HOST}/ml/inference:latest` } } } } };
        const messages = await evaluateRejection("dev", { config: followingConfig(), buildOutputs: withSidecarImages(bad) });
        expect(messages[0]).toMatch(
            /^Invalid stack configuration:\n {2}- ml-infra:serve\.buildStack = "org\/ml-infra\/build": exports ".*\/ml\/inference:latest" as images\.inference\.targets\.cpu-avx2\.ref, which is a tag \(":latest"\), not pinned by digest/,
        );
    });
});

/** A dev-like environment with one service following the build stack org/ml-infra/build. */
function followingConfig(fields: Record<string, unknown> = {}): Record<string, unknown> {
    return {
        "ml-infra:network": { cidr: "10.0.0.0/16", availabilityZones: ["us-east-1a", "us-east-1b"], natGateways: "single" },
        [SERVE_KEY]: {
            buildStack: "org/ml-infra/build",
            clients: { cidrs: ["10.0.0.0/16"] },
            loadBalancer: { protocol: "http" },
            services: [{ name: "a", image: "inference", target: "cpu-avx2", model: { bucket: "ml-models-123456789012", prefix: "a/1" }, sidecars: [{ kind: "metrics-exporter" }] }],
            ...fields,
        },
    };
}

describe("an environment reads its build stack, and checks every image, before registering anything", () => {
    const built = () => withSidecarImages({ images: { inference: { repository: `${REGISTRY_HOST}/ml/inference`, targets: { "cpu-avx2": { ref: `${REGISTRY_HOST}/ml/inference@${digestOf("a")}`, platform: "linux/amd64" } } } } });

    it.each([
        ["a build stack without an images output", { vpc: {} }, /ml-infra:serve\.buildStack = "org\/ml-infra\/build": has no "images" output; deploy the build stack first \(pulumi up -s build\), or pin every image in this stack \(npm run promote\)/],
        ["a build stack without the image x target", { images: { inference: { targets: {} } } }, /ml-infra:serve\.buildStack = "org\/ml-infra\/build": exports no image "inference" for target "cpu-avx2" \(output images\.inference\.targets\.cpu-avx2\.ref\); a's server runs it/],
        ["a build stack without a sidecar image", { images: { inference: { targets: { "cpu-avx2": { ref: `${REGISTRY_HOST}/ml/inference@${digestOf("a")}` } } } } }, /exports no image "model-sync" \(output images\.model-sync\.multiArch\.ref\); a's model-fetch runs it: build it there .* or pin serve\.sidecarImages\.model-sync/],
        ["a build stack of another account", withSidecarImages({ images: { inference: { targets: { "cpu-avx2": { ref: `210987654321.dkr.ecr.us-east-1.amazonaws.com/ml/inference@${digestOf("a")}` } } } } }), /ml-infra:serve\.buildStack = "org\/ml-infra\/build": 210987654321\.dkr\.ecr\.us-east-1\.amazonaws\.com is account 210987654321's registry; this stack deploys only from the deploying account's \(123456789012\) registry/],
    ])("refuses %s as a config error naming serve.buildStack", async (_what, outputs, message) => {
        const messages = await evaluateRejection("dev", { config: followingConfig(), buildOutputs: outputs });
        expect(messages[0]).toMatch(/^Invalid stack configuration:/);
        expect(messages[0]).toMatch(message);
    });

    it("refuses a pinned digest the build stack did not build (only known once it is read)", async () => {
        const stranger = `${REGISTRY_HOST}/ml/inference@${digestOf("stranger")}`;
        const messages = await evaluateRejection("dev", {
            config: followingConfig({ services: [{ name: "a", image: "inference", target: "cpu-avx2", ref: stranger, model: { bucket: "ml-models-123456789012", prefix: "a/1" }, sidecars: [{ kind: "metrics-exporter" }] }] }),
            buildOutputs: built(),
        });
        expect(messages[0].split("\n").slice(1)).toEqual([
            `  - ml-infra:serve.services[0].ref = "${stranger}": digest ${digestOf("stranger")} is not one the build stack org/ml-infra/build exports (images.*.targets.*.ref, images.*.multiArch.ref): it was not built there`,
        ]);
    });

    it("refuses a sidecar image from a foreign registry before reading anything", async () => {
        const messages = await evaluateRejection("dev", { config: followingConfig({ sidecarImages: { "metrics-exporter": `ghcr.io/someone/otel@${digestOf("otel")}` } }), buildOutputs: built() });
        expect(messages[0]).toMatch(/^Invalid stack configuration:\n {2}- ml-infra:serve\.sidecarImages\.metrics-exporter = "ghcr\.io\/someone\/otel@sha256:[a-f0-9]+\.\.\.: ghcr\.io is not this stack's registry/);
    });

    it("registers nothing but the build stack's reference when it refuses", async () => {
        // evaluateFailure's mocks answer a StackReference with no outputs at all: it cannot be read.
        let result: { error: Error; registered: number } | undefined;
        await collectRejections(async () => {
            result = await evaluateFailure("dev", followingConfig());
        });
        expect(result?.error.message).toMatch(/ml-infra:serve\.buildStack = "org\/ml-infra\/build": cannot be read \(.*\); deploy the build stack first \(pulumi up -s build\)/);
        expect(result?.registered).toBe(1);
    });

    it("reads no build stack when everything is pinned", async () => {
        const pinned = followingConfig({
            sidecarImages: { "model-sync": `${REGISTRY_HOST}/ml/model-sync@${digestOf("ms")}`, "metrics-exporter": `${REGISTRY_HOST}/ml/metrics-exporter@${digestOf("me")}` },
            services: [{ name: "a", image: "inference", target: "cpu-avx2", ref: `${REGISTRY_HOST}/ml/inference@${digestOf("a")}`, model: { bucket: "ml-models-123456789012", prefix: "a/1" }, sidecars: [{ kind: "metrics-exporter" }] }],
        });
        const ev = await evaluate("dev", { config: pinned, buildOutputs: { images: {} } });
        expect(ev.ofType("pulumi:pulumi:StackReference")).toEqual([]);
        expect((ev.outputs.deployments as Record<string, Deployment>).a.images.map((i) => i.container)).toEqual(["server", "model-fetch", "metrics-exporter"]);
    });
});

describe.each(stackNames())("stack %s under `pulumi preview`", (stack) => {
    it("evaluates with the same resources as an update", async () => {
        const built = withSidecarImages(await buildStackOutputs());
        const up = await evaluate(stack, { buildOutputs: built });
        const preview = await evaluate(stack, { buildOutputs: built, preview: true });
        expect(preview.resources.map((r) => `${r.type}::${r.name}`)).toEqual(up.resources.map((r) => `${r.type}::${r.name}`));
    });
});
