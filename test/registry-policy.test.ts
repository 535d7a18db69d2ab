import { describe, expect, it } from "vitest";
import { cacheLifecyclePolicy, releaseLifecyclePolicy } from "../components/build/lifecycle";
import { pullThroughLifecyclePolicy } from "../components/registry/pullthrough";
import { parseImage, resolveThroughCache, UPSTREAMS } from "../components/registry/pullthrough";
import { builtRef, digestRef, isDigestRef, parseDigestRef } from "../components/shared/image-refs";
import { DIGEST_A } from "./fixtures";

const HOST = "123456789012.dkr.ecr.us-east-1.amazonaws.com";

describe("lifecycle policies", () => {
    it("keeps deployed images first, then the last N releases per target and of multi-arch indexes, and has no untagged rule on release repositories", () => {
        const policy = releaseLifecyclePolicy(["cuda12", "cpu-avx2"], 30);
        expect(policy.rules.map((r) => r.selection.tagPatternList)).toEqual([["deployed-*"], ["cpu-avx2.*"], ["cuda12.*"], ["multiarch.*"]]);
        expect(policy.rules.map((r) => r.rulePriority)).toEqual([1, 2, 3, 4]);
        for (const rule of policy.rules.slice(1)) {
            expect(rule.selection).toMatchObject({ tagStatus: "tagged", countType: "imageCountMoreThan", countNumber: 30 });
        }
        expect(policy.rules.some((r) => r.selection.tagStatus !== "tagged")).toBe(false);
    });

    it("expires only untagged cache manifests, so the current cache tag survives", () => {
        const policy = cacheLifecyclePolicy(14);
        expect(policy.rules).toHaveLength(1);
        expect(policy.rules[0].selection).toEqual({ tagStatus: "untagged", countType: "sinceImagePushed", countUnit: "days", countNumber: 14 });
    });

    it("expires pulled-through upstream images after the configured days", () => {
        expect(pullThroughLifecyclePolicy(90).rules[0].selection.countNumber).toBe(90);
    });
});

describe("pull-through cache", () => {
    it.each([
        ["debian:bookworm-slim", { host: "docker.io", path: "library/debian", suffix: ":bookworm-slim" }],
        ["docker.io/nvidia/cuda:12.8.1-devel-ubuntu22.04", { host: "docker.io", path: "nvidia/cuda", suffix: ":12.8.1-devel-ubuntu22.04" }],
        ["public.ecr.aws/docker/library/debian:bookworm-slim", { host: "public.ecr.aws", path: "docker/library/debian", suffix: ":bookworm-slim" }],
        ["localhost:5000/base@" + DIGEST_A, { host: "localhost:5000", path: "base", suffix: "@" + DIGEST_A }],
        ["ghcr.io/org/img", { host: "ghcr.io", path: "org/img", suffix: "" }],
    ])("parses %s", (ref, parsed) => {
        expect(parseImage(ref)).toEqual(parsed);
    });

    it("rewrites base images of enabled upstreams to the pull-through prefix", () => {
        const all = new Set(UPSTREAMS.map((u) => u.key));
        expect(resolveThroughCache("public.ecr.aws/docker/library/debian:bookworm-slim", HOST, all)).toBe(
            `${HOST}/ecr-public/docker/library/debian:bookworm-slim`,
        );
        expect(resolveThroughCache("docker.io/nvidia/cuda:11.8.0-cudnn8-devel-ubuntu22.04", HOST, all)).toBe(
            `${HOST}/docker-hub/nvidia/cuda:11.8.0-cudnn8-devel-ubuntu22.04`,
        );
        expect(resolveThroughCache("ubuntu:22.04", HOST, all)).toBe(`${HOST}/docker-hub/library/ubuntu:22.04`);
        expect(resolveThroughCache("quay.io/org/x:1", HOST, all)).toBe(`${HOST}/quay/org/x:1`);
    });

    it("leaves images of disabled or unknown upstreams alone", () => {
        expect(resolveThroughCache("docker.io/nvidia/cuda:12", HOST, new Set(["ecrPublic"]))).toBe("docker.io/nvidia/cuda:12");
        expect(resolveThroughCache("127.0.0.1:5000/base:1", HOST, new Set(["ecrPublic", "dockerHub"]))).toBe("127.0.0.1:5000/base:1");
    });
});

describe("digest references", () => {
    it("accepts only repo@sha256 references", () => {
        expect(parseDigestRef(`${HOST}/ml/inference@${DIGEST_A}`)).toEqual({ registry: HOST, repository: "ml/inference", digest: DIGEST_A });
        expect(isDigestRef(`${HOST}/ml/inference:latest`)).toBe(false);
        expect(isDigestRef(`${HOST}/ml/inference:1.0@${DIGEST_A}`)).toBe(false);
        expect(isDigestRef(`${HOST}/ml/inference@sha256:abc`)).toBe(false);
        expect(() => digestRef(`${HOST}/ml/inference`, "latest")).toThrow(/not a digest reference/);
    });

    it("reads a digest out of the build stack's outputs, or says what is missing", () => {
        const images = { inference: { targets: { "cpu-avx2": { ref: `${HOST}/ml/inference@${DIGEST_A}` } } } };
        expect(builtRef(images, "inference", "cpu-avx2", "build")).toBe(`${HOST}/ml/inference@${DIGEST_A}`);
        expect(() => builtRef(images, "inference", "cuda12", "build")).toThrow(/exports no image "inference" for target "cuda12"/);
        const tagged = { inference: { targets: { "cpu-avx2": { ref: `${HOST}/ml/inference:latest` } } } };
        expect(() => builtRef(tagged, "inference", "cpu-avx2", "build")).toThrow(/not pinned by digest/);
    });
});
