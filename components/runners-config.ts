/**
 * Config sections for the build runners (zod schemas + inferred types) and
 * their cross-field checks (pure):
 *
 * - `network` (top level): the VPC that runners (and, later, services) live
 *   in: either created here (`mode: create`) or named (`mode: existing`);
 * - `build.runners`: one BuildKit runner pool per pool kind (`amd64`,
 *   `arm64`, `gpu`), who may reach them, and how they scale to zero.
 *
 * Every field says its default. Schemas are built from ./schema primitives so
 * errors read like the rest of the stack config.
 */
import { z } from "zod";
import { cidr, imageRef, strict } from "./schema";
import { NVIDIA_X86_FAMILIES, isGraviton, isNvidiaX86 } from "./instance-types";
import { POOLS, type HardwareTarget, type Pool } from "./targets";

// ------------------------------------------------------------------ network

/** Interface endpoints runners and tasks need with no public IP. */
export const INTERFACE_ENDPOINTS = ["ec2messages", "ecr.api", "ecr.dkr", "ecs", "ecs-agent", "ecs-telemetry", "logs", "ssm", "ssmmessages", "sts"] as const;
/** Created when a stack names none: what runners need with no public IP (serving stacks add the ecs ones). */
export const DEFAULT_INTERFACE_ENDPOINTS: readonly InterfaceEndpoint[] = ["ec2messages", "ecr.api", "ecr.dkr", "logs", "ssm", "ssmmessages", "sts"];
export type InterfaceEndpoint = (typeof INTERFACE_ENDPOINTS)[number];

/** NAT layout: none (endpoints only), one shared NAT gateway, or one per availability zone. */
export const NAT_MODES = ["none", "single", "perAz"] as const;
export type NatMode = (typeof NAT_MODES)[number];

const azName = z.string().regex(/^[a-z]{2}(-[a-z]+)+-\d[a-z]$/, "must be an availability zone name such as us-east-1a");
const vpcId = z.string().regex(/^vpc-[0-9a-f]{8,17}$/, "must be a VPC id such as vpc-0123456789abcdef0");
const subnetId = z.string().regex(/^subnet-[0-9a-f]{8,17}$/, "must be a subnet id such as subnet-0123456789abcdef0");
const securityGroupId = z.string().regex(/^sg-[0-9a-f]{8,17}$/, "must be a security group id such as sg-0123456789abcdef0");

const networkCreateSchema = strict({
    /** `create` (default when `mode` is omitted): this stack creates the VPC. */
    mode: z.literal("create"),
    /** VPC address range. Default `10.40.0.0/16`. */
    cidr: cidr.default("10.40.0.0/16"),
    /** Availability zones to spread subnets over, at least two (named here so no lookup is needed). No default. */
    availabilityZones: z.array(azName).min(2, "needs at least two availability zones"),
    /**
     * Bits added to the VPC prefix for each subnet: a /16 with 4 gives /20 subnets.
     * Private subnets take the lower half of the slots, public ones the upper half,
     * so turning public subnets on later never moves a private subnet. Default 4.
     */
    subnetBits: z.number().int().min(1).max(8).default(4),
    /** Create public subnets (for an internet-facing load balancer) even without NAT. Default false. */
    publicSubnets: z.boolean().default(false),
    /**
     * NAT gateways for outbound internet from private subnets (build steps that
     * download packages need it): `none`, `single` (cheapest) or `perAz` (zone
     * failure tolerant). Any value other than `none` creates public subnets. Default `none`.
     */
    natGateways: z.enum(NAT_MODES).default("none"),
    /** Interface endpoints to create (private DNS on). Default: all of ecr.api, ecr.dkr, logs, ssm, ssmmessages, ec2messages, sts. */
    interfaceEndpoints: z.array(z.enum(INTERFACE_ENDPOINTS)).default([...DEFAULT_INTERFACE_ENDPOINTS]),
    /** S3 gateway endpoint on the private route tables (ECR layers live in S3; it is free). Default true. */
    s3GatewayEndpoint: z.boolean().default(true),
});

const networkExistingSchema = strict({
    /** `existing`: use a VPC made elsewhere; nothing is created but the optional endpoint security group. */
    mode: z.literal("existing"),
    /** The VPC. No default. */
    vpcId,
    /** Private subnets (at least two, in different zones) for runners and services. No default. */
    privateSubnetIds: z.array(subnetId).min(2, "needs at least two private subnets in different availability zones"),
    /** Public subnets, if the VPC has any a stack may use. Default []. */
    publicSubnetIds: z.array(subnetId).default([]),
    /** Create a security group for VPC endpoints admitting 443 from `vpcCidr` only. Default: not created. */
    endpointSecurityGroup: strict({
        /** The VPC's address range. No default. */
        vpcCidr: cidr,
    }).optional(),
});

/** `network` section. `mode` may be omitted and then means `create`. */
export const networkSchema = z.preprocess(
    (raw) => (raw !== null && typeof raw === "object" && !Array.isArray(raw) && !("mode" in raw) ? { ...raw, mode: "create" } : raw),
    z.discriminatedUnion("mode", [networkCreateSchema, networkExistingSchema]),
);

export type NetworkConfig = z.infer<typeof networkSchema>;
export type CreateNetworkConfig = Extract<NetworkConfig, { mode: "create" }>;
export type ExistingNetworkConfig = Extract<NetworkConfig, { mode: "existing" }>;

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

/** Log retention values CloudWatch Logs accepts. */
export const LOG_RETENTION_DAYS = [1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653] as const;

const instanceType = z.string().regex(/^[a-z][a-z0-9-]*\.[a-z0-9-]+$/, "must be an EC2 instance type such as c7g.4xlarge");

/** Five-field cron (minute hour day-of-month month day-of-week), as Auto Scaling scheduled actions take. */
const cron = z
    .string()
    .regex(/^\S+\s+\S+\s+\S+\s+\S+\s+\S+$/, "must be a five-field cron expression such as \"0 20 * * MON-FRI\"");

function poolSchema(kind: Pool) {
    return strict({
        /** Instance types the group may launch (mixed instances). Default per kind: see DEFAULT_INSTANCE_TYPES. */
        instanceTypes: z.array(instanceType).min(1, "needs at least one instance type").default([...DEFAULT_INSTANCE_TYPES[kind]]),
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

/** `build.runners` section. */
export const runnersSchema = strict({
    /** TCP port buildkitd listens on (mutual TLS), also the load balancer's port. Default 1234. */
    port: z.number().int().min(1024).max(65535).default(1234),
    /** Who may reach the pools' endpoints: CI security groups and/or CIDRs. At least one is required; no default. */
    ciSources: strict({
        /** Security groups of the CI runners (same VPC or a peered one). Default []. */
        securityGroupIds: z.array(securityGroupId).default([]),
        /** Address ranges of the CI runners. Default []. */
        cidrs: z.array(cidr).default([]),
    }),
    /**
     * Image the buildkitd binaries are taken from, pulled through the ECR
     * pull-through cache (its registry's rule must be enabled). Default `docker.io/moby/buildkit:v0.23.2`.
     */
    buildkitImage: imageRef.default("docker.io/moby/buildkit:v0.23.2"),
    /** Validity of the server and client certificates; `pulumi up` renews them in the last 30 days. Default 365. */
    certificateValidityDays: z.number().int().min(31).max(3650).default(365),
    /** Retention of the pools' log groups, in days (a CloudWatch Logs value). Default 30. */
    logRetentionDays: z
        .number()
        .int()
        .refine((d) => (LOG_RETENTION_DAYS as readonly number[]).includes(d), `must be one of ${LOG_RETENTION_DAYS.join(", ")}`)
        .default(30),
    /** Scale every pool to zero at these times (e.g. the end of the working day), even mid-build. Default: no schedule. */
    scaleToZeroSchedule: strict({
        /** IANA time zone of the recurrences. Default `UTC`. */
        timeZone: z.string().min(1).default("UTC"),
        /** Cron recurrences, e.g. ["0 20 * * MON-FRI"]. No default. */
        recurrences: z.array(cron).min(1, "needs at least one recurrence"),
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

// ------------------------------------------------------------ instance types

export { NVIDIA_X86_FAMILIES, isGraviton, isNvidiaX86 };

// ------------------------------------------------------------------- checks

export type ReportFn = (keys: (string | number)[], message: string) => void;

function validTimeZone(zone: string): boolean {
    try {
        new Intl.DateTimeFormat("en-US", { timeZone: zone });
        return true;
    } catch {
        return false;
    }
}

/**
 * Cross-field checks of `build.runners` against the targets the stack's
 * images build. Reports each problem with its key path relative to the section.
 */
export function checkRunners(runners: RunnersConfig, targets: readonly HardwareTarget[], report: ReportFn): void {
    const { ciSources } = runners;
    if (ciSources.securityGroupIds.length === 0 && ciSources.cidrs.length === 0) {
        report(["ciSources"], "name at least one CI security group or CIDR: nothing else may reach the runners");
    }
    ciSources.cidrs.forEach((c, i) => {
        if (c.endsWith("/0")) report(["ciSources", "cidrs", i], "must name the CI runners' addresses, not the whole internet");
    });
    if (runners.scaleToZeroSchedule && !validTimeZone(runners.scaleToZeroSchedule.timeZone)) {
        report(["scaleToZeroSchedule", "timeZone"], "must be an IANA time zone such as Europe/Berlin or UTC");
    }

    for (const kind of POOLS) {
        const pool = runners.pools[kind];
        if (!pool) continue;
        const at = ["pools", kind];
        const seen = new Set<string>();
        pool.instanceTypes.forEach((type, i) => {
            if (seen.has(type)) report([...at, "instanceTypes", i], "instance type listed twice");
            seen.add(type);
            if (kind === "arm64" && !isGraviton(type)) {
                report([...at, "instanceTypes", i], "the arm64 pool takes Graviton types only (c7g, c8g, m7g, r7g ...: a `g` after the generation digit)");
            } else if (kind === "gpu" && !isNvidiaX86(type)) {
                report([...at, "instanceTypes", i], `the gpu pool takes NVIDIA x86-64 types only; allowed families: ${NVIDIA_X86_FAMILIES.join(", ")}`);
            } else if (kind === "amd64" && isGraviton(type)) {
                report([...at, "instanceTypes", i], "the amd64 pool takes x86-64 types only; Graviton types belong to the arm64 pool");
            }
        });
        if (pool.onDemandBaseCapacity > pool.maxSize) {
            report([...at, "onDemandBaseCapacity"], `exceeds maxSize (${pool.maxSize})`);
        }
        if (pool.volumeGiB < MIN_VOLUME_GIB[kind]) {
            report([...at, "volumeGiB"], `the ${kind} pool needs at least ${MIN_VOLUME_GIB[kind]} GiB (the AMI plus room for BuildKit)`);
        }
        const param = pool.amiParameter;
        if (kind === "arm64" && !param.includes("arm64")) {
            report([...at, "amiParameter"], "the arm64 pool needs an arm64 AMI parameter");
        } else if (kind !== "arm64" && !param.includes("x86_64")) {
            report([...at, "amiParameter"], `the ${kind} pool needs an x86_64 AMI parameter`);
        }
        if (kind === "gpu" && !/nvidia|gpu/.test(param)) {
            report([...at, "amiParameter"], "the gpu pool needs a GPU AMI (NVIDIA driver), e.g. the Deep Learning Base OSS NVIDIA driver AMI");
        }
    }

    const sourceBuilds = new Map<Pool, string[]>();
    const users = new Map<Pool, string[]>();
    for (const target of [...targets].sort((a, b) => a.name.localeCompare(b.name))) {
        users.set(target.pool, [...(users.get(target.pool) ?? []), target.name]);
        if (target.buildArgs.BUILD_FROM_SOURCE === "true") {
            sourceBuilds.set(target.pool, [...(sourceBuilds.get(target.pool) ?? []), target.name]);
        }
    }
    for (const [kind, names] of users) {
        if (!runners.pools[kind]) {
            report(["pools", kind], `is not configured, but target ${names.join(", ")} builds on it`);
        }
    }
    for (const [kind, names] of sourceBuilds) {
        const pool = runners.pools[kind];
        if (pool && pool.volumeGiB < SOURCE_BUILD_MIN_VOLUME_GIB) {
            report(
                ["pools", kind, "volumeGiB"],
                `target ${names.join(", ")} builds from source (BUILD_FROM_SOURCE=true) on this pool and needs at least ${SOURCE_BUILD_MIN_VOLUME_GIB} GiB`,
            );
        }
    }
}

/** Cross-field checks of the `network` section; key paths are relative to the section. */
export function checkNetwork(network: NetworkConfig, report: ReportFn): void {
    if (network.mode === "existing") {
        const dupes = (ids: readonly string[], key: string) => {
            const seen = new Set<string>();
            ids.forEach((id, i) => {
                if (seen.has(id)) report([key, i], "subnet listed twice");
                seen.add(id);
            });
        };
        dupes(network.privateSubnetIds, "privateSubnetIds");
        dupes(network.publicSubnetIds, "publicSubnetIds");
        network.publicSubnetIds.forEach((id, i) => {
            if (network.privateSubnetIds.includes(id)) report(["publicSubnetIds", i], "is also listed as a private subnet");
        });
        return;
    }
    const seen = new Set<string>();
    network.availabilityZones.forEach((az, i) => {
        if (seen.has(az)) report(["availabilityZones", i], "availability zone listed twice");
        seen.add(az);
    });
    const region = network.availabilityZones[0].slice(0, -1);
    network.availabilityZones.forEach((az, i) => {
        if (az.slice(0, -1) !== region) report(["availabilityZones", i], `all zones must be in one region (${region})`);
    });
    const [address, prefixText] = network.cidr.split("/");
    const prefix = Number(prefixText);
    const octets = address.split(".").map(Number);
    if (octets.some((o) => o > 255)) {
        report(["cidr"], "octets must be 0 to 255");
        return;
    }
    const base = ipToNumber(address);
    if (base % 2 ** (32 - prefix) !== 0) report(["cidr"], `is not a network address; did you mean ${numberToIp(base - (base % 2 ** (32 - prefix)))}/${prefix}?`);
    if (prefix < 16 || prefix > 24) report(["cidr"], "a VPC's prefix must be /16 to /24");
    if (prefix + network.subnetBits > 28) report(["subnetBits"], `/${prefix} plus ${network.subnetBits} bits gives subnets smaller than /28`);
    const slots = 2 ** network.subnetBits / 2;
    if (network.availabilityZones.length > slots) {
        report(["availabilityZones"], `${network.availabilityZones.length} zones need ${network.availabilityZones.length * 2} subnets; subnetBits ${network.subnetBits} gives ${slots * 2}`);
    }
}

export function ipToNumber(ip: string): number {
    return ip.split(".").reduce((acc, o) => acc * 256 + Number(o), 0);
}

export function numberToIp(n: number): string {
    return [24, 16, 8, 0].map((shift) => Math.floor(n / 2 ** shift) % 256).join(".");
}
