/**
 * vCPUs, memory and NVIDIA GPUs of the EC2 instance types the serving
 * capacity commonly uses (pure data, from the EC2 instance type pages). Only
 * families listed here are known; anything else is unknown and never guessed
 * (checks that need a size skip a group holding an unknown type).
 *
 * Belongs with ../shared/instance-types.ts (architecture and GPU capability
 * by family) once that table carries sizes too.
 */

export interface InstanceSize {
    readonly vcpus: number;
    /** Nominal memory, MiB (ECS registers a little less: the agent and the OS keep some). */
    readonly memoryMiB: number;
    /** NVIDIA GPUs. */
    readonly gpus: number;
}

const GIB = 1024;

/** vCPUs by size name of the general families (the same in c, m, r and their Graviton / AMD / flex variants). */
const VCPUS: Readonly<Record<string, number>> = {
    large: 2,
    xlarge: 4,
    "2xlarge": 8,
    "4xlarge": 16,
    "8xlarge": 32,
    "12xlarge": 48,
    "16xlarge": 64,
    "24xlarge": 96,
};

/** GiB of memory per vCPU of the general families. */
const GENERAL_FAMILIES: Readonly<Record<string, number>> = {
    ...Object.fromEntries(["c6i", "c6a", "c6g", "c6gn", "c7i", "c7a", "c7g", "c7gn", "c8g"].map((f) => [f, 2])),
    ...Object.fromEntries(["m6i", "m6a", "m6g", "m7i", "m7i-flex", "m7a", "m7g", "m8g"].map((f) => [f, 4])),
    ...Object.fromEntries(["r6i", "r6a", "r6g", "r7i", "r7a", "r7g", "r8g"].map((f) => [f, 8])),
};

/** The NVIDIA GPU families, size by size: [vCPUs, GiB, GPUs]. */
const GPU_TYPES: Readonly<Record<string, readonly [number, number, number]>> = {
    "g4dn.xlarge": [4, 16, 1],
    "g4dn.2xlarge": [8, 32, 1],
    "g4dn.4xlarge": [16, 64, 1],
    "g4dn.8xlarge": [32, 128, 1],
    "g4dn.12xlarge": [48, 192, 4],
    "g4dn.16xlarge": [64, 256, 1],
    "g4dn.metal": [96, 384, 8],
    "g5.xlarge": [4, 16, 1],
    "g5.2xlarge": [8, 32, 1],
    "g5.4xlarge": [16, 64, 1],
    "g5.8xlarge": [32, 128, 1],
    "g5.12xlarge": [48, 192, 4],
    "g5.16xlarge": [64, 256, 1],
    "g5.24xlarge": [96, 384, 4],
    "g5.48xlarge": [192, 768, 8],
    "g6.xlarge": [4, 16, 1],
    "g6.2xlarge": [8, 32, 1],
    "g6.4xlarge": [16, 64, 1],
    "g6.8xlarge": [32, 128, 1],
    "g6.12xlarge": [48, 192, 4],
    "g6.16xlarge": [64, 256, 1],
    "g6.24xlarge": [96, 384, 4],
    "g6.48xlarge": [192, 768, 8],
    "g6e.xlarge": [4, 32, 1],
    "g6e.2xlarge": [8, 64, 1],
    "g6e.4xlarge": [16, 128, 1],
    "g6e.8xlarge": [32, 256, 1],
    "g6e.12xlarge": [48, 384, 2],
    "g6e.16xlarge": [64, 512, 1],
    "g6e.24xlarge": [96, 768, 4],
    "g6e.48xlarge": [192, 1536, 8],
    "p4d.24xlarge": [96, 1152, 8],
    "p5.48xlarge": [192, 2048, 8],
};

/** What an instance type offers a task; undefined when the type is not in the tables above. */
export function instanceSize(type: string): InstanceSize | undefined {
    const gpu = GPU_TYPES[type];
    if (gpu) return { vcpus: gpu[0], memoryMiB: gpu[1] * GIB, gpus: gpu[2] };
    const dot = type.indexOf(".");
    const perVcpu = GENERAL_FAMILIES[type.slice(0, dot)];
    const vcpus = VCPUS[type.slice(dot + 1)];
    if (perVcpu === undefined || vcpus === undefined) return undefined;
    return { vcpus, memoryMiB: vcpus * perVcpu * GIB, gpus: 0 };
}
