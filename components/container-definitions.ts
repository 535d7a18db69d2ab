/**
 * Container definitions and IAM documents of an inference task (pure).
 *
 * A task is: the inference server (the only container with a port mapping),
 * an init container that copies the model from S3 into a shared volume before
 * the server starts, and optional sidecars from the catalogue below. Sidecars
 * are never essential, have no port mappings and bind to 127.0.0.1: in awsvpc
 * mode every container shares the task's network namespace, so a sidecar on
 * 127.0.0.1 is reachable from inside the task only (or through ECS Exec port
 * forwarding), whatever a security group says.
 *
 * Definitions are typed objects; `serialiseContainerDefinitions` is the only
 * place they become JSON: sorted keys, sorted environment / secrets / mounts /
 * dependencies, and every field AWS echoes back with a default written out, so
 * evaluating the program twice gives byte-identical text and the provider sees
 * no diff after a refresh.
 */
import type { ServiceFields, SidecarConfig } from "./serve-config";

// ---------------------------------------------------------------- names

/** Name of the inference server container (the load balancer's target). */
export const SERVER_CONTAINER = "server";
/** Name of the init container that fetches the model. */
export const MODEL_FETCH_CONTAINER = "model-fetch";
/** Container names a sidecar may not take. */
export const RESERVED_CONTAINER_NAMES: readonly string[] = [SERVER_CONTAINER, MODEL_FETCH_CONTAINER];
/** Task volume the model is copied into (Docker-managed, lives as long as the task). */
export const MODEL_VOLUME = "model";
/** Environment the server container gets from the service's fields; config may not set these. */
export const SERVER_RESERVED_ENVIRONMENT: readonly string[] = ["PORT", "MODEL_DIR", "MODEL_PATH"];
/** Memory (MiB) of the model-fetch init container; counted in the task's budget. */
export const MODEL_FETCH_MEMORY_MIB = 512;
/** CPU units of the model-fetch init container. */
export const MODEL_FETCH_CPU = 256;
/** Docker label naming what a container binds on 127.0.0.1 (read by tests and operators). */
export const BINDS_LABEL = "ml-infra.binds";
/** Docker label with the (primary) port a sidecar listens on: the policy pack's no-sidecar-port-ingress reads it. */
export const SIDECAR_PORT_LABEL = "ml-infra.sidecar-port";
/** Docker label naming a container's role: server, init or sidecar. */
export const ROLE_LABEL = "ml-infra.role";

// ---------------------------------------------------------------- images

/**
 * Digests in this file are PLACEHOLDERS (zeros ending in a small number):
 * pin real ones before the first deploy, e.g.
 *   crane digest public.ecr.aws/aws-cli/aws-cli:2.27.0
 * or override `image` per sidecar / `model.syncImage` in stack config.
 * The components log a warning while a placeholder is deployed.
 */
export const PLACEHOLDER_DIGEST_RE = /@sha256:0{56}[0-9a-f]{8}$/;
const placeholder = (n: number) => `sha256:${n.toString(16).padStart(64, "0")}`;

/** AWS CLI v2 (entrypoint `aws`); fetches and re-syncs the model. Tag: 2.x. */
export const AWS_CLI_IMAGE = `public.ecr.aws/aws-cli/aws-cli@${placeholder(1)}`;

export const SIDECAR_KINDS = ["metrics-exporter", "tensorboard", "minio", "model-sync", "log-router"] as const;
export type SidecarKind = (typeof SIDECAR_KINDS)[number];

/** What a sidecar waits for before it starts. */
export type StartAfter = "nothing" | "model-fetched" | "server-healthy";

export interface SidecarCatalogueEntry {
    readonly description: string;
    /** Default image, pinned by digest (overridable per sidecar with `image`). */
    readonly image: string;
    /** Port it binds on 127.0.0.1 when `port` is not set; undefined: it binds none. */
    readonly defaultPort?: number;
    /** Whether config may move it to another port. */
    readonly portConfigurable: boolean;
    /** Every port it binds on 127.0.0.1, given its (resolved) port. */
    readonly ports: (port: number | undefined) => readonly number[];
    /** Default CPU units and memory limit (MiB); overridable per sidecar. */
    readonly cpu: number;
    readonly memory: number;
    readonly startAfter: StartAfter;
    /** Environment names the catalogue sets itself; config may not set them. */
    readonly reservedEnvironment: readonly string[];
    /** Secret names (environment variables) config must provide. */
    readonly requiredSecrets: readonly string[];
    /** Needs to write to the service's log group with the task role (FireLens, EMF). */
    readonly writesLogs: boolean;
}

/** The sidecar catalogue. */
export const SIDECAR_CATALOGUE: Readonly<Record<SidecarKind, SidecarCatalogueEntry>> = {
    "metrics-exporter": {
        description:
            "AWS Distro for OpenTelemetry collector: scrapes the server's Prometheus metrics on 127.0.0.1 and ships them to CloudWatch (EMF) in the service's log group",
        image: `public.ecr.aws/aws-observability/aws-otel-collector@${placeholder(2)}`,
        defaultPort: 13133,
        portConfigurable: true,
        ports: (port) => (port === undefined ? [] : [port]),
        cpu: 128,
        memory: 256,
        startAfter: "server-healthy",
        reservedEnvironment: ["AOT_CONFIG_CONTENT"],
        requiredSecrets: [],
        writesLogs: true,
    },
    tensorboard: {
        description: "TensorBoard on the event files shipped with the model (reach it with ECS Exec port forwarding)",
        image: `docker.io/tensorflow/tensorflow@${placeholder(3)}`,
        defaultPort: 6006,
        portConfigurable: true,
        ports: (port) => (port === undefined ? [] : [port]),
        cpu: 256,
        memory: 1024,
        startAfter: "model-fetched",
        reservedEnvironment: [],
        requiredSecrets: [],
        writesLogs: false,
    },
    minio: {
        description: "MinIO S3-compatible scratch store for the server (API on the port, console on port + 1); root credentials from secrets",
        image: `quay.io/minio/minio@${placeholder(4)}`,
        defaultPort: 9000,
        portConfigurable: true,
        ports: (port) => (port === undefined ? [] : [port, port + 1]),
        cpu: 256,
        memory: 1024,
        startAfter: "nothing",
        reservedEnvironment: [],
        requiredSecrets: ["MINIO_ROOT_USER", "MINIO_ROOT_PASSWORD"],
        writesLogs: false,
    },
    "model-sync": {
        description: "Re-syncs the model prefix from S3 into the shared volume every SYNC_INTERVAL_SECONDS (default 300) for servers that hot-reload",
        image: AWS_CLI_IMAGE,
        portConfigurable: false,
        ports: () => [],
        cpu: 128,
        memory: 256,
        startAfter: "model-fetched",
        reservedEnvironment: ["MODEL_BUCKET", "MODEL_PREFIX", "MODEL_DIR", "AWS_REGION", "AWS_DEFAULT_REGION"],
        requiredSecrets: [],
        writesLogs: false,
    },
    "log-router": {
        description: "FireLens (Fluent Bit) log router: the server logs through it to the service's log group; listens on 127.0.0.1:24224 and a unix socket",
        image: `public.ecr.aws/aws-observability/aws-for-fluent-bit@${placeholder(5)}`,
        defaultPort: 24224,
        // FireLens generates Fluent Bit's input config; the port is not ours to move.
        portConfigurable: false,
        ports: (port) => (port === undefined ? [] : [port]),
        cpu: 128,
        memory: 256,
        startAfter: "nothing",
        reservedEnvironment: [],
        requiredSecrets: [],
        writesLogs: true,
    },
};

/** A sidecar with every catalogue default filled in. */
export interface ResolvedSidecar {
    readonly kind: SidecarKind;
    readonly name: string;
    readonly image: string;
    readonly port: number | undefined;
    /** Every port it binds on 127.0.0.1. */
    readonly ports: readonly number[];
    readonly cpu: number;
    readonly memory: number;
    readonly environment: Readonly<Record<string, string>>;
    readonly secrets: Readonly<Record<string, string>>;
}

export function resolveSidecar(sidecar: SidecarConfig): ResolvedSidecar {
    const entry = SIDECAR_CATALOGUE[sidecar.kind];
    const port = entry.portConfigurable ? (sidecar.port ?? entry.defaultPort) : entry.defaultPort;
    return {
        kind: sidecar.kind,
        name: sidecar.name ?? sidecar.kind,
        image: sidecar.image ?? entry.image,
        port,
        ports: entry.ports(port),
        cpu: sidecar.cpu ?? entry.cpu,
        memory: sidecar.memory ?? entry.memory,
        environment: sidecar.environment,
        secrets: sidecar.secrets,
    };
}

// ---------------------------------------------------------------- types

export interface KeyValuePair {
    readonly name: string;
    readonly value: string;
}
export interface ContainerSecret {
    readonly name: string;
    readonly valueFrom: string;
}
export interface PortMapping {
    readonly containerPort: number;
    /** awsvpc: always equal to containerPort (AWS echoes it back). */
    readonly hostPort: number;
    readonly protocol: "tcp";
}
export interface MountPoint {
    readonly sourceVolume: string;
    readonly containerPath: string;
    readonly readOnly: boolean;
}
export interface ContainerDependency {
    readonly containerName: string;
    readonly condition: "START" | "COMPLETE" | "SUCCESS" | "HEALTHY";
}
export interface HealthCheck {
    readonly command: readonly string[];
    readonly interval: number;
    readonly timeout: number;
    readonly retries: number;
    readonly startPeriod: number;
}
export interface LogConfiguration {
    readonly logDriver: "awslogs" | "awsfirelens";
    readonly options: Readonly<Record<string, string>>;
}
export interface LinuxParameters {
    readonly initProcessEnabled: boolean;
    /** MiB of /dev/shm (PyTorch DataLoader workers, NCCL). EC2 only. */
    readonly sharedMemorySize?: number;
}
export interface ResourceRequirement {
    readonly type: "GPU";
    readonly value: string;
}
export interface FirelensConfiguration {
    readonly type: "fluentbit";
    readonly options: Readonly<Record<string, string>>;
}

/** The subset of the ECS container definition this program writes. */
export interface ContainerDefinition {
    readonly name: string;
    readonly image: string;
    readonly essential: boolean;
    readonly cpu: number;
    /** Hard limit (MiB); absent for the server, which gets the rest of the task's memory. */
    readonly memory?: number;
    readonly entryPoint?: readonly string[];
    readonly command?: readonly string[];
    readonly environment: readonly KeyValuePair[];
    readonly secrets?: readonly ContainerSecret[];
    readonly portMappings: readonly PortMapping[];
    readonly mountPoints: readonly MountPoint[];
    readonly volumesFrom: readonly never[];
    readonly systemControls: readonly never[];
    readonly dependsOn?: readonly ContainerDependency[];
    readonly healthCheck?: HealthCheck;
    readonly linuxParameters?: LinuxParameters;
    readonly resourceRequirements?: readonly ResourceRequirement[];
    readonly firelensConfiguration?: FirelensConfiguration;
    readonly logConfiguration: LogConfiguration;
    readonly dockerLabels: Readonly<Record<string, string>>;
}

/** What the definitions need besides the service's config. */
export interface ContainerContext {
    /** Service name: log stream prefix and labels. */
    readonly service: string;
    /** The server image, `registry/repository@sha256:...` (checked by the caller). */
    readonly image: string;
    /** GPUs the server gets (0 for CPU targets). */
    readonly gpus: number;
    /** CloudWatch log group of the service. */
    readonly logGroupName: string;
    /** AWS region (awslogs, and the AWS SDKs in the task: instance metadata is blocked for tasks). */
    readonly region: string;
}

// ---------------------------------------------------------------- builders

const env = (vars: Readonly<Record<string, string>>): KeyValuePair[] =>
    Object.entries(vars).map(([name, value]) => ({ name, value }));

const secretsOf = (vars: Readonly<Record<string, string>>): ContainerSecret[] | undefined => {
    const list = Object.entries(vars).map(([name, valueFrom]) => ({ name, valueFrom }));
    return list.length > 0 ? list : undefined;
};

function awslogs(ctx: ContainerContext): LogConfiguration {
    return {
        logDriver: "awslogs",
        options: {
            "awslogs-group": ctx.logGroupName,
            "awslogs-region": ctx.region,
            "awslogs-stream-prefix": ctx.service,
            // A slow CloudWatch must never block the server's stdout.
            mode: "non-blocking",
            "max-buffer-size": "25m",
        },
    };
}

function firelens(ctx: ContainerContext): LogConfiguration {
    return {
        logDriver: "awsfirelens",
        options: {
            Name: "cloudwatch_logs",
            region: ctx.region,
            log_group_name: ctx.logGroupName,
            log_stream_prefix: `${ctx.service}/${SERVER_CONTAINER}/`,
            auto_create_group: "false",
        },
    };
}

const regionEnv = (region: string) => ({ AWS_REGION: region, AWS_DEFAULT_REGION: region });

/** The s3:// URL of the model prefix (always ending in "/"). */
export function modelUrl(model: ServiceFields["model"]): string {
    return `s3://${model.bucket}/${model.prefix}/`;
}

/** Default health check: the reference server image has python3 but neither curl nor wget. */
export function defaultHealthCommand(port: number, path: string): string[] {
    const url = `http://127.0.0.1:${port}${path}`;
    return ["CMD", "python3", "-c", `import urllib.request; urllib.request.urlopen(${JSON.stringify(url)}, timeout=4)`];
}

/** OpenTelemetry collector config of the metrics exporter (YAML is a superset of JSON). */
export function metricsExporterConfig(service: ServiceFields, sidecar: ResolvedSidecar, ctx: ContainerContext): unknown {
    return {
        receivers: {
            prometheus: {
                config: {
                    scrape_configs: [
                        {
                            job_name: ctx.service,
                            scrape_interval: "30s",
                            metrics_path: service.metricsPath,
                            static_configs: [{ targets: [`127.0.0.1:${service.port}`] }],
                        },
                    ],
                },
            },
        },
        processors: { batch: {} },
        exporters: {
            awsemf: {
                namespace: "MLInference",
                region: ctx.region,
                log_group_name: ctx.logGroupName,
                log_stream_name: `${ctx.service}/metrics/{TaskId}`,
                dimension_rollup_option: "NoDimensionRollup",
            },
        },
        extensions: { health_check: { endpoint: `127.0.0.1:${sidecar.port ?? 13133}` } },
        service: {
            extensions: ["health_check"],
            // The collector's own telemetry server would listen on all interfaces: turn it off.
            telemetry: { metrics: { level: "none" } },
            pipelines: { metrics: { receivers: ["prometheus"], processors: ["batch"], exporters: ["awsemf"] } },
        },
    };
}

/** Shell loop of the model-sync sidecar (reads its environment; no interpolation here). */
export const MODEL_SYNC_SCRIPT =
    'while true; do sleep "$SYNC_INTERVAL_SECONDS"; aws s3 sync "s3://$MODEL_BUCKET/$MODEL_PREFIX/" "$MODEL_DIR/" --only-show-errors --no-progress; done';

/** Task volumes a sidecar needs besides the model volume. */
export function sidecarVolumes(sidecar: ResolvedSidecar): string[] {
    return sidecar.kind === "minio" ? [`${sidecar.name}-data`] : [];
}

function dependencyOf(after: StartAfter): ContainerDependency[] {
    switch (after) {
        case "nothing":
            return [];
        case "model-fetched":
            return [{ containerName: MODEL_FETCH_CONTAINER, condition: "SUCCESS" }];
        case "server-healthy":
            return [{ containerName: SERVER_CONTAINER, condition: "HEALTHY" }];
    }
}

function sidecarContainer(service: ServiceFields, sidecar: ResolvedSidecar, ctx: ContainerContext): ContainerDefinition {
    const entry = SIDECAR_CATALOGUE[sidecar.kind];
    const modelMount: MountPoint = { sourceVolume: MODEL_VOLUME, containerPath: service.model.path, readOnly: true };
    let extra: Pick<ContainerDefinition, "entryPoint" | "command" | "mountPoints" | "firelensConfiguration"> & {
        readonly environment: Readonly<Record<string, string>>;
    };
    switch (sidecar.kind) {
        case "metrics-exporter":
            extra = {
                environment: { AOT_CONFIG_CONTENT: canonicalJson(metricsExporterConfig(service, sidecar, ctx)) },
                mountPoints: [],
            };
            break;
        case "tensorboard":
            extra = {
                command: ["tensorboard", "--logdir", service.model.path, "--host", "127.0.0.1", "--port", String(sidecar.port)],
                environment: {},
                mountPoints: [modelMount],
            };
            break;
        case "minio": {
            const port = sidecar.port ?? 9000;
            extra = {
                command: ["server", "/data", "--address", `127.0.0.1:${port}`, "--console-address", `127.0.0.1:${port + 1}`],
                environment: {},
                mountPoints: [{ sourceVolume: `${sidecar.name}-data`, containerPath: "/data", readOnly: false }],
            };
            break;
        }
        case "model-sync":
            extra = {
                entryPoint: ["/bin/sh", "-c"],
                command: [MODEL_SYNC_SCRIPT],
                environment: {
                    SYNC_INTERVAL_SECONDS: "300",
                    ...sidecar.environment,
                    MODEL_BUCKET: service.model.bucket,
                    MODEL_PREFIX: service.model.prefix,
                    MODEL_DIR: service.model.path,
                    ...regionEnv(ctx.region),
                },
                mountPoints: [{ ...modelMount, readOnly: false }],
            };
            break;
        case "log-router":
            extra = {
                environment: {},
                mountPoints: [],
                firelensConfiguration: { type: "fluentbit", options: { "enable-ecs-log-metadata": "true" } },
            };
            break;
    }
    return {
        name: sidecar.name,
        image: sidecar.image,
        essential: false,
        cpu: sidecar.cpu,
        memory: sidecar.memory,
        entryPoint: extra.entryPoint,
        command: extra.command,
        environment: env({ ...sidecar.environment, ...extra.environment }),
        secrets: secretsOf(sidecar.secrets),
        portMappings: [],
        mountPoints: extra.mountPoints,
        volumesFrom: [],
        systemControls: [],
        dependsOn: dependencyOf(entry.startAfter),
        firelensConfiguration: extra.firelensConfiguration,
        logConfiguration: awslogs(ctx),
        dockerLabels: {
            [ROLE_LABEL]: "sidecar",
            "ml-infra.sidecar": sidecar.kind,
            [BINDS_LABEL]: sidecar.ports.map((p) => `127.0.0.1:${p}`).join(","),
            ...(sidecar.port !== undefined ? { [SIDECAR_PORT_LABEL]: String(sidecar.port) } : {}),
        },
    };
}

/**
 * Every container of the task: server, model-fetch, then sidecars sorted by
 * name (so reordering sidecars in config is not a change).
 */
export function buildContainerDefinitions(service: ServiceFields, ctx: ContainerContext): ContainerDefinition[] {
    const sidecars = service.sidecars.map(resolveSidecar).sort((a, b) => a.name.localeCompare(b.name));
    const logRouter = sidecars.find((s) => s.kind === "log-router");
    const modelDir = service.model.path;

    const serverEnv: Record<string, string> = { ...service.environment, PORT: String(service.port), MODEL_DIR: modelDir };
    if (service.model.file !== undefined) serverEnv.MODEL_PATH = `${modelDir}/${service.model.file}`;

    const server: ContainerDefinition = {
        name: SERVER_CONTAINER,
        image: ctx.image,
        essential: true,
        cpu: 0,
        environment: env(serverEnv),
        portMappings: [{ containerPort: service.port, hostPort: service.port, protocol: "tcp" }],
        mountPoints: [{ sourceVolume: MODEL_VOLUME, containerPath: modelDir, readOnly: true }],
        volumesFrom: [],
        systemControls: [],
        dependsOn: [
            { containerName: MODEL_FETCH_CONTAINER, condition: "SUCCESS" },
            ...(logRouter ? [{ containerName: logRouter.name, condition: "START" as const }] : []),
        ],
        healthCheck: {
            command: service.healthCheckCommand ?? defaultHealthCommand(service.port, service.healthPath),
            interval: 30,
            timeout: 5,
            retries: 3,
            startPeriod: service.healthStartPeriodSeconds,
        },
        linuxParameters: { initProcessEnabled: true, sharedMemorySize: service.sharedMemoryMiB },
        resourceRequirements: ctx.gpus > 0 ? [{ type: "GPU", value: String(ctx.gpus) }] : undefined,
        logConfiguration: logRouter ? firelens(ctx) : awslogs(ctx),
        dockerLabels: { [ROLE_LABEL]: "server", "ml-infra.service": ctx.service },
    };

    const fetch: ContainerDefinition = {
        name: MODEL_FETCH_CONTAINER,
        image: service.model.syncImage ?? AWS_CLI_IMAGE,
        essential: false,
        cpu: MODEL_FETCH_CPU,
        memory: MODEL_FETCH_MEMORY_MIB,
        command: ["s3", "sync", modelUrl(service.model), `${modelDir}/`, "--only-show-errors", "--no-progress"],
        environment: env(regionEnv(ctx.region)),
        portMappings: [],
        mountPoints: [{ sourceVolume: MODEL_VOLUME, containerPath: modelDir, readOnly: false }],
        volumesFrom: [],
        systemControls: [],
        logConfiguration: awslogs(ctx),
        dockerLabels: { [ROLE_LABEL]: "init", [BINDS_LABEL]: "" },
    };

    return [server, fetch, ...sidecars.map((s) => sidecarContainer(service, s, ctx))];
}

/** Volumes of the task definition (names, sorted). */
export function taskVolumes(service: ServiceFields): string[] {
    const names = new Set<string>([MODEL_VOLUME]);
    for (const s of service.sidecars.map(resolveSidecar)) for (const v of sidecarVolumes(s)) names.add(v);
    return [...names].sort();
}

// ---------------------------------------------------------------- serialiser

function isPlainObject(v: unknown): v is Record<string, unknown> {
    return typeof v === "object" && v !== null && !Array.isArray(v);
}

/** JSON with object keys sorted at every level (array order is kept). */
export function canonicalJson(value: unknown): string {
    return JSON.stringify(value, (_key, v: unknown) =>
        isPlainObject(v) ? Object.fromEntries(Object.keys(v).sort().map((k) => [k, v[k]])) : v,
    );
}

const byName = <T extends { readonly name: string }>(list: readonly T[]) => [...list].sort((a, b) => a.name.localeCompare(b.name));

function normalise(def: ContainerDefinition): ContainerDefinition {
    return {
        ...def,
        environment: byName(def.environment),
        secrets: def.secrets && def.secrets.length > 0 ? byName(def.secrets) : undefined,
        portMappings: [...def.portMappings].sort((a, b) => a.containerPort - b.containerPort),
        mountPoints: [...def.mountPoints].sort((a, b) => a.containerPath.localeCompare(b.containerPath)),
        dependsOn:
            def.dependsOn && def.dependsOn.length > 0
                ? [...def.dependsOn].sort((a, b) => a.containerName.localeCompare(b.containerName))
                : undefined,
    };
}

/**
 * The task definition's `containerDefinitions` text. Deterministic: the same
 * definitions in any key / environment order give the same bytes. Defaults
 * AWS echoes back (cpu 0, essential, empty environment / portMappings /
 * mountPoints / volumesFrom / systemControls) are always written; optional
 * lists AWS omits when empty (secrets, dependsOn) are omitted when empty.
 */
export function serialiseContainerDefinitions(defs: readonly ContainerDefinition[]): string {
    return canonicalJson(defs.map(normalise));
}

// ---------------------------------------------------------------- IAM

export interface PolicyStatement {
    readonly Sid?: string;
    readonly Effect: "Allow" | "Deny";
    readonly Principal?: { readonly Service: string };
    readonly Action: string | readonly string[];
    readonly Resource?: string | readonly string[];
    readonly Condition?: Readonly<Record<string, Readonly<Record<string, string | readonly string[]>>>>;
}

export interface PolicyDocument {
    readonly Version: "2012-10-17";
    readonly Statement: readonly PolicyStatement[];
}

/** Trust policy letting an AWS service assume a role. */
export function assumeRolePolicy(service: "ecs-tasks.amazonaws.com" | "ec2.amazonaws.com"): PolicyDocument {
    return {
        Version: "2012-10-17",
        Statement: [{ Effect: "Allow", Principal: { Service: service }, Action: "sts:AssumeRole" }],
    };
}

export interface TaskRolePolicyArgs {
    /** AWS partition ("aws", "aws-cn", "aws-us-gov"). */
    readonly partition: string;
    readonly model: Pick<ServiceFields["model"], "bucket" | "prefix" | "kmsKeyArn">;
    /** The service's log group, when a sidecar writes to it with the task role (FireLens, EMF). */
    readonly logGroupArn?: string;
    /** ECS Exec (SSM session channels). */
    readonly execCommand: boolean;
}

/**
 * What the task's containers may do: read the model prefix and nothing else
 * of the bucket; write to the service's log group when a sidecar ships logs
 * or metrics; open ECS Exec channels when enabled.
 */
export function taskRolePolicy(args: TaskRolePolicyArgs): PolicyDocument {
    const { bucket, prefix, kmsKeyArn } = args.model;
    const statements: PolicyStatement[] = [
        {
            Sid: "ReadModelObjects",
            Effect: "Allow",
            Action: ["s3:GetObject"],
            Resource: [`arn:${args.partition}:s3:::${bucket}/${prefix}/*`],
        },
        {
            Sid: "ListModelPrefix",
            Effect: "Allow",
            Action: ["s3:ListBucket"],
            Resource: [`arn:${args.partition}:s3:::${bucket}`],
            Condition: { StringLike: { "s3:prefix": [`${prefix}/`, `${prefix}/*`] } },
        },
    ];
    if (kmsKeyArn !== undefined) {
        statements.push({
            Sid: "DecryptModelObjects",
            Effect: "Allow",
            Action: ["kms:Decrypt"],
            Resource: [kmsKeyArn],
            Condition: { StringLike: { "kms:ViaService": ["s3.*.amazonaws.com"] } },
        });
    }
    if (args.logGroupArn !== undefined) {
        statements.push({
            Sid: "ShipLogsAndMetrics",
            Effect: "Allow",
            Action: ["logs:CreateLogStream", "logs:DescribeLogStreams", "logs:PutLogEvents"],
            Resource: [args.logGroupArn, `${args.logGroupArn}:*`],
        });
    }
    if (args.execCommand) {
        statements.push({
            Sid: "EcsExec",
            Effect: "Allow",
            Action: ["ssmmessages:CreateControlChannel", "ssmmessages:CreateDataChannel", "ssmmessages:OpenControlChannel", "ssmmessages:OpenDataChannel"],
            Resource: ["*"],
        });
    }
    return { Version: "2012-10-17", Statement: statements };
}

const ECR_HOST_RE = /^(\d{12})\.dkr\.ecr(?:-fips)?\.([a-z0-9-]+)\.amazonaws\.com(?:\.cn)?$/;

/** The ECR repository ARN of a private ECR image reference; undefined for other registries. */
export function ecrRepositoryArn(image: string, partition: string): string | undefined {
    const at = image.indexOf("@");
    const name = at >= 0 ? image.slice(0, at) : image;
    const slash = name.indexOf("/");
    if (slash < 0) return undefined;
    const m = ECR_HOST_RE.exec(name.slice(0, slash));
    if (!m) return undefined;
    const repository = name.slice(slash + 1).replace(/:[^/]*$/, "");
    return `arn:${partition}:ecr:${m[2]}:${m[1]}:repository/${repository}`;
}

/** The resource a `secrets[].valueFrom` names (a Secrets Manager JSON-key suffix is cut off). */
export function secretResourceArn(valueFrom: string): string {
    const parts = valueFrom.split(":");
    return parts[2] === "secretsmanager" ? parts.slice(0, 7).join(":") : valueFrom;
}

export interface ExecutionRolePolicyArgs {
    readonly partition: string;
    /** Every container image of the task (private ECR ones get pull rights). */
    readonly images: readonly string[];
    readonly logGroupArn: string;
    /** Every `valueFrom` of the task's secrets. */
    readonly secrets: readonly string[];
}

/**
 * What ECS itself does for the task: pull its private ECR images, write its
 * awslogs streams, read the secrets it injects. Scoped to those resources
 * (instead of the broad AmazonECSTaskExecutionRolePolicy).
 */
export function executionRolePolicy(args: ExecutionRolePolicyArgs): PolicyDocument {
    const uniqueSorted = (list: Iterable<string>) => [...new Set(list)].sort();
    const repositories = uniqueSorted(args.images.flatMap((i) => ecrRepositoryArn(i, args.partition) ?? []));
    const resources = uniqueSorted(args.secrets.map(secretResourceArn));
    const secretArns = resources.filter((r) => r.split(":")[2] === "secretsmanager");
    const parameterArns = resources.filter((r) => r.split(":")[2] === "ssm");
    const statements: PolicyStatement[] = [
        {
            Sid: "WriteTaskLogs",
            Effect: "Allow",
            Action: ["logs:CreateLogStream", "logs:PutLogEvents"],
            Resource: [args.logGroupArn, `${args.logGroupArn}:*`],
        },
    ];
    if (repositories.length > 0) {
        statements.push(
            { Sid: "EcrLogin", Effect: "Allow", Action: ["ecr:GetAuthorizationToken"], Resource: ["*"] },
            {
                Sid: "PullTaskImages",
                Effect: "Allow",
                Action: ["ecr:BatchCheckLayerAvailability", "ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer"],
                Resource: repositories,
            },
        );
    }
    if (secretArns.length > 0) {
        statements.push({ Sid: "ReadTaskSecrets", Effect: "Allow", Action: ["secretsmanager:GetSecretValue"], Resource: secretArns });
    }
    if (parameterArns.length > 0) {
        statements.push({ Sid: "ReadTaskParameters", Effect: "Allow", Action: ["ssm:GetParameters"], Resource: parameterArns });
    }
    return { Version: "2012-10-17", Statement: statements };
}
