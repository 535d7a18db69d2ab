/** Small valid configs that tests mutate into bad ones, and digests that look like a build's. */
import { createHash } from "node:crypto";
import * as fs from "node:fs";
import * as path from "node:path";
import { parse as parseYaml } from "yaml";
import { SIDECAR_CATALOGUE, SIDECAR_KINDS } from "../components/serve/sidecars";
import { type PromoteResult, promote } from "../scripts/promote";

export const PROJECT = "ml-infra";
/** The mock runtime's registry (account 123456789012, us-east-1). */
export const REGISTRY = "123456789012.dkr.ecr.us-east-1.amazonaws.com";

/** A sha256 digest as a build would report it: the hash of `seed`. */
export function digestOf(seed: string): string {
    return `sha256:${createHash("sha256").update(seed).digest("hex")}`;
}

/** `<REGISTRY>/ml/<image>@<digest of seed>`. */
export function refOf(image: string, seed: string = image): string {
    return `${REGISTRY}/ml/${image}@${digestOf(seed)}`;
}

export const DIGEST_A = digestOf("a");
export const DIGEST_B = digestOf("b");

export function validBuild(): Record<string, unknown> {
    return {
        images: [
            {
                name: "inference",
                context: "images/inference-server",
                targets: ["cpu-avx2", "arm64-neon"],
            },
        ],
    };
}

/** A pinned-only serve section: its server ref and its model-fetch image (model-sync) pinned. */
export function validServe(): Record<string, unknown> {
    return {
        requirePinned: true,
        clients: { cidrs: ["10.0.0.0/16"] },
        loadBalancer: { protocol: "http" },
        sidecarImages: { "model-sync": refOf("model-sync") },
        services: [
            {
                name: "classifier",
                image: "inference",
                target: "cpu-avx2",
                ref: `${REGISTRY}/ml/inference@${DIGEST_A}`,
                model: { bucket: "ml-models-123456789012", prefix: "classifier/2026-11-01" },
            },
        ],
    };
}

/**
 * What a build stack exports for each sidecar image (`images.<image>`: a
 * multi-arch index of an amd64 and an arm64 target), with digests from
 * `seed`: for environments built from hand-made outputs.
 */
export function sidecarImageOutputs(seed = "sidecars"): Record<string, unknown> {
    const images = [...new Set(SIDECAR_KINDS.map((k) => SIDECAR_CATALOGUE[k].buildImage))];
    return Object.fromEntries(
        images.map((image) => [
            image,
            {
                repository: `${REGISTRY}/ml/${image}`,
                cacheRepository: `${REGISTRY}/ml/cache/${image}`,
                targets: {
                    "cpu-avx2": { ref: refOf(image, `${seed}/${image}/amd64`), digest: digestOf(`${seed}/${image}/amd64`), platform: "linux/amd64", pool: "amd64" },
                    "arm64-neon": { ref: refOf(image, `${seed}/${image}/arm64`), digest: digestOf(`${seed}/${image}/arm64`), platform: "linux/arm64", pool: "arm64" },
                },
                multiArch: { ref: refOf(image, `${seed}/${image}/index`), tag: `${REGISTRY}/ml/${image}:multiarch.0123456789abcdef` },
            },
        ]),
    );
}

/**
 * Build stack outputs with every sidecar image an environment runs: those the
 * outputs have, and made-up ones (sidecarImageOutputs) for those they lack.
 */
export function withSidecarImages(outputs: Record<string, unknown>, seed = "sidecars"): Record<string, unknown> {
    const images = (outputs.images ?? {}) as Record<string, unknown>;
    return { ...outputs, images: { ...sidecarImageOutputs(seed), ...images } };
}

/**
 * A stack file of stacks/ as `npm run promote -- --from-outputs` would leave
 * it after promoting from `outputs` (promote's own engine, in memory): its
 * text, its config and what changed. Tests of staging and prod evaluate these
 * promoted copies: the shipped files pin nothing until a promotion.
 */
export function promotedStack(stack: string, outputs: unknown): { text: string; config: Record<string, unknown>; result: PromoteResult } {
    const file = path.join(__dirname, "..", "stacks", `Pulumi.${stack}.yaml`);
    const result = promote({ kind: "outputs", name: "build outputs", outputs }, fs.readFileSync(file, "utf8"), PROJECT, { destName: stack });
    const parsed = parseYaml(result.text) as { config?: Record<string, unknown> } | null;
    return { text: result.text, config: parsed?.config ?? {}, result };
}
