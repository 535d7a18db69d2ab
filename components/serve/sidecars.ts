/**
 * The containers of an inference task besides the server, by name, and the
 * sidecar catalogue: what each kind of sidecar runs, binds and needs (pure).
 * Sidecars are never essential, have no port mappings and bind to 127.0.0.1:
 * in awsvpc mode every container shares the task's network namespace, so a
 * sidecar on 127.0.0.1 is reachable from inside the task only.
 *
 * No image is named here: each kind names the build-stack image that
 * provides it (`buildImage`), and the environment deploys that image's digest
 * (serve.sidecarImages, or the build stack's output; ./images).
 */

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

// ---------------------------------------------------------------- images

export const SIDECAR_KINDS = ["metrics-exporter", "tensorboard", "minio", "model-sync", "log-router"] as const;
export type SidecarKind = (typeof SIDECAR_KINDS)[number];

/**
 * The sidecar kind whose image the model-fetch init container runs (the AWS
 * CLI image of model-sync): pinned as `serve.sidecarImages.model-sync`.
 */
export const MODEL_FETCH_KIND: SidecarKind = "model-sync";

/** What a sidecar waits for before it starts. */
export type StartAfter = "nothing" | "model-fetched" | "server-healthy";

export interface SidecarCatalogueEntry {
    readonly description: string;
    /**
     * The build stack's image that provides this sidecar (`images.<buildImage>`
     * of its outputs, repository `<prefix>/<buildImage>` in the stack's
     * registry). No image is named here: an environment deploys the digest the
     * build stack exports, or the one pinned in `serve.sidecarImages.<kind>`.
     */
    readonly buildImage: string;
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
        buildImage: "metrics-exporter",
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
        buildImage: "tensorboard",
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
        buildImage: "minio",
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
        buildImage: "model-sync",
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
        buildImage: "log-router",
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
    /** `image` as config sets it for this one sidecar; undefined: the stack's image of the kind (see ./images). */
    readonly image: string | undefined;
    readonly port: number | undefined;
    /** Every port it binds on 127.0.0.1. */
    readonly ports: readonly number[];
    readonly cpu: number;
    readonly memory: number;
    readonly environment: Readonly<Record<string, string>>;
    readonly secrets: Readonly<Record<string, string>>;
}

/** A sidecar as config declares it (`serve.services[].sidecars[]`, validated). */
export interface SidecarInput {
    readonly kind: SidecarKind;
    readonly name?: string;
    readonly image?: string;
    readonly port?: number;
    readonly cpu?: number;
    readonly memory?: number;
    readonly environment: Readonly<Record<string, string>>;
    readonly secrets: Readonly<Record<string, string>>;
}

export function resolveSidecar(sidecar: SidecarInput): ResolvedSidecar {
    const entry = SIDECAR_CATALOGUE[sidecar.kind];
    const port = entry.portConfigurable ? (sidecar.port ?? entry.defaultPort) : entry.defaultPort;
    return {
        kind: sidecar.kind,
        name: sidecar.name ?? sidecar.kind,
        image: sidecar.image,
        port,
        ports: entry.ports(port),
        cpu: sidecar.cpu ?? entry.cpu,
        memory: sidecar.memory ?? entry.memory,
        environment: sidecar.environment,
        secrets: sidecar.secrets,
    };
}
