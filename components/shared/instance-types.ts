/**
 * What an EC2 instance type name says (pure): CPU architecture (Graviton
 * families carry a "g" after the generation) and, for NVIDIA GPU families,
 * the GPU's compute capability. One table for the runner pools and the
 * serving capacity.
 */
import { InstanceType as AwsInstanceType } from "@pulumi/aws/types/enums/ec2";
import { editDistance } from "./problems";

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

// ------------------------------------------------------ which types exist

/**
 * Every instance type the AWS provider this program creates launch templates
 * with knows (`aws.ec2.InstanceType` of @pulumi/aws, a plain constant table),
 * as family -> sizes. A type newer than the provider is refused until the
 * provider is upgraded.
 */
const SIZES_BY_FAMILY: ReadonlyMap<string, readonly string[]> = (() => {
    const byFamily = new Map<string, string[]>();
    for (const type of Object.values(AwsInstanceType)) {
        const dot = type.indexOf(".");
        const family = type.slice(0, dot);
        const sizes = byFamily.get(family) ?? [];
        sizes.push(type.slice(dot + 1));
        byFamily.set(family, sizes);
    }
    for (const sizes of byFamily.values()) sizes.sort(bySize);
    return byFamily;
})();

/** nano < micro < small < medium < large < xlarge < 2xlarge < ... < metal. */
function sizeRank(size: string): number {
    const named = ["nano", "micro", "small", "medium", "large", "xlarge"].indexOf(size);
    if (named >= 0) return named;
    const n = /^(\d+)xlarge$/.exec(size);
    if (n) return 5 + Number(n[1]);
    const metal = /^metal(?:-(\d+)xl)?$/.exec(size);
    return 1000 + Number(metal?.[1] ?? 0);
}

function bySize(a: string, b: string): number {
    return sizeRank(a) - sizeRank(b) || a.localeCompare(b);
}

/** The sizes of an instance family, smallest first (undefined: not a family the provider knows). */
export function instanceFamilySizes(family: string): readonly string[] | undefined {
    return SIZES_BY_FAMILY.get(family);
}

/**
 * Why `type` is not an EC2 instance type (undefined: it is one): an unknown
 * family (with the nearest known ones), or a size its family does not have
 * (with the sizes it has), e.g. `c7i.huge` or `c7i.nano`. Pure; for the
 * runner pools and the serving capacity alike.
 */
export function instanceTypeProblem(type: string): string | undefined {
    const dot = type.indexOf(".");
    if (dot <= 0) return "is not an EC2 instance type (<family>.<size>, e.g. c7i.4xlarge)";
    const family = type.slice(0, dot);
    const size = type.slice(dot + 1);
    const sizes = SIZES_BY_FAMILY.get(family);
    if (!sizes) {
        const near = [...SIZES_BY_FAMILY.keys()].filter((f) => editDistance(f, family) <= 1).sort();
        return `unknown instance family "${family}"${near.length ? `; did you mean ${near.join(" or ")}?` : ""} (families of the EC2 instance types the AWS provider knows)`;
    }
    if (!sizes.includes(size)) return `${family} has no size "${size}"; allowed: ${sizes.map((s) => `${family}.${s}`).join(", ")}`;
    return undefined;
}

// ------------------------------------------------------ CPU features

/** x86-64-v3 (Haswell, Zen 1 and later): every current EC2 x86 family. */
const X86_V3 = ["sse", "sse2", "ssse3", "sse4_1", "sse4_2", "popcnt", "avx", "avx2", "fma", "f16c", "bmi1", "bmi2", "movbe", "abm"];
/** x86-64-v4: AVX-512 foundation, byte/word, vector length, conflict, doubleword/quadword. */
const X86_V4 = [...X86_V3, "avx512f", "avx512bw", "avx512vl", "avx512cd", "avx512dq"];
/** Graviton1 (Cortex-A72). */
const GRAVITON1 = ["fp", "asimd", "aes", "pmull", "sha1", "sha2", "crc32", "cpuid"];
/** Graviton2 (Neoverse N1): dot product, half precision, atomics. */
const GRAVITON2 = [...GRAVITON1, "atomics", "fphp", "asimdhp", "asimdrdm", "lrcpc", "dcpop", "asimddp", "ssbs"];
/** Graviton3 (Neoverse V1): SVE, bf16, int8 matrix multiply. */
const GRAVITON3 = [...GRAVITON2, "sve", "bf16", "i8mm", "svebf16", "svei8mm", "sha3", "sha512", "asimdfhm", "jscvt", "fcma", "ilrcpc", "flagm", "dcpodp", "paca", "pacg", "rng"];
/** Graviton4 (Neoverse V2): SVE2. */
const GRAVITON4 = [...GRAVITON3, "sve2", "svebitperm", "sveaes", "svepmull", "svesha3", "bti", "flagm2", "frint"];

/** Every flag the table below knows; it says nothing about any other. */
const KNOWN_CPU_FEATURES: ReadonlySet<string> = new Set([...X86_V4, ...GRAVITON4]);

/**
 * The CPU features this table knows per family. Only the features listed
 * for a family's generation are answered; a family outside the table is
 * unknown (answered with undefined). AMD families before Zen 4 (c5a, m5a,
 * r5a, t3a, c6a, m6a, r6a and the g4ad/g5/g6 GPU hosts) and Broadwell p3 lack
 * AVX-512; Zen 4 and later (c7a, m7a, r7a, p5) and every Intel family from
 * Skylake-SP on have it.
 */
const FAMILY_CPU: Readonly<Record<string, readonly string[]>> = {
    ...Object.fromEntries(["c5a", "c5ad", "m5a", "m5ad", "r5a", "r5ad", "t3a", "c6a", "m6a", "r6a", "hpc6a", "g4ad", "g5", "g6", "g6e", "g6f", "gr6", "p3", "c4", "m4", "r4"].map((f) => [f, X86_V3])),
    ...Object.fromEntries(
        [
            "c5", "c5d", "c5n", "m5", "m5d", "m5dn", "m5n", "m5zn", "r5", "r5b", "r5d", "r5dn", "r5n", "z1d", "t3", "p3dn", "g4dn", "p4d", "p4de",
            "c6i", "c6id", "c6in", "m6i", "m6id", "m6idn", "m6in", "r6i", "r6id", "r6idn", "r6in", "i4i", "x2idn", "x2iedn",
            "c7i", "c7i-flex", "m7i", "m7i-flex", "r7i", "r7iz", "c7a", "m7a", "r7a", "hpc7a", "p5", "p5e", "p5en", "p6-b200",
            "c8i", "m8i", "r8i", "c8a", "m8a", "r8a",
        ].map((f) => [f, X86_V4]),
    ),
    a1: GRAVITON1,
    ...Object.fromEntries(["c6g", "c6gd", "c6gn", "m6g", "m6gd", "r6g", "r6gd", "t4g", "x2gd", "im4gn", "is4gen", "g5g"].map((f) => [f, GRAVITON2])),
    ...Object.fromEntries(["c7g", "c7gd", "c7gn", "m7g", "m7gd", "r7g", "r7gd", "hpc7g"].map((f) => [f, GRAVITON3])),
    ...Object.fromEntries(["c8g", "c8gd", "m8g", "m8gd", "r8g", "r8gd", "x8g", "i8g"].map((f) => [f, GRAVITON4])),
};

/**
 * Of the CPU features `required` (flags as in /proc/cpuinfo, a target's
 * `cpuFeatures`), those this instance type is known to lack; [] when it has
 * them all, undefined when its family is not in the table (then nothing is
 * known). For the serving capacity: a service of target cpu-avx512 on c6a or
 * m5a dies with an illegal instruction.
 */
export function missingCpuFeatures(type: string, required: readonly string[]): string[] | undefined {
    const has = FAMILY_CPU[type.split(".")[0]];
    if (!has) return undefined;
    // A flag the table does not know (avx10_1) is not judged.
    return required.filter((f) => KNOWN_CPU_FEATURES.has(f) && !has.includes(f));
}

/** Does this instance type have every CPU feature in `required`? undefined when its family is not in the table. */
export function hasCpuFeatures(type: string, required: readonly string[]): boolean | undefined {
    const missing = missingCpuFeatures(type, required);
    return missing === undefined ? undefined : missing.length === 0;
}
