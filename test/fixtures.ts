/** Small valid configs that tests mutate into bad ones. */
export const PROJECT = "ml-infra";
export const DIGEST_A = `sha256:${"a".repeat(64)}`;
export const DIGEST_B = `sha256:${"b".repeat(64)}`;

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

export function validServe(): Record<string, unknown> {
    return {
        requirePinned: true,
        clients: { cidrs: ["10.0.0.0/16"] },
        services: [
            {
                name: "classifier",
                image: "inference",
                target: "cpu-avx2",
                ref: `123456789012.dkr.ecr.us-east-1.amazonaws.com/ml/inference@${DIGEST_A}`,
                model: { bucket: "ml-models-123456789012", prefix: "classifier/2026-11-01" },
            },
        ],
    };
}
