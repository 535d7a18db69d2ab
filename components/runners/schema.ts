/**
 * The `runners` section (zod schema and inferred types), the runners stack's:
 * one BuildKit runner pool per pool kind (`amd64`, `arm64`, `gpu`), who may
 * reach them in the VPC, and how they scale to zero. Every field says its default.
 */
import { z } from "zod";
import type { Pool } from "../shared/hardware";
import { cronProblem } from "../shared/schedule";
import { LOG_RETENTION_DAYS, cidr, imageRef, instanceType, logRetentionDays, securityGroupId, strict } from "../shared/schema";

/**
 * BuildKit v0.23.2 (what the runners, the local runner and the tools run),
 * pinned to the multi-arch index digest several public projects pin it to.
 * Check it before changing it:
 *   docker buildx imagetools inspect docker.io/moby/buildkit:v0.23.2
 * (the "Digest:" line of the index).
 */
export const DEFAULT_BUILDKIT_IMAGE = "docker.io/moby/buildkit:v0.23.2@sha256:ddd1ca44b21eda906e81ab14a3d467fa6c39cd73b9a39df1196210edcb8db59e";

// ------------------------------------------------------------------ runners

/** The AMI of each pool kind, as an SSM public parameter (resolved at launch: AMI updates need no template change). */
export const DEFAULT_AMI_PARAMETERS: Readonly<Record<Pool, string>> = {
    amd64: "/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-x86_64",
    arm64: "/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-arm64",
    // Deep Learning Base AMI: NVIDIA driver, docker and nvidia-container-toolkit (nvidia-ctk for CDI).
    gpu: "/aws/service/deeplearning/ami/x86_64/base-oss-nvidia-driver-gpu-amazon-linux-2023/latest/ami-id",
};

/** Several current families per kind, so spot has capacity pools to choose from. */
export const DEFAULT_INSTANCE_TYPES: Readonly<Record<Pool, readonly string[]>> = {
    amd64: ["c6i.4xlarge", "c7a.4xlarge", "c7i.4xlarge", "m7i.4xlarge"],
    arm64: ["c7g.4xlarge", "c8g.4xlarge", "m7g.4xlarge", "m8g.4xlarge"],
    gpu: ["g5.2xlarge", "g5.4xlarge", "g6.2xlarge", "g6.4xlarge"],
};

/** Root volume default per kind: amd64 also compiles CUDA from source (≥ 200 GB). */
export const DEFAULT_VOLUME_GIB: Readonly<Record<Pool, number>> = { amd64: 200, arm64: 100, gpu: 200 };

/** Smallest root volume per kind (the AMI snapshot plus room for BuildKit). */
export const MIN_VOLUME_GIB: Readonly<Record<Pool, number>> = { amd64: 40, arm64: 40, gpu: 120 };

/** Builds that compile big projects from source (BUILD_FROM_SOURCE=true) need at least this much disk. */
export const SOURCE_BUILD_MIN_VOLUME_GIB = 200;

/** Default concurrent build steps per node. */
export const DEFAULT_MAX_PARALLELISM: Readonly<Record<Pool, number>> = { amd64: 8, arm64: 8, gpu: 4 };

export { LOG_RETENTION_DAYS };

/** Five-field cron (minute hour day-of-month month day-of-week), as Auto Scaling scheduled actions take. */
const cron = z
    .string()
    .max(200)
    .superRefine((text, ctx) => {
        const problem = cronProblem(text);
        if (problem) ctx.addIssue({ code: "custom", message: `${problem}; e.g. "0 20 * * MON-FRI"` });
    });

function poolSchema(kind: Pool) {
    return strict({
        /** Instance types the group may launch (mixed instances). Default per kind: see DEFAULT_INSTANCE_TYPES. */
        instanceTypes: z.array(instanceType("c7g.4xlarge")).min(1, "needs at least one instance type").default([...DEFAULT_INSTANCE_TYPES[kind]]),
        /** Most instances the pool scales up to. Default 2. (The minimum is always 0.) */
        maxSize: z.number().int().min(1).max(100).default(2),
        /**
         * Instances that are always on-demand, counted from the first one: the
         * fallback when spot is scarce and the safe home of multi-hour builds. Default 1.
         */
        onDemandBaseCapacity: z.number().int().min(0).max(100).default(1),
        /** Percentage of instances above the base that are on-demand; the rest are spot. Default 0 (all spot). */
        onDemandPercentageAboveBaseCapacity: z.number().int().min(0).max(100).default(0),
        /** Root volume (gp3, encrypted) in GiB; BuildKit's GC budget is derived from it. Default amd64 200, arm64 100, gpu 200. */
        volumeGiB: z.number().int().min(8).max(16384).default(DEFAULT_VOLUME_GIB[kind]),
        /** gp3 IOPS. Default 3000 (the free baseline). */
        volumeIops: z.number().int().min(3000).max(16000).default(3000),
        /** gp3 throughput in MiB/s. Default 250. */
        volumeThroughputMiBps: z.number().int().min(125).max(1000).default(250),
        /** BuildKit `max-parallelism`: concurrent build steps per node. Default amd64 8, arm64 8, gpu 4. */
        maxParallelism: z.number().int().min(1).max(256).default(DEFAULT_MAX_PARALLELISM[kind]),
        /** Minutes without a connection to the pool's endpoint before it scales back to zero. Default 30. */
        idleMinutes: z.number().int().min(5).max(720).default(30),
        /** SSM public parameter naming the AMI. Default per kind: see DEFAULT_AMI_PARAMETERS. */
        amiParameter: z
            .string()
            .regex(/^\/aws\/service\/[A-Za-z0-9_.\/-]+$/, "must be an SSM public parameter under /aws/service/")
            .default(DEFAULT_AMI_PARAMETERS[kind]),
    });
}

/** `runners` section. */
export const runnersSchema = strict({
    /** TCP port buildkitd listens on (mutual TLS), also the load balancer's port. Default 1234. */
    port: z.number().int().min(1024).max(65535).default(1234),
    /**
     * In-VPC callers of the pools' endpoints (an internal load balancer per
     * pool). CI outside the VPC needs none of this: it reaches the pools
     * through an SSM port-forwarding tunnel (README, Build runners). Default: none.
     */
    ciSources: strict({
        /**
         * Security groups of callers in the same VPC. Only with `network.mode: existing`
         * (a VPC this stack creates has no other groups in it). Default [].
         */
        securityGroupIds: z.array(securityGroupId).max(50, "at most 50 (a security group holds 60 rules)").default([]),
        /** Address ranges of callers in the VPC or a peered network (private ranges). Default []. */
        cidrs: z.array(cidr).max(50, "at most 50 (a security group holds 60 rules)").default([]),
    }).prefault({}),
    /**
     * Image the buildkitd binaries are taken from, pinned by digest as
     * `repo:tag@sha256:<64 hex>` (a mutable tag is refused), pulled through
     * the ECR pull-through cache (its registry's rule must be enabled) or from
     * the ECR registry itself. At boot a runner pulls the tag through the
     * cache first, then runs exactly the digest (./boot). Default
     * DEFAULT_BUILDKIT_IMAGE.
     */
    buildkitImage: imageRef.default(DEFAULT_BUILDKIT_IMAGE),
    /** Validity of the server and client certificates; `pulumi up` renews them in the last 30 days. Default 365. */
    certificateValidityDays: z.number().int().min(31).max(3650).default(365),
    /** Retention of the pools' log groups, in days (a CloudWatch Logs value). Default 30. */
    logRetentionDays: logRetentionDays.default(30),
    /** Scale every pool to zero at these times (e.g. the end of the working day), even mid-build. Default: no schedule. */
    scaleToZeroSchedule: strict({
        /** IANA time zone of the recurrences. Default `UTC`. */
        timeZone: z.string().min(1).default("UTC"),
        /** Cron recurrences, e.g. ["0 20 * * MON-FRI"]. No default. */
        recurrences: z.array(cron).min(1, "needs at least one recurrence").max(20),
    }).optional(),
    /** One pool per kind that targets build on (HardwareTarget.pool). Default: no pools. */
    pools: strict({
        /** x86-64 pool (current Intel/AMD families). */
        amd64: poolSchema("amd64").optional(),
        /** Arm64 pool, Graviton only: arm64 images build natively, never emulated. */
        arm64: poolSchema("arm64").optional(),
        /** NVIDIA GPU pool (x86-64) for builds that run GPU code. */
        gpu: poolSchema("gpu").optional(),
    }).prefault({}),
});

export type RunnersConfig = z.infer<typeof runnersSchema>;
export type PoolConfig = NonNullable<RunnersConfig["pools"][Pool]>;

