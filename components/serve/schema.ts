/**
 * The `serve` section (zod schemas and inferred types):
 *
 * - `serviceShape`: fields of one `serve.services[]` entry besides
 *   name / image / target / ref (spread into the service schema);
 * - `capacitySchema` (`serve.capacity`): Auto Scaling sizing per hardware kind;
 * - `clientsSchema` (`serve.clients`): who may reach the internal load balancers;
 * - `loadBalancerSchema` (`serve.loadBalancer`): listener settings.
 *
 * Every field's default is written next to it. Cross-field checks are in ./checks.
 */
import { z } from "zod";
import type { HardwareTarget } from "../shared/hardware";
import { tlsPolicyProblem } from "./listener";
import { cidr, instanceType, logRetentionDays, name, securityGroupId, strict, stringMap } from "../shared/schema";
import { stackName } from "../shared/stack-names";
import { targetsSchema } from "../shared/target-config";
import { type HardwareKind } from "./hardware-kinds";
import { SIDECAR_KINDS } from "./sidecars";

// ---------------------------------------------------------------- primitives

/**
 * An image reference. Its form (`<registry>/<repository>@sha256:<64 hex>`),
 * its digest, its registry and its repository are checked in ./images (via
 * ./checks), which say exactly what is wrong with it.
 */
const digestImage = z.string();

const ENV_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;

/** Longest `valueFrom` of a secret (ARNs are at most 2048 characters). */
export const MAX_SECRET_ARN_LENGTH = 2048;

const SECRET_ARN_RE = /^arn:aws[a-z-]*:(secretsmanager:[a-z0-9-]+:\d{12}:secret:[A-Za-z0-9/_+=.@-]+(:[A-Za-z0-9_.-]*){0,3}|ssm:[a-z0-9-]+:\d{12}:parameter\/[A-Za-z0-9/_.-]+)$/;

/** Longest model.prefix, model.file and model.path (S3 keys are at most 1024 bytes). */
export const MAX_MODEL_PATH_LENGTH = 1024;
/** Longest healthPath / metricsPath. */
export const MAX_URL_PATH_LENGTH = 512;
/** Most elements of healthCheckCommand, and the longest element. */
export const MAX_HEALTH_COMMAND_ELEMENTS = 16;
export const MAX_HEALTH_COMMAND_ELEMENT_LENGTH = 4096;
/** Longest serve.allowedImages entry. */
export const MAX_ALLOWED_IMAGE_LENGTH = 512;

/** A string refused with the first problem `problem` finds (one message per value, never a cascade). */
const checkedString = (problem: (value: string) => string | undefined) =>
    z.string().superRefine((value, ctx) => {
        const found = problem(value);
        if (found !== undefined) ctx.addIssue({ code: "custom", message: found });
    });

/** Why `text` is longer than `max` characters (undefined: it is not). */
const tooLong = (text: string, max: number): string | undefined => (text.length > max ? `is ${text.length} characters long; at most ${max}` : undefined);

/** Why a path has an empty, "." or ".." segment (undefined: it has none). */
function segmentProblem(path: string): string | undefined {
    const segments = path.split("/");
    if (segments.some((s) => s === "." || s === "..")) return 'may not contain "." or ".." segments (no path may climb out of where it is put)';
    return undefined;
}

/** A relative S3 key path: segments of safe characters, no leading/trailing "/", no "//", no "." or "..", no wildcards, at most 1024 characters. */
const keyPath = (what: string) =>
    checkedString(
        (p) =>
            tooLong(p, MAX_MODEL_PATH_LENGTH) ??
            (/^[A-Za-z0-9!_.'()=-]+(\/[A-Za-z0-9!_.'()=-]+)*$/.test(p)
                ? segmentProblem(p)
                : `${what} must be an S3 key path of letters, digits and !_.'()=- segments separated by single "/", without a leading or trailing "/" and without * or ?`),
    );

/** Directories the model may not be mounted on (or under). */
export const SYSTEM_DIRECTORIES: readonly string[] = ["/bin", "/dev", "/etc", "/lib", "/proc", "/sys", "/usr", "/var", "/tmp"];

const absolutePath = checkedString((p) => {
    const long = tooLong(p, MAX_MODEL_PATH_LENGTH);
    if (long) return long;
    if (!/^\/[a-z0-9._-]+(\/[a-z0-9._-]+)*$/.test(p)) return 'must be an absolute directory path of lower-case letters, digits and ._- segments separated by single "/", such as "/models"';
    const segments = segmentProblem(p);
    if (segments) return segments;
    if (p === "/" || SYSTEM_DIRECTORIES.some((d) => p === d || p.startsWith(`${d}/`))) return `must not be a system directory (${SYSTEM_DIRECTORIES.join(", ")} or under them)`;
    return undefined;
});

/** A URL path on the server's port, at most MAX_URL_PATH_LENGTH characters. */
const urlPath = (chars: RegExp) =>
    checkedString((p) => tooLong(p, MAX_URL_PATH_LENGTH) ?? (chars.test(p) ? undefined : 'must be a URL path starting with "/"'));

/**
 * Why `name` is not a usable S3 bucket name (AWS general purpose bucket
 * naming rules); undefined when it is: 3 to 63 lower-case letters, digits,
 * "." and "-", starting and ending with a letter or digit, no "..", not an
 * IPv4 address, none of the prefixes and suffixes AWS reserves.
 */
export function bucketNameProblem(name: string): string | undefined {
    const rules = 'S3 bucket names are 3 to 63 lower-case letters, digits, "." and "-", start and end with a letter or digit, have no "..", are not IP addresses, do not start with xn--, sthree- or amzn-s3-demo- and do not end with -s3alias, --ol-s3, .mrap, --x-s3 or --table-s3';
    if (name.length < 3 || name.length > 63) return `is ${name.length} characters long; ${rules}`;
    if (!/^[a-z0-9][a-z0-9.-]*[a-z0-9]$/.test(name)) return `must be an S3 bucket name: ${rules}`;
    if (name.includes("..")) return `has two adjacent periods; ${rules}`;
    if (/^\d{1,3}(\.\d{1,3}){3}$/.test(name)) return `is shaped like an IP address; ${rules}`;
    const prefix = ["xn--", "sthree-", "amzn-s3-demo-"].find((p) => name.startsWith(p));
    if (prefix) return `starts with "${prefix}", which AWS reserves; ${rules}`;
    const suffix = ["-s3alias", "--ol-s3", ".mrap", "--x-s3", "--table-s3"].find((p) => name.endsWith(p));
    if (suffix) return `ends with "${suffix}", which AWS reserves; ${rules}`;
    return undefined;
}

/** `valueFrom` of an ECS secret: a Secrets Manager secret (optionally :json-key::) or an SSM parameter ARN. */
const secretRef = checkedString((arn) =>
    arn.length > MAX_SECRET_ARN_LENGTH
        ? `is ${arn.length} characters long; at most ${MAX_SECRET_ARN_LENGTH}`
        : SECRET_ARN_RE.test(arn)
          ? undefined
          : "must be a Secrets Manager secret ARN (optionally :<json-key>::) or an SSM parameter ARN",
);

/** Environment variable name of a secret. */
const secretName = z.string().max(128, "names are at most 128 characters").regex(ENV_NAME, "names are letters, digits and _");

/** Environment variables injected from Secrets Manager / SSM: NAME -> ARN (at most 100). */
const secretMap = z.record(secretName, secretRef).superRefine((map, ctx) => {
    const n = Object.keys(map).length;
    if (n > 100) ctx.addIssue({ code: "custom", message: `has ${n} entries; at most 100` });
});

// ---------------------------------------------------------------- service fields

/** One sidecar of a service (see SIDECAR_CATALOGUE for what each kind runs). */
export const sidecarSchema = strict({
    /** Which catalogue sidecar. Required. */
    kind: z.enum(SIDECAR_KINDS),
    /** Container name. Default: the kind. */
    name: name("sidecar name").optional(),
    /**
     * Image of this one sidecar, pinned by digest, from the stack's registry
     * (or allow-listed in serve.allowedImages), under the same rules as every
     * other image. Default: the stack's image of the kind (serve.sidecarImages,
     * or the build stack's).
     */
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
    secrets: secretMap.default({}),
});
export type SidecarConfig = z.infer<typeof sidecarSchema>;

/** Where the model comes from: it is copied from S3 into a task volume before the server starts. */
export const modelSchema = strict({
    /** S3 bucket. Required. */
    bucket: checkedString(bucketNameProblem),
    /** Key prefix holding the model, without leading or trailing "/", e.g. "classifier/2026-11-01". Required. The task role can read this prefix only. */
    prefix: keyPath("model prefix"),
    /** File (relative to the prefix) the server loads; sets MODEL_PATH. Default: unset (the server gets MODEL_DIR only). */
    file: keyPath("model file").optional(),
    /** Directory the model is mounted at (read-only for the server). Default "/models". */
    path: absolutePath.default("/models"),
    /** KMS key the objects are encrypted with (SSE-KMS); the task role may decrypt through S3 only. Default: unset (SSE-S3). */
    kmsKeyArn: z.string().regex(/^arn:aws[a-z-]*:kms:[a-z0-9-]+:\d{12}:key\/[A-Za-z0-9-]+$/, "must be a KMS key ARN").optional(),
    /** Removed: the model-fetch init container runs the stack's model-sync image (serve.sidecarImages.model-sync, or the build stack's). */
    syncImage: z
        .unknown()
        .optional()
        .refine((v) => v === undefined, "no longer used: the model-fetch init container runs the stack's model-sync image; pin it as serve.sidecarImages.model-sync (or let it follow the build stack) and remove this key"),
});

/** Fields of `serve.services[]` besides name / image / target / ref. */
export const serviceShape = {
    /** Tasks to run. Default 1 (0 parks the service). */
    replicas: z.number().int().min(0).max(100).default(1),
    /** Port the server listens on (the only port the load balancer reaches). Default 8080. */
    port: z.number().int().min(1).max(65535).default(8080),
    /** Health check path, for the container and the load balancer. Default "/healthz". */
    healthPath: urlPath(/^\/[A-Za-z0-9._~!$&'()*+,;=:@%/-]*$/).default("/healthz"),
    /** Container health check command in ECS form (["CMD", ...] or ["CMD-SHELL", "..."]). Default: a python3 probe of 127.0.0.1:<port><healthPath>. */
    healthCheckCommand: z
        .array(z.string().min(1).max(MAX_HEALTH_COMMAND_ELEMENT_LENGTH, `elements are at most ${MAX_HEALTH_COMMAND_ELEMENT_LENGTH} characters`))
        .min(2)
        .max(MAX_HEALTH_COMMAND_ELEMENTS, `at most ${MAX_HEALTH_COMMAND_ELEMENTS} elements`)
        .refine((c) => c[0] === "CMD" || c[0] === "CMD-SHELL", 'must start with "CMD" or "CMD-SHELL"')
        .optional(),
    /** Seconds the container health check forgives after the server starts (model loading; ECS allows at most 300). Default 300. */
    healthStartPeriodSeconds: z.number().int().min(0).max(300).default(300),
    /** Seconds the service ignores load-balancer health checks after a task starts (model download and load). Default 900. */
    healthGracePeriodSeconds: z.number().int().min(0).max(7200).default(900),
    /** Path of the server's Prometheus metrics on its port (scraped by the metrics-exporter sidecar). Default "/metrics". */
    metricsPath: urlPath(/^\/[A-Za-z0-9._~/-]*$/).default("/metrics"),
    /** Server environment (PORT, MODEL_DIR and MODEL_PATH are set from other fields). Default {}. */
    environment: stringMap.default({}),
    /**
     * Server environment injected from Secrets Manager / SSM: NAME -> ARN
     * (same form as sidecars' secrets; the execution role may read exactly
     * these). A name may not also be in environment. Default: none.
     */
    secrets: secretMap.optional(),
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
    /** /dev/shm size, MiB (PyTorch DataLoader workers, NCCL). Default 1024 (DEFAULT_SHARED_MEMORY_MIB). */
    sharedMemoryMiB: z.number().int().min(64).max(524_288).default(1024),
    /** Days CloudWatch keeps the service's logs. Default 30. */
    logRetentionDays: logRetentionDays.default(30),
    /** ECS Exec (shell and port forwarding to 127.0.0.1 sidecars through SSM). Default false. */
    execCommand: z.boolean().default(false),
} satisfies z.ZodRawShape;

/** The fields above as one object (what InferenceService reads). */
export const serviceFieldsSchema = strict(serviceShape);
export type ServiceFields = z.infer<typeof serviceFieldsSchema>;

/** /dev/shm size when sharedMemoryMiB is not set, MiB (serviceShape.sharedMemoryMiB). */
export const DEFAULT_SHARED_MEMORY_MIB = 1024;

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
        instanceTypes: z.array(instanceType("g5.xlarge")).min(1).max(20).default([...defaults.instanceTypes]),
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
    securityGroupIds: z.array(securityGroupId).max(50, "at most 50 (a security group holds 60 rules)").default([]),
    /** Client IPv4 CIDRs (0.0.0.0/0 is refused: the load balancers are internal). Default []. */
    cidrs: z.array(cidr).max(50, "at most 50 (a security group holds 60 rules)").default([]),
}).prefault({});
export type ClientsConfig = z.infer<typeof clientsSchema>;

/**
 * `serve.loadBalancer`: listener of every service's internal ALB. HTTPS needs
 * a certificate; plain HTTP is served only when the stack says so
 * (`protocol: http`). Which combinations are allowed is checked in ./checks.
 */
export const loadBalancerSchema = strict({
    /**
     * "https" (default): HTTPS on 443 with certificateArn (then required) and sslPolicy.
     * "http": plain HTTP on 80, on purpose (no certificate); the listener is
     * tagged ml-infra:plain-http=true, which is what lets the policy pack admit it.
     */
    protocol: z.enum(["https", "http"]).default("https"),
    /** ACM certificate of the HTTPS listener (same account and region as the stack). Required with protocol https; refused with http. */
    certificateArn: z.string().regex(/^arn:aws[a-z-]*:acm:[a-z0-9-]+:\d{12}:certificate\/[0-9a-f-]{36}$/, "must be an ACM certificate ARN").optional(),
    /** TLS policy of the HTTPS listener: one whose oldest protocol is TLS 1.2 (see tlsPolicyProblem). Default "ELBSecurityPolicy-TLS13-1-2-2021-06"; refused with protocol http. */
    sslPolicy: z
        .string()
        .superRefine((name, ctx) => {
            const problem = tlsPolicyProblem(name);
            if (problem) ctx.addIssue({ code: "custom", message: problem });
        })
        .optional(),
    /** Idle timeout, seconds (long generations need more). Default 60. */
    idleTimeoutSeconds: z.number().int().min(1).max(4000).default(60),
}).prefault({});
export type LoadBalancerConfig = z.infer<typeof loadBalancerSchema>;

// ---------------------------------------------------------------- section

/** One `serve.services[]` entry. */
const serviceSchema = strict({
    name: name("service name"),
    image: name("image name"),
    target: z.string(),
    ref: z.string().optional(),
    ...serviceShape,
});

/** `serve`: what an environment deploys and how it is sized and reached. */
export const serveSchema = strict({
    /** The build stack services without a `ref` (and sidecar kinds without a pinned image) follow: `[org/][project/]stack`. Default `<organization>/<project>/build`. */
    buildStack: stackName.optional(),
    /** Every service must pin `ref`, and every sidecar kind a service runs (model-sync for the model fetch) must be pinned in sidecarImages (staging, prod). Default false. */
    requirePinned: z.boolean().default(false),
    /**
     * The image each sidecar kind runs (model-sync: also the model-fetch init
     * container), pinned by digest: `<registry>/<prefix>/<kind's build image>@sha256:<64 hex>`.
     * Default {}: each kind follows the build stack's `images.<kind>.multiArch.ref`
     * (a requirePinned stack must pin every kind its services run; npm run promote copies them).
     */
    sidecarImages: z.record(z.string(), digestImage).default({}),
    /**
     * Repositories an image may come from besides the stack's own registry,
     * on purpose: `<host>/<repository>` (one repository) or `<host>/<namespace>/`
     * (every repository under it). Images from them must still be pinned by
     * digest; the execution role may pull only those that are ECR repositories.
     * Default [].
     */
    allowedImages: z.array(z.string().max(MAX_ALLOWED_IMAGE_LENGTH, `entries are at most ${MAX_ALLOWED_IMAGE_LENGTH} characters`)).max(50).default([]),
    targets: targetsSchema,
    services: z.array(serviceSchema).min(1, "the serve section needs at least one service").max(50, "at most 50 services per environment"),
    capacity: capacitySchema,
    clients: clientsSchema,
    loadBalancer: loadBalancerSchema,
});
export type ServeConfig = z.infer<typeof serveSchema>;
