/**
 * Property-based tests (fast-check) over the config schema and the program.
 *
 * - random valid build configs evaluate under mocks and pass every policy;
 * - random invalid ones fail with one ConfigError naming the broken key and
 *   register no resource;
 * - arbitrary input never escapes as anything but a ConfigError;
 * - pure builders keep their invariants.
 *
 * `npm test` runs 100 program evaluations and 1,000 runs through the schema
 * and the builders; `npm run fuzz` (FUZZ_SCALE=50) runs fifty times as many.
 */
import fc from "fast-check";
import { afterAll, describe, expect, it } from "vitest";
import { ConfigError } from "../components/shared/problems";
import { releaseLifecyclePolicy } from "../components/build/lifecycle";
import { UPSTREAMS, parseImage, resolveThroughCache } from "../components/registry/pullthrough";
import { isDigestRef } from "../components/shared/image-refs";
import { CATALOG, KNOWN_CUDA_ARCHS, cudaArchProblems, resolveTarget } from "../components/shared/hardware";
import { digestProblem, resolveServeImages } from "../components/serve/images";
import { serveSchema } from "../components/serve/schema";
import { runPolicies } from "../policy/policies";
import * as path from "node:path";
import { ROOT, configProblems, evaluate, evaluateFailure, loadConfig } from "./harness";
import { PROJECT } from "./fixtures";

const SCALE = Number(process.env.FUZZ_SCALE ?? "1");
const PROGRAM_RUNS = 20 * SCALE;
const SCHEMA_RUNS = 200 * SCALE;
const counts = { program: 0, schema: 0 };

const CONTEXT = "images/inference-server";
const CATALOG_TARGETS = Object.keys(CATALOG);
const CATALOG_BASES = [...new Set(Object.values(CATALOG).flatMap((t) => [t.baseImage, t.runtimeBaseImage ?? t.baseImage]))].sort();
const AMD64 = CATALOG_TARGETS.filter((t) => CATALOG[t].platform === "linux/amd64");
const ARM64 = CATALOG_TARGETS.filter((t) => CATALOG[t].platform === "linux/arm64");

const load = (config: Record<string, unknown>) => loadConfig(config);

// ------------------------------------------------------------ generators

const imageName = fc.constantFrom("inference", "pose", "tts", "asr", "ranker");

const imageArb = fc
    .record({
        name: imageName,
        targets: fc.subarray(CATALOG_TARGETS, { minLength: 1 }),
        multi: fc.boolean(),
    })
    .map(({ name, targets, multi }) => {
        const amd = targets.find((t) => AMD64.includes(t));
        const arm = targets.find((t) => ARM64.includes(t));
        return {
            name,
            context: CONTEXT,
            targets,
            ...(multi && amd && arm ? { multiArch: { amd64: amd, arm64: arm } } : {}),
        };
    });

/** A valid build section: unique image names, catalog targets, registry options within range. */
const validBuildArb = fc
    .record({
        images: fc.uniqueArray(imageArb, { minLength: 1, maxLength: 3, selector: (i) => i.name }),
        keep: fc.integer({ min: 1, max: 1000 }),
        days: fc.integer({ min: 1, max: 365 }),
        onRunners: fc.boolean(),
        prefix: fc.constantFrom("ml", "team-a", "vision.models"),
        buildOnPreview: fc.boolean(),
    })
    .map((b) => ({
        // On the runners stack's pools (whose namespace is ml), or on a builder of its own with any namespace.
        repositoryPrefix: b.onRunners ? "ml" : b.prefix,
        // A builder of its own reads no runners stack, so no pull-through cache: the catalog's bases are allowed by name.
        ...(b.onRunners ? {} : { builder: "ci-builder", allowedBaseImages: CATALOG_BASES }),
        buildOnPreview: b.buildOnPreview,
        registry: {
            keepReleasesPerTarget: b.keep,
            cacheUntaggedExpireDays: b.days,
        },
        images: b.images,
    }));

type Build = ReturnType<typeof validBuildArb.generate>["value"];

/** Mutations that each break exactly one key, with the key the error must name. */
const MUTATIONS: ReadonlyArray<{ name: string; key: RegExp; apply: (b: Build) => Record<string, unknown> }> = [
    { name: "unknown target", key: /^ml-infra:build\.images\[0\]\.targets\[0\] = "gpu-tpu"/, apply: (b) => ({ ...b, images: [{ ...b.images[0], targets: ["gpu-tpu"] }] }) },
    { name: "unknown key", key: /^ml-infra:build\.imagez = /, apply: (b) => ({ ...b, imagez: [] }) },
    { name: "wrong type", key: /^ml-infra:build\.buildOnPreview = "yes"/, apply: (b) => ({ ...b, buildOnPreview: "yes" }) },
    { name: "empty images", key: /^ml-infra:build\.images = \[\]/, apply: (b) => ({ ...b, images: [] }) },
    { name: "duplicate name", key: /^ml-infra:build\.images\[1\]\.name = /, apply: (b) => ({ ...b, images: [b.images[0], { ...b.images[0] }] }) },
    { name: "bad platform", key: /^ml-infra:build\.targets\.cpu-avx2\.platform = "windows\/amd64"/, apply: (b) => ({ ...b, targets: { "cpu-avx2": { platform: "windows/amd64" } } }) },
    { name: "bad CUDA arch", key: /^ml-infra:build\.targets\.cuda12\.cuda = /, apply: (b) => ({ ...b, targets: { cuda12: { cuda: { version: "12.8.1", archList: ["1.0"] } } } }) },
    { name: "missing context", key: /^ml-infra:build\.images\[0\]\.context = "nowhere"/, apply: (b) => ({ ...b, images: [{ ...b.images[0], context: "nowhere" }] }) },
    { name: "keep out of range", key: /^ml-infra:build\.registry\.keepReleasesPerTarget = 0/, apply: (b) => ({ ...b, registry: { ...b.registry, keepReleasesPerTarget: 0 } }) },
    { name: "removed version", key: /^ml-infra:build\.version = "1\.0": no longer used/, apply: (b) => ({ ...b, version: "1.0" }) },
    { name: "reserved target name", key: /^ml-infra:build\.targets\.multiarch = .*reserved/, apply: (b) => ({ ...b, targets: { multiarch: { extends: "cpu-avx2" } } }) },
];

// ---------------------------------------------------------------- program

describe("random valid build configs", () => {
    it(`evaluate under mocks, pass every policy and export only digests (${PROGRAM_RUNS} runs)`, async () => {
        await fc.assert(
            fc.asyncProperty(validBuildArb, async (build) => {
                counts.program++;
                const ev = await evaluate("build", { config: { [`${PROJECT}:build`]: build } });
                const violations = runPolicies(ev.resources.map((r) => ({ type: r.type, name: r.name, urn: r.urn, props: r.inputs })));
                expect(violations).toEqual([]);
                const images = ev.outputs.images as Record<string, { targets: Record<string, { ref: string }> }>;
                for (const image of build.images) {
                    for (const t of image.targets) expect(isDigestRef(images[image.name].targets[t].ref)).toBe(true);
                }
                expect(ev.ofType("docker-build:index:Image")).toHaveLength(build.images.reduce((n, i) => n + i.targets.length, 0));
            }),
            { numRuns: PROGRAM_RUNS },
        );
    });
});

describe("random invalid build configs", () => {
    const invalidArb = fc.tuple(validBuildArb, fc.constantFrom(...MUTATIONS));

    it(`each fail with one ConfigError naming the key (${SCHEMA_RUNS} runs through the schema)`, () => {
        fc.assert(
            fc.property(invalidArb, ([build, mutation]) => {
                counts.schema++;
                const broken = mutation.apply(build);
                let error: unknown;
                try {
                    load({ [`${PROJECT}:build`]: broken });
                } catch (e) {
                    error = e;
                }
                expect(error, mutation.name).toBeInstanceOf(ConfigError);
                const problems = (error as ConfigError).problems;
                expect(problems.some((p) => mutation.key.test(p)), `${mutation.name}: ${problems.join(" | ")}`).toBe(true);
                for (const p of problems) expect(p).toMatch(/^ml-infra:\S+ = .+: .+/);
            }),
            { numRuns: SCHEMA_RUNS },
        );
    });

    it(`register no resource through the program (${PROGRAM_RUNS} runs)`, async () => {
        await fc.assert(
            fc.asyncProperty(invalidArb, async ([build, mutation]) => {
                counts.program++;
                const { error, registered } = await evaluateFailure("build", { [`${PROJECT}:build`]: mutation.apply(build) });
                expect(error.name).toBe("ConfigError");
                expect(registered).toBe(0);
            }),
            { numRuns: PROGRAM_RUNS },
        );
    });
});

describe("arbitrary input", () => {
    it(`is valid or a ConfigError, never a crash from inside (${SCHEMA_RUNS} runs)`, () => {
        const anyJson = fc.jsonValue({ maxDepth: 4 });
        const config = fc.record(
            {
                [`${PROJECT}:build`]: fc.oneof(anyJson, validBuildArb.chain((b) => fc.record({ ...Object.fromEntries(Object.entries(b).map(([k, v]) => [k, fc.oneof(fc.constant(v), anyJson)])) }))),
                [`${PROJECT}:serve`]: anyJson,
                [`${PROJECT}:network`]: anyJson,
                [`${PROJECT}:registry`]: anyJson,
                [`${PROJECT}:runners`]: anyJson,
                [`${PROJECT}:local`]: anyJson,
                [`${PROJECT}:buildSecrets`]: anyJson,
                [`${PROJECT}:protectData`]: anyJson,
                [`${PROJECT}:costCenter`]: anyJson,
            },
            { requiredKeys: [] },
        );
        fc.assert(
            fc.property(config, (c) => {
                counts.schema++;
                try {
                    load(c);
                } catch (error) {
                    expect(error, String((error as Error).stack)).toBeInstanceOf(ConfigError);
                }
            }),
            { numRuns: SCHEMA_RUNS },
        );
    });
});

// ---------------------------------------------------------------- serve: where images come from

describe("serve images", () => {
    const REGISTRY = "123456789012.dkr.ecr.us-east-1.amazonaws.com";
    const hex64 = fc.stringMatching(/^[0-9a-f]{64}$/);
    /** A digest: mostly real-looking, sometimes a placeholder, upper-case, too short or too long. */
    const digest = fc.oneof(
        { weight: 6, arbitrary: hex64.map((h) => ({ text: `sha256:${h}`, ok: digestProblem(`sha256:${h}`) === undefined })) },
        { weight: 1, arbitrary: fc.constantFrom(`sha256:${"0".repeat(64)}`, `sha256:${"0".repeat(63)}1`, `sha256:${"ab12".repeat(16)}`).map((text) => ({ text, ok: false })) },
        { weight: 1, arbitrary: hex64.map((h) => ({ text: `sha256:${h.toUpperCase()}`, ok: h.toUpperCase() === h && digestProblem(`sha256:${h}`) === undefined })) },
        { weight: 1, arbitrary: fc.tuple(hex64, fc.constantFrom(-1, 1)).map(([h, d]) => ({ text: `sha256:${d < 0 ? h.slice(1) : `${h}0`}`, ok: false })) },
    );
    /** A reference to `image`: our registry or another, its repository or another's, with or without a tag. */
    const refTo = (image: string) => fc.oneof({ weight: 4, arbitrary: goodRef(image) }, { weight: 1, arbitrary: anyRef(image) });
    const goodRef = (image: string) => hex64.filter((h) => digestProblem(`sha256:${h}`) === undefined).map((h) => ({ text: `${REGISTRY}/ml/${image}@sha256:${h}`, digest: `sha256:${h}`, ok: true }));
    const anyRef = (image: string) =>
        fc
            .record({
                host: fc.constantFrom(REGISTRY, REGISTRY, REGISTRY, "210987654321.dkr.ecr.us-east-1.amazonaws.com", "123456789012.dkr.ecr.eu-west-1.amazonaws.com", "ghcr.io"),
                repository: fc.constantFrom(`ml/${image}`, `ml/${image}`, `team/${image}`, "ml/other"),
                tag: fc.constantFrom("", "", "", ":v1"),
                digest,
            })
            .map((r) => ({
                text: `${r.host}/${r.repository}${r.tag}@${r.digest.text}`,
                digest: r.digest.text,
                ok: r.digest.ok && r.host === REGISTRY && r.repository === `ml/${image}` && r.tag === "",
            }));

    it(`an image is deployed only when it is a digest a build could produce, in the stack's registry, in <prefix>/<image>, one digest per image (${SCHEMA_RUNS} runs)`, () => {
        const targets = { "cpu-avx2": resolveTarget("cpu-avx2", CATALOG["cpu-avx2"]) };
        let accepted = 0;
        let refused = 0;
        fc.assert(
            fc.property(refTo("inference"), refTo("model-sync"), refTo("metrics-exporter"), (server, sync, metrics) => {
                counts.schema++;
                const serve = serveSchema.parse({
                    requirePinned: true,
                    clients: { cidrs: ["10.0.0.0/16"] },
                    sidecarImages: { "model-sync": sync.text, "metrics-exporter": metrics.text },
                    services: [{ name: "a", image: "inference", target: "cpu-avx2", ref: server.text, model: { bucket: "ml-models-1", prefix: "m/1" }, sidecars: [{ kind: "metrics-exporter" }] }],
                });
                const { problems } = resolveServeImages(serve, targets, { account: "123456789012", region: "us-east-1" });
                const distinct = new Set([server.digest, sync.digest, metrics.digest]).size === 3;
                expect(problems.length === 0, JSON.stringify({ server, sync, metrics, problems })).toBe(server.ok && sync.ok && metrics.ok && distinct);
                if (problems.length === 0) accepted++;
                else refused++;
                // Every problem names the key of a bad value.
                for (const p of problems) expect(["services", "sidecarImages"]).toContain(p.keys[0]);
            }),
            { numRuns: SCHEMA_RUNS },
        );
        expect(accepted, "some stacks are accepted").toBeGreaterThan(0);
        expect(refused, "some stacks are refused").toBeGreaterThan(0);
    });
});

// ---------------------------------------------------------------- builders

describe("pure builders", () => {
    it(`lifecycle policies: deployed images first, then one rule per target and one for indexes, priorities 1..n, never untagged (${SCHEMA_RUNS} runs)`, () => {
        const targetName = fc.stringMatching(/^[a-z][a-z0-9-]{0,20}$/);
        fc.assert(
            fc.property(fc.uniqueArray(targetName, { minLength: 1, maxLength: 12 }), fc.integer({ min: 1, max: 1000 }), (targets, keep) => {
                counts.schema++;
                const rules = releaseLifecyclePolicy(targets, keep).rules;
                expect(rules.map((r) => r.rulePriority)).toEqual([...targets, "deployed", "multiarch"].map((_, i) => i + 1));
                expect(rules[0].selection.tagPatternList).toEqual(["deployed-*"]);
                expect(rules.slice(1).every((r) => r.selection.tagStatus === "tagged" && r.selection.countNumber === keep)).toBe(true);
                expect(new Set(rules.map((r) => r.selection.tagPatternList?.[0])).size).toBe(targets.length + 2);
            }),
            { numRuns: SCHEMA_RUNS },
        );
    });

    it(`pull-through rewriting keeps the repository path and tag/digest (${SCHEMA_RUNS} runs)`, () => {
        const seg = fc.stringMatching(/^[a-z0-9]+([._-][a-z0-9]+)*$/);
        const ref = fc.record({
            host: fc.constantFrom("docker.io", "public.ecr.aws", "quay.io", "ghcr.io", "registry.example.com:5000", ""),
            path: fc.array(seg, { minLength: 1, maxLength: 3 }),
            tag: fc.option(fc.stringMatching(/^[A-Za-z0-9_][A-Za-z0-9_.-]{0,20}$/)),
        });
        const host = "123456789012.dkr.ecr.us-east-1.amazonaws.com";
        const all = new Set(UPSTREAMS.map((u) => u.key));
        fc.assert(
            fc.property(ref, (r) => {
                // Without a host, a first segment with a dot would be a registry host (Docker's rule).
                fc.pre(r.host !== "" || !r.path[0].includes("."));
                counts.schema++;
                const text = `${r.host ? `${r.host}/` : ""}${r.path.join("/")}${r.tag ? `:${r.tag}` : ""}`;
                const parsed = parseImage(text);
                const out = resolveThroughCache(text, host, all);
                if (r.host === "registry.example.com:5000") expect(out).toBe(text);
                else {
                    expect(out.startsWith(`${host}/`)).toBe(true);
                    expect(out.endsWith(`${parsed.path}${parsed.suffix}`)).toBe(true);
                }
            }),
            { numRuns: SCHEMA_RUNS },
        );
    });

    it(`CUDA arch checks accept exactly the known archs in the toolkit's range (${SCHEMA_RUNS} runs)`, () => {
        fc.assert(
            fc.property(fc.subarray([...KNOWN_CUDA_ARCHS, "4.2", "9.9", "sm_80"], { minLength: 1 }), (archs) => {
                counts.schema++;
                const problems = cudaArchProblems({ version: "12.8.1", archList: archs });
                const bad = archs.filter((a) => !KNOWN_CUDA_ARCHS.includes(a) || Number(a) < 5 || Number(a) > 12);
                expect(problems).toHaveLength(bad.length);
            }),
            { numRuns: SCHEMA_RUNS },
        );
    });
});

// ---------------------------------------------------------------- hostile input classes

describe("hostile input classes", () => {
    const oneImage = (patch: Record<string, unknown>) => ({
        [`${PROJECT}:build`]: { builder: "ci-builder", allowedBaseImages: CATALOG_BASES, images: [{ name: "inference", context: CONTEXT, targets: ["cpu-avx2"], ...patch }] },
    });

    /** Values shaped like credentials: token formats, URLs with user info, long opaque keys. */
    const credentialValue = fc.oneof(
        fc.stringMatching(/^AKIA[A-Z0-9]{16}$/),
        fc.stringMatching(/^ghp_[A-Za-z0-9]{36}$/),
        fc.stringMatching(/^hf_[A-Za-z0-9]{34}$/),
        fc.stringMatching(/^sk-[A-Za-z0-9]{40}$/),
        fc.tuple(fc.stringMatching(/^[a-z_]{1,10}$/), fc.stringMatching(/^[A-Za-z0-9]{4,30}$/), fc.constantFrom("pypi.example.com/simple", "git.example.com/org/repo.git")).map(([u, p, h]) => `https://${u}:${p}@${h}`),
        fc.stringMatching(/^[A-Za-z0-9]{40}$/).filter((v) => /[a-z]/.test(v) && /[A-Z]/.test(v) && /\d/.test(v)),
    );
    const plainName = fc.constantFrom("INDEX_URL", "MODEL_REPO", "NOTE", "FLAGS", "MIRROR");

    it(`a credential-shaped value in a build arg is refused at its key, never shown (${SCHEMA_RUNS} runs)`, () => {
        fc.assert(
            fc.property(plainName, credentialValue, (name, value) => {
                counts.schema++;
                const problems = configProblems(oneImage({ buildArgs: { [name]: value } }));
                expect(problems.some((p) => p.startsWith(`${PROJECT}:build.images[0].buildArgs.${name} = [redacted]: `))).toBe(true);
                expect(problems.join("\n")).not.toContain(value);
            }),
            { numRuns: SCHEMA_RUNS },
        );
    });

    it(`ordinary build args pass (${SCHEMA_RUNS} runs)`, () => {
        const ordinary = fc.oneof(fc.constantFrom("-O3 -mavx2", "true", "false", "https://pypi.org/simple", "cu128", "8.0;9.0"), fc.stringMatching(/^[a-z0-9._-]{0,20}$/));
        fc.assert(
            fc.property(plainName, ordinary, (name, value) => {
                counts.schema++;
                expect(configProblems(oneImage({ buildArgs: { [name]: value } }))).toEqual([]);
            }),
            { numRuns: SCHEMA_RUNS },
        );
    });

    it(`a context path that leaves the project is refused (${SCHEMA_RUNS} runs)`, () => {
        const escaping = fc.oneof(
            fc.array(fc.constantFrom("..", "images", "."), { minLength: 1, maxLength: 6 }).map((parts) => [...parts, "..", ".."].join("/")),
            fc.stringMatching(/^\/[a-z]{0,10}$/),
        );
        fc.assert(
            fc.property(escaping, (context) => {
                fc.pre(path.isAbsolute(context) || path.relative(ROOT, path.resolve(ROOT, context)).startsWith(".."));
                counts.schema++;
                const problems = configProblems(oneImage({ context }));
                expect(problems.some((p) => p.startsWith(`${PROJECT}:build.images[0].context = `) && /inside the project|relative to the project/.test(p)), problems.join("; ")).toBe(true);
            }),
            { numRuns: SCHEMA_RUNS },
        );
    });

    /** A runners stack whose registry can serve the BuildKit image, with these recurrences and CI ranges. */
    const runnersStack = (o: { recurrences?: string[]; cidrs?: string[] }) => ({
        [`${PROJECT}:network`]: { mode: "existing", vpcId: "vpc-0123456789abcdef0", privateSubnetIds: ["subnet-0123456789abcdef0", "subnet-0123456789abcdef1"] },
        [`${PROJECT}:registry`]: { pullThrough: { dockerHub: { secretName: "ecr-pullthroughcache/docker-hub" } } },
        [`${PROJECT}:runners`]: {
            ...(o.recurrences ? { scaleToZeroSchedule: { recurrences: o.recurrences } } : {}),
            ...(o.cidrs ? { ciSources: { cidrs: o.cidrs } } : {}),
            pools: { amd64: {} },
        },
    });

    it(`CIDRs: not a network is refused, a public range is refused as ingress, a private network is accepted (${SCHEMA_RUNS} runs)`, () => {
        // Private first octets weigh more, so every run reaches many private networks (not a handful).
        const first = fc.oneof({ arbitrary: fc.constantFrom(10, 172, 192, 100), weight: 3 }, { arbitrary: fc.integer({ min: 0, max: 300 }), weight: 1 });
        const second = fc.oneof(fc.constantFrom(16, 31, 168, 64, 127, 0), fc.integer({ min: 0, max: 255 }));
        const cidrArb = fc.tuple(first, second, fc.integer({ min: 0, max: 255 }), fc.integer({ min: 0, max: 255 }), fc.integer({ min: 0, max: 34 }), fc.boolean());
        let privates = 0;
        fc.assert(
            fc.property(cidrArb, ([a, b, c, d, p, align]) => {
                counts.schema++;
                const raw = ((a * 256 + b) * 256 + c) * 256 + d;
                const size = p <= 32 ? 2 ** (32 - p) : 1;
                const address = align ? raw - (raw % size) : raw;
                const octets = [Math.floor(address / 2 ** 24), Math.floor(address / 2 ** 16) % 256, Math.floor(address / 256) % 256, address % 256];
                const cidr = `${octets.join(".")}/${p}`;
                const problems = configProblems(runnersStack({ cidrs: [cidr] }), "runners");
                const valid = octets[0] <= 255 && p <= 32 && address % size === 0;
                const [o1, o2] = octets;
                const isPrivate = valid && ((o1 === 10 && p >= 8) || (o1 === 172 && o2 >= 16 && o2 < 32 && p >= 12) || (o1 === 192 && o2 === 168 && p >= 16) || (o1 === 100 && o2 >= 64 && o2 < 128 && p >= 10));
                if (isPrivate) privates++;
                expect(problems.length === 0, `${cidr}: ${problems.join("; ")}`).toBe(isPrivate);
                if (!isPrivate) expect(problems[0]).toMatch(/^ml-infra:runners\.ciSources\.cidrs\[0\] = /);
            }),
            { numRuns: SCHEMA_RUNS },
        );
        expect(privates, "the generator reaches private networks too").toBeGreaterThan(SCHEMA_RUNS / 20);
    });

    it(`schedules: anything but a valid five-field cron is refused at its key (${SCHEMA_RUNS} runs)`, () => {
        const field = fc.oneof(fc.constant("*"), fc.integer({ min: 0, max: 70 }).map(String), fc.constantFrom("MON-FRI", "*/5", "1-5", "$(id)", "`x`", ";", "0,30"));
        let accepted = 0;
        // Valid expressions too: each field in its own range.
        const valid = fc
            .tuple(fc.integer({ min: 0, max: 59 }), fc.integer({ min: 0, max: 23 }), fc.constantFrom("*", "1", "1-15"), fc.constantFrom("*", "JAN-MAR", "12"), fc.constantFrom("*", "MON-FRI", "0", "6"))
            .map((f) => f.map(String));
        fc.assert(
            fc.property(fc.oneof(fc.array(field, { minLength: 1, maxLength: 7 }), valid), (fields) => {
                counts.schema++;
                const expression = fields.join(" ");
                const problems = configProblems(runnersStack({ recurrences: [expression] }), "runners");
                if (problems.length > 0) expect(problems[0]).toMatch(/^ml-infra:runners\.scaleToZeroSchedule\.recurrences\[0\] = /);
                else accepted++;
                const shellish = fields.some((f) => /[$`;]/.test(f));
                if (shellish || fields.length !== 5) expect(problems.length).toBeGreaterThan(0);
            }),
            { numRuns: SCHEMA_RUNS },
        );
        expect(accepted, "valid expressions are accepted").toBeGreaterThan(0);
    });
});

afterAll(() => {
    console.log(`fuzz: ${counts.program} program evaluations, ${counts.schema} schema and builder runs (FUZZ_SCALE=${SCALE})`);
});
