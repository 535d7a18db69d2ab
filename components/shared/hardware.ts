/**
 * Hardware target catalog: pure, typed data plus the pure functions that
 * merge a stack's own targets onto it. No Pulumi resources live here.
 *
 * A target says everything a build and a deployment need to know about one
 * kind of hardware: the platform to build for, the base image, the build
 * args (compiler flags, torch variant, CUDA arch list), the Dockerfile stage,
 * the runner pool that builds it and what it needs at run time.
 */

/** Platforms a target may build for (one per target). */
export const PLATFORMS = ["linux/amd64", "linux/arm64"] as const;
export type Platform = (typeof PLATFORMS)[number];

/** Runner pools (see the build-runners component). */
export const POOLS = ["amd64", "arm64", "gpu"] as const;
export type Pool = (typeof POOLS)[number];

/** The ECS / EC2 name of a CPU architecture. */
export type CpuArchitecture = "X86_64" | "ARM64";

/** CUDA toolkit of a GPU target. */
export interface CudaSpec {
    /** Toolkit version of the base image, e.g. "12.8.1". */
    readonly version: string;
    /** Compute capabilities to compile for, e.g. ["5.2"] or ["8.0", "9.0+PTX"]. */
    readonly archList: readonly string[];
}

/** One hardware target as declared (catalog entry or stack file). */
export interface TargetSpec {
    /** One line for humans. */
    readonly description: string;
    /** The single platform this target builds for. */
    readonly platform: Platform;
    /** Upstream base image of the build stages (resolved through the ECR pull-through cache when enabled). */
    readonly baseImage: string;
    /** Upstream base image of the runtime stage; defaults to `baseImage`. */
    readonly runtimeBaseImage?: string;
    /** Stage of the Dockerfile that produces this target's image. */
    readonly stage: string;
    /** Runner pool that builds it. */
    readonly pool: Pool;
    /** Build args owned by the target (compiler flags, TORCH_VARIANT, BUILD_FROM_SOURCE ...). */
    readonly buildArgs: Readonly<Record<string, string>>;
    /** CPU instruction sets the image needs on the host (the server checks them at start). */
    readonly cpuFeatures: readonly string[];
    /** Present for CUDA targets: the image needs a GPU at run time. */
    readonly cuda?: CudaSpec;
    /** How long one build of this target may take before Pulumi gives up. */
    readonly buildTimeoutMinutes: number;
}

/** A resolved target: the spec plus its name and what follows from it. */
export interface HardwareTarget extends TargetSpec {
    readonly name: string;
    /** What the image needs at run time. */
    readonly runtime: {
        readonly gpu: boolean;
        readonly cpuArchitecture: CpuArchitecture;
    };
}

const DEBIAN = "public.ecr.aws/docker/library/debian:bookworm-slim";

/**
 * The built-in catalog. A stack may override any field of an entry or add
 * new entries (`build.targets` / `serve.targets`) without a code change.
 */
export const CATALOG: Readonly<Record<string, TargetSpec>> = {
    "cpu-avx2": {
        description: "x86-64 CPUs with AVX2 and FMA (Haswell and later, all current EC2 x86 families)",
        platform: "linux/amd64",
        baseImage: DEBIAN,
        stage: "runtime-cpu",
        pool: "amd64",
        buildArgs: {
            KERNEL_CFLAGS: "-O3 -march=x86-64-v3 -mavx2 -mfma",
            TORCH_VARIANT: "cpu",
        },
        cpuFeatures: ["avx2", "fma"],
        buildTimeoutMinutes: 60,
    },
    "cpu-avx512": {
        description: "x86-64 CPUs with AVX-512 (Skylake-SP and later: c6i, c7i, m7i)",
        platform: "linux/amd64",
        baseImage: DEBIAN,
        stage: "runtime-cpu",
        pool: "amd64",
        buildArgs: {
            KERNEL_CFLAGS: "-O3 -march=x86-64-v4 -mavx512f -mavx512bw -mavx512vl",
            TORCH_VARIANT: "cpu",
        },
        cpuFeatures: ["avx512f", "avx512bw", "avx512vl"],
        buildTimeoutMinutes: 60,
    },
    "arm64-neon": {
        description: "Arm64 with NEON and dot product (Graviton2 and later), built natively on Graviton",
        platform: "linux/arm64",
        baseImage: DEBIAN,
        stage: "runtime-cpu",
        pool: "arm64",
        buildArgs: {
            KERNEL_CFLAGS: "-O3 -march=armv8.2-a+dotprod",
            TORCH_VARIANT: "cpu",
        },
        cpuFeatures: ["asimd", "asimddp"],
        buildTimeoutMinutes: 60,
    },
    cuda12: {
        description: "NVIDIA GPUs of compute capability 6.0 to 12.0 (Pascal to Blackwell), binary wheels",
        platform: "linux/amd64",
        baseImage: "docker.io/nvidia/cuda:12.8.1-devel-ubuntu22.04",
        runtimeBaseImage: "docker.io/nvidia/cuda:12.8.1-runtime-ubuntu22.04",
        stage: "runtime-cuda",
        pool: "gpu",
        buildArgs: {
            KERNEL_CFLAGS: "-O3 -march=x86-64-v3",
            TORCH_VARIANT: "cu128",
            BUILD_FROM_SOURCE: "false",
        },
        cpuFeatures: ["avx2"],
        cuda: {
            version: "12.8.1",
            archList: ["6.0", "6.1", "7.0", "7.5", "8.0", "8.6", "8.9", "9.0", "10.0", "12.0"],
        },
        buildTimeoutMinutes: 120,
    },
    "cuda11-source": {
        description: "Legacy Maxwell GPUs (sm_52: GTX 970/980), PyTorch built from source on CUDA 11.8",
        platform: "linux/amd64",
        baseImage: "docker.io/nvidia/cuda:11.8.0-cudnn8-devel-ubuntu22.04",
        runtimeBaseImage: "docker.io/nvidia/cuda:11.8.0-cudnn8-runtime-ubuntu22.04",
        stage: "runtime-cuda-source",
        // Compile-only: nvcc needs no GPU once the arch list is explicit, so this
        // multi-hour build runs on the (large-disk) amd64 pool, not on a GPU.
        pool: "amd64",
        buildArgs: {
            KERNEL_CFLAGS: "-O3 -march=x86-64-v2",
            TORCH_VARIANT: "source",
            BUILD_FROM_SOURCE: "true",
        },
        cpuFeatures: [],
        cuda: { version: "11.8.0", archList: ["5.2"] },
        // A GitHub-hosted job runs at most 360 minutes: the build plus CI's own steps (scripts/ci/build-limits.ts) must fit.
        buildTimeoutMinutes: 300,
    },
};

/** Build-arg names the catalog derives from structured fields; a stack may not set them directly. */
export const DERIVED_BUILD_ARGS = [
    "BASE_IMAGE",
    "RUNTIME_BASE_IMAGE",
    "BUILD_BASE_IMAGE",
    "CUDA_ARCH_LIST",
    "TORCH_CUDA_ARCH_LIST",
    "CUDA_VERSION",
    "REQUIRED_CPU_FEATURES",
    "TARGET_NAME",
] as const;

/** Which architectures a toolkit can compile for (inclusive, as numbers). */
const CUDA_ARCH_RANGES: ReadonlyArray<{ toolkit: string; min: number; max: number }> = [
    { toolkit: "11.8", min: 3.5, max: 9.0 },
    { toolkit: "12.0", min: 5.0, max: 9.0 },
    { toolkit: "12.1", min: 5.0, max: 9.0 },
    { toolkit: "12.2", min: 5.0, max: 9.0 },
    { toolkit: "12.3", min: 5.0, max: 9.0 },
    { toolkit: "12.4", min: 5.0, max: 9.0 },
    { toolkit: "12.5", min: 5.0, max: 9.0 },
    { toolkit: "12.6", min: 5.0, max: 9.0 },
    { toolkit: "12.8", min: 5.0, max: 12.0 },
    { toolkit: "12.9", min: 5.0, max: 12.1 },
    { toolkit: "13.0", min: 7.5, max: 12.1 },
];

/** Real compute capabilities (so "6.3" or "9.9" is refused even inside a range). */
export const KNOWN_CUDA_ARCHS: readonly string[] = [
    "3.5", "3.7", "5.0", "5.2", "5.3", "6.0", "6.1", "6.2", "7.0", "7.2", "7.5",
    "8.0", "8.6", "8.7", "8.9", "9.0", "10.0", "10.1", "10.3", "12.0", "12.1",
];

/** Supported CUDA toolkit versions (major.minor). */
export const CUDA_TOOLKITS: readonly string[] = CUDA_ARCH_RANGES.map((r) => r.toolkit);

/**
 * Checks a CUDA arch list against the toolkit. Returns one message per bad
 * entry (empty when all is well).
 */
export function cudaArchProblems(cuda: CudaSpec): string[] {
    const toolkit = cuda.version.split(".").slice(0, 2).join(".");
    const range = CUDA_ARCH_RANGES.find((r) => r.toolkit === toolkit);
    if (!range) {
        return [`CUDA version "${cuda.version}" is not supported; allowed: ${CUDA_TOOLKITS.join(", ")} (any patch)`];
    }
    const problems: string[] = [];
    if (cuda.archList.length === 0) problems.push("CUDA arch list is empty");
    for (const entry of cuda.archList) {
        const arch = entry.replace(/\+PTX$/, "");
        if (!KNOWN_CUDA_ARCHS.includes(arch)) {
            problems.push(`"${entry}" is not a CUDA compute capability; allowed: ${KNOWN_CUDA_ARCHS.join(", ")} (optionally with +PTX)`);
        } else if (Number(arch) < range.min || Number(arch) > range.max) {
            problems.push(`"${entry}" is outside what CUDA ${toolkit} can compile for (${range.min.toFixed(1)} to ${range.max.toFixed(1)})`);
        }
    }
    return problems;
}

/** x86-64 CPU feature flags as /proc/cpuinfo names them (by prefix: avx512f, avx512_vnni, avx10_1, sse4_2, amx_tile ...). */
const X86_FEATURE = /^(avx|sse|ssse|amx|fma|f16c|bmi|movbe|abm|lzcnt|popcnt|sha_ni|vaes|vpclmulqdq|pclmulqdq|gfni|adx|rdrand|rdseed|xsave|cx8|cx16|mmx|erms|fsrm|clflushopt|clwb|x86)/;
/** Arm64 CPU feature flags as /proc/cpuinfo names them (asimd, asimddp, sve, sve2, bf16, i8mm, atomics ...). */
const ARM64_FEATURE = /^(asimd|sve|sme|neon|fphp|atomics|pmull|sha1|sha2|sha3|sha512|sm3|sm4|crc32|lrcpc|ilrcpc|dcpop|dcpodp|jscvt|fcma|flagm|paca|pacg|bf16|ebf16|i8mm|dotprod|evtstrm|uscat|ssbs|dit|bti|mte|frint|dgh|ecv|afp|rpres|wfxt|mops|hbc)|^(fp|sb|rng|cpuid)$/;

/** Which CPU architecture a feature flag belongs to (undefined: a flag this table does not know; `aes` is on both). */
export function cpuFeatureArchitecture(feature: string): CpuArchitecture | undefined {
    if (X86_FEATURE.test(feature)) return "X86_64";
    if (ARM64_FEATURE.test(feature)) return "ARM64";
    return undefined;
}

/** Why a target of `platform` cannot require `feature` (undefined: it can): a flag of the other architecture. */
export function cpuFeatureProblem(feature: string, platform: Platform): string | undefined {
    const arch = cpuFeatureArchitecture(feature);
    if (arch === undefined || arch === cpuArchitectureOf(platform)) return undefined;
    return platform === "linux/arm64"
        ? `"${feature}" is an x86-64 CPU feature; this target builds linux/arm64, whose features are Arm ones as in /proc/cpuinfo (e.g. asimd, asimddp, sve, sve2, bf16, i8mm)`
        : `"${feature}" is an Arm64 CPU feature; this target builds linux/amd64, whose features are x86-64 ones as in /proc/cpuinfo (e.g. avx2, fma, avx512f, avx512bw, avx512vl)`;
}

/** The pool a platform must be built on: arm64 only natively on Graviton, never emulated. */
export function poolMatchesPlatform(pool: Pool, platform: Platform): boolean {
    return platform === "linux/arm64" ? pool === "arm64" : pool !== "arm64";
}

/** The one platform a pool builds natively (no emulation anywhere). */
export function poolPlatform(pool: Pool): Platform {
    return pool === "arm64" ? "linux/arm64" : "linux/amd64";
}

export function cpuArchitectureOf(platform: Platform): CpuArchitecture {
    return platform === "linux/arm64" ? "ARM64" : "X86_64";
}

/** Adds the name and the derived runtime needs to a validated spec. */
export function resolveTarget(name: string, spec: TargetSpec): HardwareTarget {
    return {
        ...spec,
        name,
        runtime: { gpu: spec.cuda !== undefined, cpuArchitecture: cpuArchitectureOf(spec.platform) },
    };
}

/**
 * The build args a target hands the Dockerfile: its own plus those derived from
 * its structured fields. `baseImage` / `runtimeBaseImage` are the resolved
 * references (through the pull-through cache when enabled; in an image chain
 * both are the base image's digest); `buildBaseImage` is always the target's
 * build base (compilers, nvcc), chain or not.
 */
export function targetBuildArgs(
    target: HardwareTarget,
    baseImage: string,
    runtimeBaseImage: string,
    buildBaseImage: string = baseImage,
): Record<string, string> {
    const args: Record<string, string> = {
        ...target.buildArgs,
        BASE_IMAGE: baseImage,
        RUNTIME_BASE_IMAGE: runtimeBaseImage,
        BUILD_BASE_IMAGE: buildBaseImage,
        REQUIRED_CPU_FEATURES: target.cpuFeatures.join(" "),
        TARGET_NAME: target.name,
    };
    if (target.cuda) {
        args.CUDA_VERSION = target.cuda.version;
        args.CUDA_ARCH_LIST = target.cuda.archList.join(";");
        args.TORCH_CUDA_ARCH_LIST = target.cuda.archList.join(";");
    }
    return args;
}
