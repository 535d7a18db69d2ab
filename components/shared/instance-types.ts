/**
 * What an EC2 instance type name says (pure): CPU architecture (Graviton
 * families carry a "g" after the generation) and, for NVIDIA GPU families,
 * the GPU's compute capability. One table for the runner pools and the
 * serving capacity.
 */

/** NVIDIA GPU instance families: compute capability and CPU architecture. */
export const NVIDIA_GPU_FAMILIES: Readonly<Record<string, { readonly capability: string; readonly architecture: "x86_64" | "arm64" }>> = {
    p3: { capability: "7.0", architecture: "x86_64" },
    p3dn: { capability: "7.0", architecture: "x86_64" },
    g4dn: { capability: "7.5", architecture: "x86_64" },
    g5g: { capability: "7.5", architecture: "arm64" },
    p4d: { capability: "8.0", architecture: "x86_64" },
    p4de: { capability: "8.0", architecture: "x86_64" },
    g5: { capability: "8.6", architecture: "x86_64" },
    g6: { capability: "8.9", architecture: "x86_64" },
    g6e: { capability: "8.9", architecture: "x86_64" },
    gr6: { capability: "8.9", architecture: "x86_64" },
    p5: { capability: "9.0", architecture: "x86_64" },
    p5e: { capability: "9.0", architecture: "x86_64" },
    p5en: { capability: "9.0", architecture: "x86_64" },
    "p6-b200": { capability: "10.0", architecture: "x86_64" },
    g6f: { capability: "8.9", architecture: "x86_64" },
};

export interface InstanceTypeInfo {
    readonly family: string;
    readonly architecture: "x86_64" | "arm64";
    /** Compute capability of its NVIDIA GPU; undefined without one. */
    readonly gpuCapability?: string;
}

/** What an instance type name says about it (Graviton families carry a "g" after the generation). */
export function describeInstanceType(type: string): InstanceTypeInfo {
    const family = type.split(".")[0];
    const gpu = NVIDIA_GPU_FAMILIES[family];
    if (gpu) return { family, architecture: gpu.architecture, gpuCapability: gpu.capability };
    const m = /^([a-z]+)(\d+)([a-z]*)(-.*)?$/.exec(family);
    const graviton = family === "a1" || (m !== null && m[3].includes("g"));
    return { family, architecture: graviton ? "arm64" : "x86_64" };
}

/** NVIDIA GPU families on x86-64 (g4ad is AMD and g5g is Graviton: neither is here). */
export const NVIDIA_X86_FAMILIES: readonly string[] = Object.keys(NVIDIA_GPU_FAMILIES)
    .filter((f) => NVIDIA_GPU_FAMILIES[f].architecture === "x86_64")
    .sort();

/** Is this a Graviton (arm64) instance type? c6g, c7gd, c8g, m7g, r7g, t4g, x2gd, im4gn, a1 ... */
export function isGraviton(type: string): boolean {
    return describeInstanceType(type).architecture === "arm64";
}

/** Is this an x86-64 instance type with an NVIDIA GPU? g4dn, g5, g6, g6e, p5 ... */
export function isNvidiaX86(type: string): boolean {
    const info = describeInstanceType(type);
    return info.architecture === "x86_64" && info.gpuCapability !== undefined;
}
