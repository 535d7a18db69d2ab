/**
 * How a release is identified and what keeps it: release tags are a hash of
 * every input docker-build rebuilds for (same inputs, same tag; any change,
 * a new tag), images and indexes are kept when Pulumi deletes them, and the
 * lifecycle rules never expire what an environment deploys.
 */
import * as fc from "fast-check";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { releaseLifecyclePolicy } from "../components/build/lifecycle";
import { type ImageSpec, contextDigest, multiArchTag, releaseTag } from "../components/build/release";
import type { LifecyclePolicy } from "../components/shared/ecr-lifecycle";
import { MAX_TAG_LENGTH, childMarkers, deployedImages, markerTag, markersFor } from "../scripts/ci/mark-deployed";
import { type Evaluation, evaluate, ROOT } from "./harness";

// ---------------------------------------------------------------- release tags (pure)

const SPEC: ImageSpec = {
    repository: "123456789012.dkr.ecr.us-east-1.amazonaws.com/ml/inference",
    cacheRef: "123456789012.dkr.ecr.us-east-1.amazonaws.com/ml/cache/inference:cache-cpu-avx2",
    context: "images/inference-server",
    contextDigest: "c".repeat(64),
    dockerfile: "images/inference-server/Dockerfile",
    stage: "runtime-cpu",
    platform: "linux/amd64",
    buildArgs: { BASE_IMAGE: "b", KERNEL_CFLAGS: "-O3" },
    labels: { "ml-infra.image": "inference" },
    secretIds: [],
    builder: "ml-amd64",
    buildOnPreview: false,
};

/** One changed value per field of the spec: every field docker-build rebuilds for. */
function changed(spec: ImageSpec, key: keyof ImageSpec): ImageSpec {
    const value = spec[key];
    if (typeof value === "boolean") return { ...spec, [key]: !value };
    if (typeof value === "string") return { ...spec, [key]: `${value}x` };
    if (value === undefined) return { ...spec, [key]: "set" };
    if (Array.isArray(value)) return { ...spec, [key]: [...value, "extra"] };
    return { ...spec, [key]: { ...value, EXTRA: "1" } };
}

describe("release tags", () => {
    it("are <target>.<16 hex> and the same for the same inputs, whatever the key order", () => {
        const tag = releaseTag("cpu-avx2", SPEC);
        expect(tag).toMatch(/^cpu-avx2\.[0-9a-f]{16}$/);
        const reordered = Object.fromEntries(Object.entries(SPEC).reverse()) as unknown as ImageSpec;
        expect(releaseTag("cpu-avx2", { ...reordered, buildArgs: { KERNEL_CFLAGS: "-O3", BASE_IMAGE: "b" } })).toBe(tag);
    });

    it("change when any one input changes", () => {
        const tag = releaseTag("cpu-avx2", SPEC);
        const keys = Object.keys(SPEC) as Array<keyof ImageSpec>;
        expect(keys.length).toBeGreaterThanOrEqual(12);
        for (const key of keys) expect(releaseTag("cpu-avx2", changed(SPEC, key)), `field ${key}`).not.toBe(tag);
    });

    it("are equal exactly when the specs are equal (property)", () => {
        const spec = fc.record({
            contextDigest: fc.constantFrom("c1", "c2"),
            buildArgs: fc.dictionary(fc.constantFrom("A", "B", "BASE_IMAGE"), fc.constantFrom("x", "y")),
            stage: fc.constantFrom("runtime-cpu", "runtime-cuda"),
            builder: fc.option(fc.constantFrom("ml-amd64", "ml-gpu"), { nil: undefined }),
            buildOnPreview: fc.boolean(),
        });
        fc.assert(
            fc.property(spec, spec, (a, b) => {
                const same = canonicalJson(a) === canonicalJson(b);
                return same === (releaseTag("t", { ...SPEC, ...a }) === releaseTag("t", { ...SPEC, ...b }));
            }),
            { numRuns: 500 },
        );
    });

    it("of a multi-arch index depend on the tags it joins, not their order", () => {
        expect(multiArchTag(["a.1", "b.2"])).toBe(multiArchTag(["b.2", "a.1"]));
        expect(multiArchTag(["a.1", "b.2"])).not.toBe(multiArchTag(["a.1", "b.3"]));
        expect(multiArchTag(["a.1", "b.2"])).toMatch(/^multiarch\.[0-9a-f]{16}$/);
    });
});

/** JSON with every object's keys sorted, at every depth. */
function canonicalJson(value: unknown): string {
    return JSON.stringify(value, (_, v: unknown) =>
        v !== null && typeof v === "object" && !Array.isArray(v) ? Object.fromEntries(Object.entries(v as Record<string, unknown>).sort(([x], [y]) => (x < y ? -1 : 1))) : v,
    );
}

describe("the build context digest", () => {
    let dir: string;
    const write = (rel: string, text: string, mode = 0o644) => {
        fs.mkdirSync(path.dirname(path.join(dir, rel)), { recursive: true });
        fs.writeFileSync(path.join(dir, rel), text);
        fs.chmodSync(path.join(dir, rel), mode);
    };
    const digest = () => contextDigest(dir, path.join(dir, "Dockerfile"));

    beforeAll(() => {
        dir = fs.mkdtempSync(path.join(os.tmpdir(), "ctx-"));
        write("Dockerfile", "FROM scratch\nCOPY . /\n");
        write("app/server.py", "print(1)\n");
        write("run.sh", "#!/bin/sh\n", 0o755);
        write(".dockerignore", "notes/\n*.md\n");
        write("notes/todo.txt", "later\n");
        write("README.md", "docs\n");
    });
    afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

    it("changes with a file's content, a new file, a renamed file, the execute bit, a symlink's target and the Dockerfile", () => {
        const steps: Array<[string, () => void]> = [
            ["content", () => write("app/server.py", "print(2)\n")],
            ["new file", () => write("app/extra.py", "x = 1\n")],
            ["rename", () => fs.renameSync(path.join(dir, "app/extra.py"), path.join(dir, "app/other.py"))],
            ["execute bit", () => fs.chmodSync(path.join(dir, "run.sh"), 0o644)],
            ["symlink", () => fs.symlinkSync("app/server.py", path.join(dir, "link.py"))],
            ["file behind a symlink", () => write("app/server.py", "print(3)\n")],
            ["Dockerfile", () => write("Dockerfile", "FROM scratch\nCOPY app /app\n")],
            ["ignore rules", () => write(".dockerignore", "notes/\n")],
        ];
        for (const [what, change] of steps) {
            const before = digest();
            change();
            expect(digest(), what).not.toBe(before);
        }
    });

    it("does not change with ignored files or permission bits git does not keep", () => {
        write(".dockerignore", "notes/\n*.md\n");
        const before = digest();
        write("notes/todo.txt", "much later\n");
        write("README.md", "more docs\n");
        fs.chmodSync(path.join(dir, "app/server.py"), 0o664);
        expect(digest()).toBe(before);
    });
});

// ---------------------------------------------------------------- the program, under mocks

const CONTEXT = "images/inference-server";

/** A build stack on its own builder (no runners stack) with one image on one target; `patch` changes one input. */
function buildConfig(patch: (b: Record<string, unknown>, image: Record<string, unknown>) => void = () => {}): Record<string, unknown> {
    const image: Record<string, unknown> = { name: "inference", context: CONTEXT, targets: ["cpu-avx2"] };
    const build: Record<string, unknown> = {
        builder: "ci-builder",
        repositoryPrefix: "ml",
        allowedBaseImages: ["public.ecr.aws/docker/library/debian:bookworm-slim", "public.ecr.aws/docker/library/debian:trixie-slim"],
        images: [image],
    };
    patch(build, image);
    return { "aws:region": "us-east-1", "ml-infra:build": build };
}

interface Built {
    readonly tag: string;
    /** The Image's inputs but its tags and credentials. */
    readonly inputs: string;
}

async function built(config: Record<string, unknown>, name = "inference-cpu-avx2-image"): Promise<Built> {
    // Build secrets as `pulumi config set --secret` leaves them (plain ones are refused).
    const ev: Evaluation = await evaluate("build", { config, secretKeys: ["ml-infra:buildSecrets"] });
    const image = ev.ofType("docker-build:index:Image").find((i) => i.name === name);
    if (!image) throw new Error(`no image ${name}`);
    const { tags, registries, secrets, ...rest } = image.inputs as Record<string, unknown>;
    void registries;
    void secrets;
    return { tag: (tags as string[])[0], inputs: canonicalJson(rest) };
}

describe("release tags of the program's images", () => {
    const variants: Record<string, Record<string, unknown>> = {
        "an image build arg": buildConfig((_, i) => (i.buildArgs = { EXTRA: "1" })),
        "a target build arg": buildConfig((b) => (b.targets = { "cpu-avx2": { buildArgs: { KERNEL_CFLAGS: "-O2 -mavx2 -mfma" } } })),
        "the target's base image": buildConfig((b) => (b.targets = { "cpu-avx2": { baseImage: "public.ecr.aws/docker/library/debian:trixie-slim" } })),
        "the stage": buildConfig((_, i) => (i.stage = "runtime-deps")),
        "the builder": buildConfig((b) => (b.builder = "other-builder")),
        "buildOnPreview": buildConfig((b) => (b.buildOnPreview = true)),
        "the secret ids": buildConfig((_, i) => (i.secrets = ["hf_token"])),
        "the repository namespace": buildConfig((b) => (b.repositoryPrefix = "team")),
    };
    let base: Built;
    const results: Record<string, Built> = {};

    beforeAll(async () => {
        base = await built(buildConfig());
        for (const [what, config] of Object.entries(variants)) {
            const withSecret = what === "the secret ids" ? { ...config, "ml-infra:buildSecrets": { hf_token: "s3cr3t" } } : config;
            results[what] = await built(withSecret);
        }
    }, 120_000);

    it("are <repo>:<target>.<hash>", () => {
        expect(base.tag).toMatch(/\/ml\/inference:cpu-avx2\.[0-9a-f]{16}$/);
    });

    it("are the same when nothing changed, and unrelated config changes nothing", async () => {
        expect((await built(buildConfig())).tag).toBe(base.tag);
        const unrelated = await built(buildConfig((b) => (b.registry = { keepReleasesPerTarget: 3, cacheUntaggedExpireDays: 2 })));
        expect(unrelated).toEqual(base);
    });

    it.each(Object.keys(variants))("change with %s, as do the Image's inputs", (what) => {
        expect(results[what].inputs, `${what} must change what docker-build sees`).not.toBe(base.inputs);
        expect(results[what].tag, `${what} must change the tag`).not.toBe(base.tag);
    });

    it("are a function of the Image's inputs: equal inputs, equal tags; different inputs, different tags", () => {
        const all = [base, ...Object.values(results)];
        for (const a of all) for (const b of all) expect(a.inputs === b.inputs).toBe(a.tag === b.tag);
    });

    it("change with the build context, and with the digest of a chain's base", async () => {
        const dir = fs.mkdtempSync(path.join(ROOT, ".tmp-ctx-"));
        try {
            fs.cpSync(path.join(ROOT, CONTEXT), dir, { recursive: true });
            const rel = path.relative(ROOT, dir);
            const chain = (b: Record<string, unknown>) => {
                b.images = [
                    { name: "inference-base", context: rel, targets: ["cpu-avx2"], stage: "python-runtime" },
                    { name: "inference", context: CONTEXT, targets: ["cpu-avx2"], base: "inference-base" },
                ];
            };
            const before = await built(buildConfig(chain), "inference-base-cpu-avx2-image");
            const dependentBefore = await built(buildConfig(chain));
            fs.appendFileSync(path.join(dir, "app/server.py"), "\n# changed\n");
            const after = await built(buildConfig(chain), "inference-base-cpu-avx2-image");
            const dependentAfter = await built(buildConfig(chain));
            expect(after.tag).not.toBe(before.tag);
            expect(dependentAfter.tag, "the dependent's BASE_IMAGE is the base's new digest").not.toBe(dependentBefore.tag);
        } finally {
            fs.rmSync(dir, { recursive: true, force: true });
        }
    });

    it("keep every Image and Index when Pulumi deletes or replaces it", async () => {
        const ev = await evaluate("build");
        const kept = [...ev.ofType("docker-build:index:Image"), ...ev.ofType("docker-build:index:Index")];
        expect(kept.length).toBeGreaterThan(0);
        for (const r of kept) expect(r.retainOnDelete, r.name).toBe(true);
    });

    it("ignore a rotated build secret (no rebuild, so no re-push of the tag)", async () => {
        const config = { ...variants["the secret ids"], "ml-infra:buildSecrets": { hf_token: "rotated" } };
        const ev = await evaluate("build", { config, secretKeys: ["ml-infra:buildSecrets"] });
        const image = ev.ofType("docker-build:index:Image")[0];
        expect(image.inputs.ignoreSecretsInDiffCalculation).toEqual(["hf_token"]);
        expect((await built(config)).tag).toBe(results["the secret ids"].tag);
    });
});

// ---------------------------------------------------------------- lifecycle rules

interface StoredImage {
    readonly digest: string;
    readonly tags: readonly string[];
    /** Days ago it was pushed. */
    readonly age: number;
}

function wildcard(pattern: string): RegExp {
    return new RegExp(`^${pattern.split("*").map((p) => p.replace(/[.+?^${}()|[\]\\]/g, "\\$&")).join(".*")}$`);
}

/**
 * The images ECR's lifecycle evaluation expires, by its documented rules:
 * rules apply in priority order; a rule selects images by tag status and
 * every pattern of its list matching one of the image's tags; an image a
 * higher-priority rule selected cannot be expired by a lower one (which still
 * counts it); imageCountMoreThan keeps the newest N of those it selects.
 */
function expired(policy: LifecyclePolicy, images: readonly StoredImage[]): Set<string> {
    const claimed = new Set<string>();
    const out = new Set<string>();
    for (const rule of [...policy.rules].sort((a, b) => a.rulePriority - b.rulePriority)) {
        const s = rule.selection;
        const selected = images.filter((img) => {
            if (s.tagStatus === "untagged") return img.tags.length === 0;
            if (s.tagStatus === "any") return true;
            return img.tags.length > 0 && (s.tagPatternList ?? []).every((p) => img.tags.some((t) => wildcard(p).test(t)));
        });
        const newestFirst = [...selected].sort((a, b) => a.age - b.age);
        const candidates = s.countType === "imageCountMoreThan" ? newestFirst.slice(s.countNumber) : selected.filter((i) => i.age > s.countNumber);
        for (const img of candidates) if (!claimed.has(img.digest) && !out.has(img.digest)) out.add(img.digest);
        for (const img of selected) claimed.add(img.digest);
    }
    return out;
}

describe("release lifecycle rules", () => {
    const TARGETS = ["cpu-avx2", "cuda12", "arm64-neon"];
    const imageArb = fc.record({
        target: fc.constantFrom(...TARGETS, "removed-target", "multiarch"),
        age: fc.integer({ min: 0, max: 1000 }),
        deployed: fc.boolean(),
        untagged: fc.boolean(),
    });

    it("never expire a deployed image, an untagged image or a removed target's release, and keep the newest N of each target", () => {
        fc.assert(
            fc.property(fc.array(imageArb, { maxLength: 60 }), fc.integer({ min: 1, max: 5 }), (specs, keep) => {
                const images: StoredImage[] = specs.map((s, i) => ({
                    digest: `d${i}`,
                    age: s.age,
                    tags: s.untagged ? [] : [`${s.target}.${i.toString(16).padStart(16, "0")}`, ...(s.deployed ? [`deployed-prod-svc${i}-server`] : [])],
                }));
                const gone = expired(releaseLifecyclePolicy(TARGETS, keep), images);
                for (const img of images) {
                    if (img.tags.some((t) => t.startsWith("deployed-"))) expect(gone.has(img.digest), "deployed").toBe(false);
                    if (img.tags.length === 0) expect(gone.has(img.digest), "untagged").toBe(false);
                    if (img.tags.some((t) => t.startsWith("removed-target."))) expect(gone.has(img.digest), "removed target").toBe(false);
                }
                for (const target of [...TARGETS, "multiarch"]) {
                    const mine = images.filter((i) => i.tags.some((t) => t.startsWith(`${target}.`))).sort((a, b) => a.age - b.age);
                    for (const img of mine.slice(0, keep)) expect(gone.has(img.digest), `newest ${keep} of ${target}`).toBe(false);
                    const undeployedOld = mine.slice(keep).filter((i) => !i.tags.some((t) => t.startsWith("deployed-")));
                    for (const img of undeployedOld) expect(gone.has(img.digest), `old release of ${target}`).toBe(true);
                }
            }),
            { numRuns: 300 },
        );
    });

    it("would expire a deployed image without the marker rule (the simulation can fail)", () => {
        const policy = releaseLifecyclePolicy(["cpu-avx2"], 1);
        const withoutMarkerRule = { rules: policy.rules.slice(1) };
        const images: StoredImage[] = [
            { digest: "new", age: 1, tags: ["cpu-avx2.0000000000000002"] },
            { digest: "old", age: 9, tags: ["cpu-avx2.0000000000000001", "deployed-prod-classifier-server"] },
        ];
        expect(expired(withoutMarkerRule, images).has("old")).toBe(true);
        expect(expired(policy, images).has("old")).toBe(false);
    });

    it("match a target's releases only (target names have no dots)", () => {
        const policy = releaseLifecyclePolicy(["arm64-neon", "arm64-neon-sve"], 1);
        const images: StoredImage[] = [
            { digest: "a", age: 1, tags: ["arm64-neon-sve.0000000000000001"] },
            { digest: "b", age: 2, tags: ["arm64-neon.0000000000000001"] },
        ];
        expect(expired(policy, images).size).toBe(0);
    });
});

// ---------------------------------------------------------------- deployment markers (CI)

describe("deployment markers", () => {
    const HOST = "123456789012.dkr.ecr.us-east-1.amazonaws.com";
    const D1 = "sha256:5b0c4e3a1c1f7a9d2e8b6c4d0f1a3e5b7c9d1e3f5a7b9c1d3e5f7a9b1c3d5e7f";
    const deployments = {
        "classifier-cpu": {
            ref: `${HOST}/ml/inference@${D1}`,
            images: [
                { container: "server", ref: `${HOST}/ml/inference@${D1}` },
                { container: "metrics-exporter", ref: `${HOST}/ml/metrics-exporter@${D1.replace("5b0c", "6c1d")}` },
                { container: "xray", ref: `public.ecr.aws/xray/aws-xray-daemon@${D1.replace("5b0c", "7d2e")}` },
                { container: "other-account", ref: `210987654321.dkr.ecr.us-east-1.amazonaws.com/ml/inference@${D1}` },
            ],
        },
    };

    it("mark every digest of this account's registry as deployed-<stack>-<service>-<container>, and skip the rest", () => {
        const { markers, skipped } = markersFor("acme/ml-infra/prod", deployedImages(deployments), "123456789012");
        expect(markers).toEqual([
            { registryId: "123456789012", region: "us-east-1", repository: "ml/inference", digest: D1, tag: "deployed-prod-classifier-cpu-server" },
            { registryId: "123456789012", region: "us-east-1", repository: "ml/metrics-exporter", digest: D1.replace("5b0c", "6c1d"), tag: "deployed-prod-classifier-cpu-metrics-exporter" },
        ]);
        expect(skipped.map((s) => s.container)).toEqual(["xray", "other-account"]);
        // Every marker is selected by the lifecycle rule that keeps deployed images.
        for (const m of markers) expect(m.tag).toMatch(wildcard("deployed-*"));
    });

    it("are valid ECR tags of at most 128 characters, distinct for distinct long names", () => {
        const a = markerTag("prod", "s".repeat(40), "c".repeat(40), "linux-arm64-v8".repeat(4));
        const b = markerTag("prod", "s".repeat(40), "c".repeat(40), "linux-amd64-v1".repeat(4));
        expect(a.length).toBeLessThanOrEqual(MAX_TAG_LENGTH);
        expect(a).not.toBe(b);
        expect(markerTag("org/Proj/Prod", "svc", "Server")).toBe("deployed-prod-svc-server");
        fc.assert(fc.property(fc.string(), fc.string(), fc.string(), (s, v, c) => /^[a-z0-9._-]{1,128}$/.test(markerTag(s, v, c))));
    });

    it("also mark an index's platform images, not its attestations", () => {
        const parent = { registryId: "123456789012", region: "us-east-1", repository: "ml/log-router", digest: D1, tag: "deployed-dev-svc-log-router" };
        const index = {
            mediaType: "application/vnd.oci.image.index.v1+json",
            manifests: [
                { digest: "sha256:1", platform: { os: "linux", architecture: "amd64" } },
                { digest: "sha256:2", platform: { os: "linux", architecture: "arm64", variant: "v8" } },
                { digest: "sha256:3", platform: { os: "unknown", architecture: "unknown" } },
            ],
        };
        expect(childMarkers(parent, index).map((m) => [m.digest, m.tag])).toEqual([
            ["sha256:1", "deployed-dev-svc-log-router-linux-amd64"],
            ["sha256:2", "deployed-dev-svc-log-router-linux-arm64-v8"],
        ]);
    });

    it("refuse a deployments output that does not list images", () => {
        expect(() => deployedImages(undefined)).toThrow(/is this an environment stack/);
        expect(() => deployedImages({ svc: { ref: "x" } })).toThrow(/deployments\.svc has no images list/);
        expect(() => deployedImages({ svc: { images: [{ container: 1 }] } })).toThrow(/deployments\.svc\.images\[0\] is not \{container, ref\}/);
    });
});
