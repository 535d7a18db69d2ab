/**
 * Container definitions of an inference task (pure).
 *
 * A task is: the inference server (the only container with a port mapping),
 * an init container that copies the model from S3 into a shared volume before
 * the server starts, and optional sidecars from the catalogue (./sidecars). Sidecars
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
import { BINDS_LABEL, ROLE_LABEL, SIDECAR_PORT_LABEL } from "../shared/labels";
import { allowedEntryFor } from "./images";
import type { ServiceFields } from "./schema";
import {
    MODEL_FETCH_CONTAINER,
    MODEL_FETCH_CPU,
    MODEL_FETCH_MEMORY_MIB,
    MODEL_VOLUME,
    SERVER_CONTAINER,
    SIDECAR_CATALOGUE,
    type ResolvedSidecar,
    type StartAfter,
    resolveSidecar,
} from "./sidecars";

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
    /** The model-fetch init container's image (the stack's model-sync image), pinned by digest. */
    readonly modelFetchImage: string;
    /** Each sidecar's image by sidecar name, pinned by digest (see ./images). */
    readonly sidecarImages: Readonly<Record<string, string>>;
    /**
     * `serve.allowedImages`: a container whose image one of these entries
     * admits carries it in the ALLOWED_IMAGE_LABEL label, which the policy
     * pack reads. Default [].
     */
    readonly allowedImages?: readonly string[];
    /** GPUs the server gets (0 for CPU targets). */
    readonly gpus: number;
    /** CloudWatch log group of the service. */
    readonly logGroupName: string;
    /** AWS region (awslogs, and the AWS SDKs in the task: instance metadata is blocked for tasks). */
    readonly region: string;
}

/**
 * Docker label of a container whose image comes from outside the stack's own
 * registry on purpose: the `serve.allowedImages` entry that admits it. The
 * policy pack's ecs-images-own-registry accepts such a container only when
 * the entry matches its image.
 */
export const ALLOWED_IMAGE_LABEL = "ml-infra.allowed-image";

// ---------------------------------------------------------------- builders

/** The allow-list label of a container running `image`, when an entry admits it. */
function allowedLabel(image: string, ctx: ContainerContext): Record<string, string> {
    const entry = allowedEntryFor(image, ctx.allowedImages ?? []);
    return entry === undefined ? {} : { [ALLOWED_IMAGE_LABEL]: entry };
}

/** A sidecar's image from the context; a missing one is a caller's mistake. */
function sidecarImage(sidecar: ResolvedSidecar, ctx: ContainerContext): string {
    const image = ctx.sidecarImages[sidecar.name];
    if (image === undefined) throw new Error(`sidecar ${sidecar.name} (${sidecar.kind}) has no image: the environment resolves one per sidecar`);
    return image;
}

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
    const image = sidecarImage(sidecar, ctx);
    return {
        name: sidecar.name,
        image,
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
            ...allowedLabel(image, ctx),
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
        secrets: secretsOf(service.secrets ?? {}),
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
        dockerLabels: { [ROLE_LABEL]: "server", "ml-infra.service": ctx.service, ...allowedLabel(ctx.image, ctx) },
    };

    const fetch: ContainerDefinition = {
        name: MODEL_FETCH_CONTAINER,
        image: ctx.modelFetchImage,
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
        dockerLabels: { [ROLE_LABEL]: "init", [BINDS_LABEL]: "", ...allowedLabel(ctx.modelFetchImage, ctx) },
    };

    return [server, fetch, ...sidecars.map((s) => sidecarContainer(service, s, ctx))];
}

/** Every `valueFrom` of the definitions' secrets, sorted and unique: what the execution role must be able to read, and nothing else. */
export function secretValueFroms(defs: readonly ContainerDefinition[]): string[] {
    return [...new Set(defs.flatMap((d) => (d.secrets ?? []).map((s) => s.valueFrom)))].sort();
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
