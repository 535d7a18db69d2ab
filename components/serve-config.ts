/**
 * Serving config (zod) and its cross-field checks (pure).
 *
 * - `serviceShape`: fields of one `serve.services[]` entry besides
 *   name / image / target / ref (spread into the service schema);
 * - `capacitySchema` (`serve.capacity`): Auto Scaling sizing per hardware kind;
 * - `clientsSchema` (`serve.clients`): who may reach the internal load balancers;
 * - `loadBalancerSchema` (`serve.loadBalancer`): listener settings;
 * - `checkService` / `checkServing`: what one field cannot say alone.
 *
 * Every field's default is written next to it.
 */
import { z } from "zod";
import {
    MODEL_FETCH_CPU,
    MODEL_FETCH_MEMORY_MIB,
    RESERVED_CONTAINER_NAMES,
    SERVER_RESERVED_ENVIRONMENT,
    SIDECAR_CATALOGUE,
    SIDECAR_KINDS,
    resolveSidecar,
} from "./container-definitions";
import { parseDigestRef } from "./references";
import { cidr, imageRef, name, strict, stringMap } from "./schema";
import { type InstanceTypeInfo, NVIDIA_GPU_FAMILIES, describeInstanceType } from "./instance-types";

export { type InstanceTypeInfo, NVIDIA_GPU_FAMILIES, describeInstanceType };
import type { HardwareTarget } from "./targets";

// ---------------------------------------------------------------- hardware kinds

/** The capacity a target runs on: one ECS capacity provider (Auto Scaling group) per kind. */
export const HARDWARE_KINDS = ["gpu", "arm64", "cpu"] as const;
export type HardwareKind = (typeof HARDWARE_KINDS)[number];

export function hardwareKindOf(target: HardwareTarget): HardwareKind {
    if (target.runtime.gpu) return "gpu";
    return target.runtime.cpuArchitecture === "ARM64" ? "arm64" : "cpu";
}

/** The kinds a set of targets needs, in HARDWARE_KINDS order, without duplicates. */
export function hardwareKindsOf(targets: Iterable<HardwareTarget>): HardwareKind[] {
    const used = new Set<HardwareKind>();
    for (const t of targets) used.add(hardwareKindOf(t));
    return HARDWARE_KINDS.filter((k) => used.has(k));
}

// ---------------------------------------------------------------- primitives

/** An image reference pinned by digest and nothing else: registry/repository@sha256:<64 hex>. */
const digestImage = imageRef.refine(
    (ref) => parseDigestRef(ref) !== undefined,
    "must be pinned by digest: <registry>/<repository>@sha256:<64 hex digits>, never a tag",
);

const ENV_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;

/** `valueFrom` of an ECS secret: a Secrets Manager secret (optionally :json-key::) or an SSM parameter ARN. */
const secretRef = z
    .string()
    .regex(
        /^arn:aws[a-z-]*:(secretsmanager:[a-z0-9-]+:\d{12}:secret:[A-Za-z0-9/_+=.@-]+(:[A-Za-z0-9_.-]*){0,3}|ssm:[a-z0-9-]+:\d{12}:parameter\/[A-Za-z0-9/_.-]+)$/,
        "must be a Secrets Manager secret ARN (optionally :<json-key>::) or an SSM parameter ARN",
    );

/** A relative S3 key path: segments of safe characters, no leading/trailing "/", no "." or "..", no wildcards. */
const keyPath = (what: string) =>
    z
        .string()
        .regex(/^[A-Za-z0-9!_.'()=-]+(\/[A-Za-z0-9!_.'()=-]+)*$/, `${what} must be an S3 key path without a leading or trailing "/" and without * or ?`)
        .refine((p) => p.split("/").every((s) => s !== "." && s !== ".."), `${what} may not contain "." or ".." segments`);

const absolutePath = z
    .string()
    .regex(/^\/[a-z0-9._-]+(\/[a-z0-9._-]+)*$/, 'must be an absolute directory path such as "/models"')
    .refine((p) => !["/bin", "/dev", "/etc", "/lib", "/proc", "/sys", "/usr", "/var", "/tmp"].some((d) => p === d || p.startsWith(`${d}/`)), "must not be a system directory");

/** CloudWatch Logs retention values. */
export const LOG_RETENTION_DAYS = [1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653] as const;

// ---------------------------------------------------------------- service fields

/** One sidecar of a service (see SIDECAR_CATALOGUE for what each kind runs). */
export const sidecarSchema = strict({
    /** Which catalogue sidecar. Required. */
    kind: z.enum(SIDECAR_KINDS),
    /** Container name. Default: the kind. */
    name: name("sidecar name").optional(),
    /** Image, pinned by digest. Default: the catalogue's image. */
    image: digestImage.optional(),
    /** Port it binds on 127.0.0.1 (never exposed). Default: the catalogue's (metrics-exporter 13133, tensorboard 6006, minio 9000 + console 9001); model-sync and log-router take none. */
    port: z.number().int().min(1024).max(65534).optional(),
    /** CPU units. Default: the catalogue's (128 or 256). */
    cpu: z.number().int().min(0).max(4096).optional(),
    /** Hard memory limit, MiB. Default: the catalogue's (256 to 1024). */
    memory: z.number().int().min(32).max(65536).optional(),
    /** Extra environment. Default {}. */
    environment: stringMap.default({}),
    /** Environment variables injected from Secrets Manager / SSM: NAME -> ARN. Default {}. */
    secrets: z.record(z.string().regex(ENV_NAME, "names are letters, digits and _"), secretRef).default({}),
});
export type SidecarConfig = z.infer<typeof sidecarSchema>;

/** Where the model comes from: it is copied from S3 into a task volume before the server starts. */
export const modelSchema = strict({
    /** S3 bucket. Required. */
    bucket: z.string().regex(/^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/, "must be an S3 bucket name"),
    /** Key prefix holding the model, without leading or trailing "/", e.g. "classifier/2026-11-01". Required. The task role can read this prefix only. */
    prefix: keyPath("model prefix"),
    /** File (relative to the prefix) the server loads; sets MODEL_PATH. Default: unset (the server gets MODEL_DIR only). */
    file: keyPath("model file").optional(),
    /** Directory the model is mounted at (read-only for the server). Default "/models". */
    path: absolutePath.default("/models"),
    /** KMS key the objects are encrypted with (SSE-KMS); the task role may decrypt through S3 only. Default: unset (SSE-S3). */
    kmsKeyArn: z.string().regex(/^arn:aws[a-z-]*:kms:[a-z0-9-]+:\d{12}:key\/[A-Za-z0-9-]+$/, "must be a KMS key ARN").optional(),
    /** Image of the model-fetch init container, pinned by digest. Default: the catalogue's AWS CLI image. */
    syncImage: digestImage.optional(),
});

/** Fields of `serve.services[]` besides name / image / target / ref. */
export const serviceShape = {
    /** Tasks to run. Default 1 (0 parks the service). */
    replicas: z.number().int().min(0).max(100).default(1),
    /** Port the server listens on (the only port the load balancer reaches). Default 8080. */
    port: z.number().int().min(1).max(65535).default(8080),
    /** Health check path, for the container and the load balancer. Default "/healthz". */
    healthPath: z.string().regex(/^\/[A-Za-z0-9._~!$&'()*+,;=:@%/-]*$/, 'must be a URL path starting with "/"').default("/healthz"),
    /** Container health check command in ECS form (["CMD", ...] or ["CMD-SHELL", "..."]). Default: a python3 probe of 127.0.0.1:<port><healthPath>. */
    healthCheckCommand: z
        .array(z.string().min(1))
        .min(2)
        .refine((c) => c[0] === "CMD" || c[0] === "CMD-SHELL", 'must start with "CMD" or "CMD-SHELL"')
        .optional(),
    /** Seconds the container health check forgives after the server starts (model loading; ECS allows at most 300). Default 300. */
    healthStartPeriodSeconds: z.number().int().min(0).max(300).default(300),
    /** Seconds the service ignores load-balancer health checks after a task starts (model download and load). Default 900. */
    healthGracePeriodSeconds: z.number().int().min(0).max(7200).default(900),
    /** Path of the server's Prometheus metrics on its port (scraped by the metrics-exporter sidecar). Default "/metrics". */
    metricsPath: z.string().regex(/^\/[A-Za-z0-9._~/-]*$/, 'must be a URL path starting with "/"').default("/metrics"),
    /** Server environment (PORT, MODEL_DIR and MODEL_PATH are set from other fields). Default {}. */
    environment: stringMap.default({}),
    /** Sidecars from the catalogue. Default []. */
    sidecars: z.array(sidecarSchema).max(8).default([]),
    /** Model source. Required: models are never baked into images. */
    model: modelSchema,
    /** Task CPU units (1024 = 1 vCPU). Default 1024. */
    cpu: z.number().int().min(256).max(196608).default(1024),
    /** Task memory, MiB. Default 4096. */
    memory: z.number().int().min(512).max(1_048_576).default(4096),
    /** GPUs for the server. Default: 1 on a GPU target, 0 otherwise. */
    gpus: z.number().int().min(0).max(16).optional(),
    /** /dev/shm size, MiB (PyTorch DataLoader workers, NCCL). Default 1024. */
    sharedMemoryMiB: z.number().int().min(64).max(524_288).default(1024),
    /** Days CloudWatch keeps the service's logs. Default 30. */
    logRetentionDays: z.literal(LOG_RETENTION_DAYS).default(30),
    /** ECS Exec (shell and port forwarding to 127.0.0.1 sidecars through SSM). Default false. */
    execCommand: z.boolean().default(false),
} satisfies z.ZodRawShape;

/** The fields above as one object (what InferenceService reads). */
export const serviceFieldsSchema = strict(serviceShape);
export type ServiceFields = z.infer<typeof serviceFieldsSchema>;

/** GPUs the server gets: `gpus`, or 1 on a GPU target and 0 otherwise. */
export function gpusFor(service: Pick<ServiceFields, "gpus">, target: HardwareTarget): number {
    return service.gpus ?? (target.runtime.gpu ? 1 : 0);
}

// ---------------------------------------------------------------- capacity

export const SPOT_ALLOCATION_STRATEGIES = [
    "price-capacity-optimized",
    "capacity-optimized",
    "capacity-optimized-prioritized",
    "lowest-price",
] as const;

const instanceType = z.string().regex(/^[a-z][a-z0-9-]*\.[a-z0-9-]+$/, "must be an EC2 instance type such as g5.xlarge");

interface CapacityDefaults {
    readonly instanceTypes: readonly string[];
    readonly maxSize: number;
    readonly rootVolumeGiB: number;
}

/** Defaults per kind (instance types, max size, root volume). */
export const CAPACITY_DEFAULTS: Readonly<Record<HardwareKind, CapacityDefaults>> = {
    gpu: { instanceTypes: ["g5.xlarge", "g6.xlarge", "g4dn.xlarge"], maxSize: 2, rootVolumeGiB: 200 },
    arm64: { instanceTypes: ["c7g.xlarge", "m7g.xlarge", "c6g.xlarge"], maxSize: 4, rootVolumeGiB: 60 },
    cpu: { instanceTypes: ["c7i.xlarge", "m7i.xlarge", "c6i.xlarge"], maxSize: 4, rootVolumeGiB: 60 },
};

function capacityGroupSchema(defaults: CapacityDefaults) {
    return strict({
        /** Instance types the group may launch (the first is preferred with capacity-optimized-prioritized). Default: per kind, see CAPACITY_DEFAULTS. */
        instanceTypes: z.array(instanceType).min(1).max(20).default([...defaults.instanceTypes]),
        /** Fewest instances. Default 0 (ECS managed scaling adds what tasks need). */
        minSize: z.number().int().min(0).max(1000).default(0),
        /** Most instances. Default: gpu 2, arm64 4, cpu 4. */
        maxSize: z.number().int().min(0).max(1000).default(defaults.maxSize),
        /** Instances that are always on-demand. Default 0. */
        onDemandBaseCapacity: z.number().int().min(0).max(1000).default(0),
        /** Percent on-demand above the base (0 = all spot, 100 = no spot). Default 100. */
        onDemandPercentageAboveBaseCapacity: z.number().int().min(0).max(100).default(100),
        /** How spot capacity is chosen. Default "price-capacity-optimized". */
        spotAllocationStrategy: z.enum(SPOT_ALLOCATION_STRATEGIES).default("price-capacity-optimized"),
        /** ECS managed scaling target utilisation, percent (100 = no spare instance). Default 100. */
        targetCapacityPercent: z.number().int().min(1).max(100).default(100),
        /** Root EBS volume (images, model volumes), GiB, gp3, encrypted. Default: gpu 200, arm64 60, cpu 60. */
        rootVolumeGiB: z.number().int().min(30).max(16384).default(defaults.rootVolumeGiB),
    }).prefault({});
}

/** `serve.capacity`: one Auto Scaling group per hardware kind the services use. */
export const capacitySchema = strict({
    gpu: capacityGroupSchema(CAPACITY_DEFAULTS.gpu),
    arm64: capacityGroupSchema(CAPACITY_DEFAULTS.arm64),
    cpu: capacityGroupSchema(CAPACITY_DEFAULTS.cpu),
}).prefault({});
export type CapacityConfig = z.infer<typeof capacitySchema>;
export type CapacityGroupConfig = CapacityConfig[HardwareKind];

/** `serve.clients`: who may reach the internal load balancers (on the listener port only). At least one entry is required. */
export const clientsSchema = strict({
    /** Client security groups. Default []. */
    securityGroupIds: z.array(z.string().regex(/^sg-[0-9a-f]{8,17}$/, "must be a security group id (sg-...)")).default([]),
    /** Client IPv4 CIDRs (0.0.0.0/0 is refused: the load balancers are internal). Default []. */
    cidrs: z.array(cidr).default([]),
}).prefault({});
export type ClientsConfig = z.infer<typeof clientsSchema>;

/** `serve.loadBalancer`: listener of every service's internal ALB. */
export const loadBalancerSchema = strict({
    /** ACM certificate: listen HTTPS on 443 with it. Default: unset (HTTP on 80). */
    certificateArn: z.string().regex(/^arn:aws[a-z-]*:acm:[a-z0-9-]+:\d{12}:certificate\/[0-9a-f-]{36}$/, "must be an ACM certificate ARN").optional(),
    /** TLS policy of the HTTPS listener. Default "ELBSecurityPolicy-TLS13-1-2-2021-06". */
    sslPolicy: z.string().regex(/^ELBSecurityPolicy-[A-Za-z0-9-]+$/, "must be an ELB security policy name").default("ELBSecurityPolicy-TLS13-1-2-2021-06"),
    /** Idle timeout, seconds (long generations need more). Default 60. */
    idleTimeoutSeconds: z.number().int().min(1).max(4000).default(60),
}).prefault({});
export type LoadBalancerConfig = z.infer<typeof loadBalancerSchema>;

// ---------------------------------------------------------------- instance types

const capabilityParts = (c: string): [number, number] => {
    const [major, minor] = c.split(".").map(Number);
    return [major, minor ?? 0];
};

/**
 * Can code built for `archList` run on a GPU of `capability`? Binary code for
 * X.Y runs on X.Z with Z >= Y; PTX ("+PTX") for X.Y is JIT-compiled for any
 * newer capability.
 */
export function cudaRunsOn(archList: readonly string[], capability: string): boolean {
    const [cMajor, cMinor] = capabilityParts(capability);
    return archList.some((entry) => {
        const ptx = entry.endsWith("+PTX");
        const [major, minor] = capabilityParts(entry.replace(/\+PTX$/, ""));
        if (major === cMajor && minor <= cMinor) return true;
        return ptx && (major < cMajor || (major === cMajor && minor <= cMinor));
    });
}

// ---------------------------------------------------------------- checks

/** Reports one problem at a key path (relative to what is being checked). */
export type Report = (keys: ReadonlyArray<string | number>, message: string) => void;

/**
 * Cross-field checks of one service on its target. Keys are relative to the
 * service (e.g. ["sidecars", 1, "port"]).
 */
export function checkService(service: ServiceFields, target: HardwareTarget, report: Report): void {
    const gpus = gpusFor(service, target);
    if (target.runtime.gpu && gpus < 1) {
        report(["gpus"], `target "${target.name}" needs a GPU: set gpus to 1 or more (or leave it unset)`);
    }
    if (!target.runtime.gpu && gpus > 0) {
        report(["gpus"], `target "${target.name}" is not a GPU target; remove gpus or pick a CUDA target`);
    }
    if (target.runtime.gpu && target.runtime.cpuArchitecture !== "X86_64") {
        report([], `target "${target.name}" is a GPU target on ${target.platform}; GPU capacity runs the x86_64 ECS GPU AMI, so GPU targets must be linux/amd64`);
    }

    const reservedEnv = SERVER_RESERVED_ENVIRONMENT.filter((n) => n !== "MODEL_PATH" || service.model.file !== undefined);
    for (const key of Object.keys(service.environment)) {
        if (reservedEnv.includes(key)) {
            report(["environment", key], `is set from the service's fields (PORT from port, MODEL_DIR from model.path, MODEL_PATH from model.file); set those instead`);
        }
    }
    if (service.sharedMemoryMiB >= service.memory) {
        report(["sharedMemoryMiB"], `must be less than the task's memory (${service.memory} MiB)`);
    }
    if (service.healthGracePeriodSeconds < service.healthStartPeriodSeconds) {
        report(["healthGracePeriodSeconds"], `must be at least healthStartPeriodSeconds (${service.healthStartPeriodSeconds}): the load balancer would kill tasks the container check still forgives`);
    }

    const names = new Map<string, number>();
    const portOwners = new Map<number, string>([[service.port, "the server's port"]]);
    let logRouters = 0;
    let memory = MODEL_FETCH_MEMORY_MIB;
    let cpu = MODEL_FETCH_CPU;
    service.sidecars.forEach((config, i) => {
        const sidecar = resolveSidecar(config);
        const entry = SIDECAR_CATALOGUE[sidecar.kind];
        const at = ["sidecars", i];
        memory += sidecar.memory;
        cpu += sidecar.cpu;

        const first = names.get(sidecar.name);
        if (first !== undefined) report([...at, "name"], `duplicate sidecar name "${sidecar.name}" (also sidecars[${first}]); give one a name`);
        else names.set(sidecar.name, i);
        if (RESERVED_CONTAINER_NAMES.includes(sidecar.name)) {
            report([...at, "name"], `"${sidecar.name}" is reserved; reserved: ${RESERVED_CONTAINER_NAMES.join(", ")}`);
        }

        if (config.port !== undefined && !entry.portConfigurable) {
            report([...at, "port"], entry.defaultPort === undefined ? `${sidecar.kind} binds no port; remove port` : `${sidecar.kind} always binds ${entry.defaultPort}; remove port`);
        }
        for (const port of sidecar.ports) {
            const owner = portOwners.get(port);
            if (owner !== undefined) {
                report([...at, "port"], `${sidecar.kind} "${sidecar.name}" binds ${port}, which is ${owner}; sidecar ports must differ from the server's port and from each other`);
            } else {
                portOwners.set(port, `bound by sidecar "${sidecar.name}"`);
            }
        }
        for (const key of Object.keys(config.environment)) {
            if (entry.reservedEnvironment.includes(key)) report([...at, "environment", key], `is set by the ${sidecar.kind} sidecar itself`);
        }
        for (const secret of entry.requiredSecrets) {
            if (!(secret in config.secrets)) report([...at, "secrets", secret], `${sidecar.kind} needs this secret (a Secrets Manager or SSM parameter ARN)`);
        }
        if (sidecar.kind === "log-router" && ++logRouters > 1) report(at, "a task has at most one log-router (FireLens)");
    });

    if (memory >= service.memory) {
        report(["memory"], `the model fetcher and sidecars take ${memory} MiB; the task's memory (${service.memory} MiB) must leave room for the server`);
    }
    if (cpu > service.cpu) {
        report(["cpu"], `the model fetcher and sidecars take ${cpu} CPU units; the task has ${service.cpu}`);
    }
}

/** A service as `checkServing` sees it. */
export interface ServingNeed {
    readonly name: string;
    readonly target: HardwareTarget;
}

/**
 * Checks of the serve-level sizing and access against the services. Keys are
 * relative to the `serve` section (e.g. ["capacity", "gpu", "instanceTypes", 0]).
 */
export function checkServing(
    serve: { readonly capacity: CapacityConfig; readonly clients: ClientsConfig },
    services: readonly ServingNeed[],
    report: Report,
): void {
    const { capacity, clients } = serve;
    const used = new Set(services.map((s) => hardwareKindOf(s.target)));

    for (const kind of HARDWARE_KINDS) {
        const at = ["capacity", kind];
        checkCapacityGroup(kind, capacity[kind], (keys, message) => report([...at, ...keys], message));
        if (used.has(kind) && capacity[kind].maxSize < 1) {
            const names = services.filter((s) => hardwareKindOf(s.target) === kind).map((s) => s.name);
            report([...at, "maxSize"], `services ${names.join(", ")} run on ${kind} capacity; maxSize must be at least 1`);
        }
    }

    // Every GPU instance type the group may launch must run every GPU service's code.
    for (const service of services) {
        const cuda = service.target.cuda;
        if (hardwareKindOf(service.target) !== "gpu" || !cuda) continue;
        capacity.gpu.instanceTypes.forEach((type, i) => {
            const capability = describeInstanceType(type).gpuCapability;
            if (capability !== undefined && !cudaRunsOn(cuda.archList, capability)) {
                report(
                    ["capacity", "gpu", "instanceTypes", i],
                    `${type} has compute capability ${capability}, which target "${service.target.name}" of service ${service.name} is not built for (${cuda.archList.join(", ")})`,
                );
            }
        });
    }

    if (services.length > 0) checkClients(clients, (keys, message) => report(["clients", ...keys], message));
}

/** Checks one Auto Scaling group's sizing and instance types. Keys are relative to the group. */
export function checkCapacityGroup(kind: HardwareKind, group: CapacityGroupConfig, report: Report): void {
    if (group.minSize > group.maxSize) report(["minSize"], `must not exceed maxSize (${group.maxSize})`);
    if (group.onDemandBaseCapacity > group.maxSize) report(["onDemandBaseCapacity"], `must not exceed maxSize (${group.maxSize})`);
    const seen = new Set<string>();
    group.instanceTypes.forEach((type, i) => {
        if (seen.has(type)) report(["instanceTypes", i], "listed twice");
        seen.add(type);
        const problem = instanceTypeProblem(kind, type);
        if (problem) report(["instanceTypes", i], problem);
    });
}

/** Checks who may reach the load balancers. Keys are relative to `serve.clients`. */
export function checkClients(clients: ClientsConfig, report: Report): void {
    if (clients.securityGroupIds.length === 0 && clients.cidrs.length === 0) {
        report([], "no one could reach the services: list client security groups (securityGroupIds) or CIDRs (cidrs)");
    }
    clients.cidrs.forEach((block, i) => {
        if (block.endsWith("/0")) report(["cidrs", i], "the load balancers are internal and admit named clients only; list the client networks instead of /0");
    });
    const sgs = new Set<string>();
    clients.securityGroupIds.forEach((id, i) => {
        if (sgs.has(id)) report(["securityGroupIds", i], "listed twice");
        sgs.add(id);
    });
    const blocks = new Set<string>();
    clients.cidrs.forEach((block, i) => {
        if (blocks.has(block)) report(["cidrs", i], "listed twice");
        blocks.add(block);
    });
}

/** Why an instance type does not belong to a kind's group; undefined when it does. */
export function instanceTypeProblem(kind: HardwareKind, type: string): string | undefined {
    const info = describeInstanceType(type);
    const known = Object.keys(NVIDIA_GPU_FAMILIES).filter((f) => NVIDIA_GPU_FAMILIES[f].architecture === "x86_64").join(", ");
    switch (kind) {
        case "gpu":
            if (info.gpuCapability === undefined) return `${type} has no NVIDIA GPU; known x86_64 GPU families: ${known}`;
            if (info.architecture !== "x86_64") return `${type} is Graviton; the GPU group runs the x86_64 ECS GPU AMI (known families: ${known})`;
            return undefined;
        case "arm64":
            if (info.gpuCapability !== undefined) return `${type} has a GPU; GPU services run on capacity.gpu`;
            if (info.architecture !== "arm64") return `${type} is not Graviton (arm64); use a family with a "g" after the generation, e.g. c7g, m7g, c8g`;
            return undefined;
        case "cpu":
            if (info.gpuCapability !== undefined) return `${type} has a GPU; GPU services run on capacity.gpu`;
            if (info.architecture !== "x86_64") return `${type} is Graviton (arm64); arm64 services run on capacity.arm64`;
            return undefined;
    }
}
