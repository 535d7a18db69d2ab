import { describe, expect, it } from "vitest";
import { ConfigError } from "../components/shared/problems";
import { buildStackOutputs, evaluateFailure, loadConfig, requiresPinned, stackFileConfig, stackNames } from "./harness";
import { DIGEST_A, PROJECT, promotedStack, refOf, sidecarImageOutputs, validBuild, validServe } from "./fixtures";

type Json = Record<string, unknown>;

function load(config: Json) {
    return loadConfig(config, "test");
}

function problemsOf(config: Json): string[] {
    try {
        load(config);
    } catch (error) {
        expect(error).toBeInstanceOf(ConfigError);
        return [...(error as ConfigError).problems];
    }
    throw new Error("config was accepted");
}

function withBuild(mutate: (b: Json & { images: Json[] }) => void): Json {
    const build = validBuild() as Json & { images: Json[] };
    mutate(build);
    return { [`${PROJECT}:build`]: build };
}

function withServe(mutate: (s: Json & { services: Json[] }) => void): Json {
    const serve = validServe() as Json & { services: Json[] };
    mutate(serve);
    return { [`${PROJECT}:serve`]: serve };
}

/**
 * Each bad input: the config, the key the error must name, the bad value as
 * it must appear, and a fragment of what is allowed.
 */
const BAD: ReadonlyArray<{ what: string; config: Json; key: string; value: string; allowed: RegExp }> = [
    {
        what: "unknown target",
        config: withBuild((b) => (b.images[0].targets = ["cpu-avx2", "cpu-avx3"])),
        key: "ml-infra:build.images[0].targets[1]",
        value: '"cpu-avx3"',
        allowed: /allowed: .*arm64-neon.*cpu-avx2.*cpu-avx512.*cuda11-source.*cuda12/,
    },
    {
        what: "unknown key",
        config: withBuild((b) => (b.images[0].contxt = "images/inference-server")),
        key: "ml-infra:build.images[0].contxt",
        value: '"images/inference-server"',
        allowed: /unknown key; allowed: base, baseImage, buildArgs, context, dockerfile, multiArch, name, secrets, stage, targets/,
    },
    {
        what: "unknown top-level key",
        config: { [`${PROJECT}:biuld`]: validBuild() },
        key: "ml-infra:biuld",
        value: '{"images"',
        allowed: /allowed: build, buildSecrets, costCenter, local, network, protectData, registry, runners, serve/,
    },
    {
        what: "wrong type",
        config: withBuild((b) => (b.buildOnPreview = "yes")),
        key: "ml-infra:build.buildOnPreview",
        value: '"yes"',
        allowed: /expected boolean/,
    },
    {
        what: "empty image list",
        config: withBuild((b) => (b.images = [])),
        key: "ml-infra:build.images",
        value: "[]",
        allowed: /at least one image/,
    },
    {
        what: "duplicate image names",
        config: withBuild((b) => b.images.push({ ...b.images[0] })),
        key: "ml-infra:build.images[1].name",
        value: '"inference"',
        allowed: /duplicate image name \(also build.images\[0\]\)/,
    },
    {
        what: "bad platform",
        config: withBuild((b) => (b.targets = { "cpu-avx2": { platform: "linux/386" } })),
        key: "ml-infra:build.targets.cpu-avx2.platform",
        value: '"linux/386"',
        allowed: /"linux\/amd64"\|"linux\/arm64"/,
    },
    {
        what: "bad CUDA arch",
        config: withBuild((b) => (b.targets = { cuda12: { cuda: { version: "12.8.1", archList: ["8.0", "4.2"] } } })),
        key: "ml-infra:build.targets.cuda12.cuda",
        value: '"archList":["8.0","4.2"]',
        allowed: /"4.2" is not a CUDA compute capability; allowed: 3.5, 3.7, 5.0, 5.2/,
    },
    {
        what: "CUDA arch the toolkit cannot compile",
        config: withBuild((b) => (b.targets = { "cuda11-source": { cuda: { version: "11.8.0", archList: ["12.0"] } } })),
        key: "ml-infra:build.targets.cuda11-source.cuda",
        value: '"12.0"',
        allowed: /outside what CUDA 11.8 can compile for \(3.5 to 9.0\)/,
    },
    {
        what: "missing context",
        config: withBuild((b) => (b.images[0].context = "images/does-not-exist")),
        key: "ml-infra:build.images[0].context",
        value: '"images/does-not-exist"',
        allowed: /build context directory not found/,
    },
    {
        what: "missing Dockerfile",
        config: withBuild((b) => (b.images[0].dockerfile = "Dockerfile.nope")),
        key: "ml-infra:build.images[0].dockerfile",
        value: '"Dockerfile.nope"',
        allowed: /Dockerfile not found/,
    },
    {
        what: "arm64 target on an x86 pool",
        config: withBuild((b) => (b.targets = { "arm64-neon": { pool: "amd64" } })),
        key: "ml-infra:build.targets.arm64-neon.pool",
        value: '"amd64"',
        allowed: /cannot build linux\/arm64 natively; allowed: arm64/,
    },
    {
        what: "new target missing fields",
        config: withBuild((b) => (b.targets = { "riscv-v": { platform: "linux/amd64" } })),
        key: "ml-infra:build.targets.riscv-v.baseImage",
        value: "(missing)",
        allowed: /expected string/,
    },
    {
        what: "image build arg that a target owns",
        config: withBuild((b) => (b.images[0].buildArgs = { KERNEL_CFLAGS: "-O0" })),
        key: "ml-infra:build.images[0].buildArgs.KERNEL_CFLAGS",
        value: '"-O0"',
        allowed: /set by target cpu-avx2, arm64-neon; override it in build.targets/,
    },
    {
        what: "multi-arch pair on the wrong platform",
        config: withBuild((b) => (b.images[0].multiArch = { amd64: "arm64-neon", arm64: "arm64-neon" })),
        key: "ml-infra:build.images[0].multiArch.amd64",
        value: '"arm64-neon"',
        allowed: /builds linux\/arm64, not linux\/amd64/,
    },
    {
        what: "reserved target name",
        config: withBuild((b) => {
            b.targets = { "deployed-cpu": { extends: "cpu-avx2" } };
        }),
        key: "ml-infra:build.targets.deployed-cpu",
        value: '{"extends":"cpu-avx2"}',
        allowed: /is reserved: release tags are <target>\.<hash>, multi-arch tags multiarch\.<hash> and deployment markers deployed-\*/,
    },
    {
        what: "a build version (removed)",
        config: withBuild((b) => (b.version = "1.0.0")),
        key: "ml-infra:build.version",
        value: '"1.0.0"',
        allowed: /no longer used: release tags are derived from the build inputs/,
    },
    {
        what: "a stage the Dockerfile lacks",
        config: withBuild((b) => (b.images[0].stage = "runtime-tpu")),
        key: "ml-infra:build.images[0].stage",
        value: '"runtime-tpu"',
        allowed: /stage "runtime-tpu" is not in Dockerfile.*stages there: .*runtime-cpu/,
    },
    {
        what: "an upstream base and a chain base",
        config: withBuild((b) => {
            b.images.push({ name: "app", context: "images/inference-server", targets: ["cpu-avx2"], base: "inference", baseImage: "public.ecr.aws/docker/library/debian:bookworm-slim" });
        }),
        key: "ml-infra:build.images[1].baseImage",
        value: '"public.ecr.aws/docker/library/debian:bookworm-slim"',
        allowed: /FROM its chain base \(base: inference\) or from an upstream image, not both/,
    },
    {
        what: "a local stack's base outside the local registry",
        config: {
            [`${PROJECT}:build`]: {
                localRegistry: "127.0.0.1:5000",
                builder: "ml-local",
                images: [{ name: "inference", context: "images/inference-server", targets: ["cpu-avx2"] }],
            },
        },
        key: "ml-infra:build.images[0].targets[0]",
        value: '"cpu-avx2"',
        allowed: /base image public\.ecr\.aws\/docker\/library\/debian:bookworm-slim comes from public\.ecr\.aws, which is neither this stack's registry \(127\.0\.0\.1:5000\)/,
    },
    {
        what: "mutable tag deployed",
        config: withServe((s) => (s.services[0].ref = "123456789012.dkr.ecr.us-east-1.amazonaws.com/ml/inference:latest")),
        key: "ml-infra:serve.services[0].ref",
        value: '"123456789012.dkr.ecr.us-east-1.amazonaws.com/ml/inference:latest"',
        allowed: /is a tag \(":latest"\), not pinned by digest \(a tag can move\): use <registry>\/<repository>@sha256:<64 hex digits>/,
    },
    {
        what: "tag plus digest deployed",
        config: withServe((s) => (s.services[0].ref = `123456789012.dkr.ecr.us-east-1.amazonaws.com/ml/inference:v1@${DIGEST_A}`)),
        key: "ml-infra:serve.services[0].ref",
        value: ":v1@sha256",
        allowed: /names a tag \(":v1"\) as well as a digest/,
    },
    {
        what: "pinned stack without a digest",
        config: withServe((s) => delete s.services[0].ref),
        key: "ml-infra:serve.services[0].ref",
        value: "(missing)",
        allowed: /pinned digests only \(serve\.requirePinned\); promotion writes it: npm run promote -- --from-outputs build-outputs\.json --to <this stack>/,
    },
    {
        what: "pinned stack without its model-fetch image",
        config: withServe((s) => (s.sidecarImages = {})),
        key: "ml-infra:serve.sidecarImages.model-sync",
        value: "(missing)",
        allowed: /every model-fetch runs the model-sync image and this stack deploys pinned digests only \(serve\.requirePinned\); promotion writes it/,
    },
    {
        what: "pinned stack without a sidecar kind's image",
        config: withServe((s) => (s.services[0].sidecars = [{ kind: "metrics-exporter" }])),
        key: "ml-infra:serve.sidecarImages.metrics-exporter",
        value: "(missing)",
        allowed: /classifier runs the metrics-exporter sidecar and this stack deploys pinned digests only/,
    },
    {
        what: "digest of another image",
        config: withServe((s) => (s.services[0].ref = `123456789012.dkr.ecr.us-east-1.amazonaws.com/ml/other@${DIGEST_A}`)),
        key: "ml-infra:serve.services[0].ref",
        value: "ml/other@",
        allowed: /repository "ml\/other" is not image "inference"/,
    },
    {
        what: "a placeholder digest",
        config: withServe((s) => (s.services[0].ref = `123456789012.dkr.ecr.us-east-1.amazonaws.com/ml/inference@sha256:${"0".repeat(63)}1`)),
        key: "ml-infra:serve.services[0].ref",
        value: "ml/inference@sha256:000",
        allowed: /has a run of 63 "0"s: a placeholder, not a digest a build produced/,
    },
    {
        what: "a foreign registry",
        config: withServe((s) => (s.services[0].ref = `ghcr.io/someone/inference@${DIGEST_A}`)),
        key: "ml-infra:serve.services[0].ref",
        value: '"ghcr.io/someone/inference@',
        allowed: /ghcr\.io is not this stack's registry: an environment deploys only from its own ECR registry .* or list ghcr\.io\/someone\/inference in serve\.allowedImages/,
    },
    {
        what: "a model sync image that is the server's digest",
        config: withServe((s) => (s.sidecarImages = { "model-sync": `123456789012.dkr.ecr.us-east-1.amazonaws.com/ml/model-sync@${DIGEST_A}` })),
        key: "ml-infra:serve.sidecarImages.model-sync",
        value: "ml/model-sync@",
        allowed: /is also inference\/cpu-avx2 \(serve\.services\[0\]\.ref, classifier\); one digest is one image x target or one sidecar kind/,
    },
    {
        what: "an unknown sidecar kind in sidecarImages",
        config: withServe((s) => (s.sidecarImages = { "model-sync": refOf("model-sync"), jupyter: refOf("jupyter") })),
        key: "ml-infra:serve.sidecarImages.jupyter",
        value: "ml/jupyter@",
        allowed: /must be a sidecar kind: metrics-exporter, tensorboard, minio, model-sync, log-router/,
    },
    {
        what: "a whole registry allow-listed",
        config: withServe((s) => (s.allowedImages = ["ghcr.io/"])),
        key: "ml-infra:serve.allowedImages[0]",
        value: '"ghcr.io/"',
        allowed: /allows a whole registry; name a repository or a namespace in it/,
    },
    {
        what: "model.syncImage (removed)",
        config: withServe((s) => (s.services[0].model = { bucket: "ml-models-123456789012", prefix: "p/1", syncImage: refOf("model-sync") })),
        key: "ml-infra:serve.services[0].model.syncImage",
        value: "ml/model-sync@",
        allowed: /no longer used: the model-fetch init container runs the stack's model-sync image; pin it as serve\.sidecarImages\.model-sync/,
    },
    {
        what: "unknown target in an environment",
        config: withServe((s) => (s.services[0].target = "tpu-v5")),
        key: "ml-infra:serve.services[0].target",
        value: '"tpu-v5"',
        allowed: /unknown target; allowed: .*cpu-avx2/,
    },
    {
        what: "pull-through secret outside ecr-pullthroughcache/",
        config: { [`${PROJECT}:registry`]: { pullThrough: { dockerHub: { secretName: "dockerhub-creds" } } } },
        key: "ml-infra:registry.pullThrough.dockerHub.secretName",
        value: '"dockerhub-creds"',
        allowed: /starts with ecr-pullthroughcache\//,
    },
    {
        what: "nothing to deploy",
        config: {},
        key: "ml-infra:build",
        value: "(missing)",
        allowed: /needs a section to deploy: runners \(with network and registry\), build, serve \(with network\) or local/,
    },
];

describe("stack config validation", () => {
    it("accepts every stack file under stacks/ (a pinned-only one as promotion from the build stack's outputs leaves it)", async () => {
        const outputs = { ...(await buildStackOutputs()) };
        outputs.images = { ...sidecarImageOutputs(), ...(outputs.images as Record<string, unknown>) };
        for (const stack of stackNames()) {
            const config = requiresPinned(stackFileConfig(stack)) ? promotedStack(stack, outputs).config : stackFileConfig(stack);
            expect(() => load(config), stack).not.toThrow();
        }
    });

    it("refuses a shipped pinned-only stack until it is promoted: one error per missing value, each saying how", () => {
        for (const stack of stackNames().filter((s) => requiresPinned(stackFileConfig(s)))) {
            const problems = problemsOf(stackFileConfig(stack));
            expect(problems.length, stack).toBeGreaterThan(0);
            for (const p of problems) expect(p).toMatch(/^ml-infra:serve\.(services\[\d\]\.ref|sidecarImages\.[a-z-]+) = \(missing\): .*npm run promote -- --from-outputs build-outputs\.json --to <this stack>/);
        }
    });

    it.each(BAD)("rejects $what naming the key, the value and what is allowed", ({ config, key, value, allowed }) => {
        const problems = problemsOf(config);
        const line = problems.find((p) => p.startsWith(`${key} = `));
        expect(line, `no problem names ${key}: ${problems.join(" | ")}`).toBeDefined();
        expect(line).toContain(value);
        expect(line).toMatch(allowed);
    });

    it("reports all problems in one error", () => {
        const config = withBuild((b) => {
            b.buildOnPreview = 1;
            b.images[0].targets = ["nope"];
        });
        // A type error stops before the semantic checks; fix it and both semantic problems show.
        expect(problemsOf(config)).toHaveLength(1);
        const semantic = withBuild((b) => {
            b.images[0].targets = ["nope"];
            b.images[0].context = "missing-dir";
        });
        expect(problemsOf(semantic)).toHaveLength(2);
    });

    it("applies the documented defaults", () => {
        const cfg = load({ [`${PROJECT}:build`]: validBuild() });
        expect(cfg.costCenter).toBe("ml-platform");
        expect(cfg.build?.repositoryPrefix).toBe("ml");
        expect(cfg.build?.buildOnPreview).toBe(false);
        expect(cfg.build?.images[0].dockerfile).toBe("Dockerfile");
        expect(cfg.build?.registry).toEqual({
            forceDelete: false,
            keepReleasesPerTarget: 20,
            cacheUntaggedExpireDays: 7,
        });
        // A runners stack without a registry section gets the registry's defaults.
        const runners = load({ [`${PROJECT}:network`]: { availabilityZones: ["us-east-1a", "us-east-1b"] }, [`${PROJECT}:runners`]: { pools: { amd64: {} } }, [`${PROJECT}:registry`]: { pullThrough: { dockerHub: { secretName: "ecr-pullthroughcache/docker-hub" } } } });
        expect(runners.registry).toMatchObject({ repositoryPrefix: "ml", pullThrough: { enabled: true, ecrPublic: true, quay: true, cachedImageExpireDays: 90 } });
        expect(runners.runners?.ciSources).toEqual({ securityGroupIds: [], cidrs: [] });
        expect(cfg.serve).toBeUndefined();
    });

    it.each([
        ["build", withBuild((b) => (b.images[0].targets = ["cpu-avx3"]))],
        ["staging", withServe((s) => (s.services[0].ref = "registry.example/ml/inference:latest"))],
    ])("registers no resource when the %s config is bad, and fails with a RunError", async (stack, config) => {
        const { error, registered } = await evaluateFailure(stack, config);
        // index.ts is re-imported per evaluation, so compare by name, not class identity.
        expect(error.name).toBe("ConfigError");
        expect(error.message).toMatch(/^Invalid stack configuration:\n {2}- ml-infra:/);
        expect((error as unknown as { __pulumiRunError: boolean }).__pulumiRunError).toBe(true);
        expect(registered).toBe(0);
    });
});

describe("scalar config as the Pulumi CLI passes it (text)", () => {
    it("reads protectData from \"false\" and refuses forceDelete while data is protected", () => {
        const cfg = load({ [`${PROJECT}:protectData`]: false, [`${PROJECT}:build`]: { ...validBuild(), registry: { forceDelete: true } } });
        expect(cfg.protectData).toBe(false);
        expect(problemsOf({ [`${PROJECT}:build`]: { ...validBuild(), registry: { forceDelete: true } } })).toEqual([
            'ml-infra:build.registry.forceDelete = true: would let pulumi delete repositories that still hold images; allowed only with ml-infra:protectData: false (dev)',
        ]);
        expect(problemsOf({ [`${PROJECT}:protectData`]: "no", [`${PROJECT}:build`]: validBuild() })[0]).toMatch(/^ml-infra:protectData = "no": .*expected boolean/);
    });
});

describe("serving needs a network", () => {
    it("refuses a serve section without a network, and one whose ECS hosts could not register", () => {
        expect(problemsOf({ [`${PROJECT}:serve`]: validServe() })).toContain(
            "ml-infra:network = (missing): the serve section needs a network section: services run in its private subnets",
        );
        const out = problemsOf({ [`${PROJECT}:network`]: { availabilityZones: ["us-east-1a", "us-east-1b"] }, [`${PROJECT}:serve`]: validServe() });
        expect(out).toEqual([expect.stringMatching(/^ml-infra:network.interfaceEndpoints = \(missing\): without NAT, ECS container instances need the ecs, ecs-agent, ecs-telemetry endpoints/)]);
    });
});
