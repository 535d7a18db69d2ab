/**
 * BuildKit on the runner machines (pure: no Pulumi resources).
 *
 * - `buildkitdConfig` / `renderBuildkitdToml`: the daemon config as a typed
 *   object and as TOML (mutual TLS on TCP, GC bounded by the pool's volume,
 *   max-parallelism, native platform only, registry mirrors pointing at the
 *   ECR pull-through cache, CDI for the gpu pool);
 * - `buildkitdUnit` / `logShipperUnit`: systemd units;
 * - `bootstrapScript` / `cloudInit`: the instance's user data;
 * - `builderName`, `buildxCreateCommands`, `multiNodeBuilderCommands`,
 *   `scaleUpCommand`, `waitHealthyCommand`, `certInstallCommands`: what CI
 *   runs before `pulumi up`.
 */
import { stringify as toYaml } from "yaml";
import { UPSTREAMS, parseImage, resolveThroughCache, type UpstreamKey } from "./pullthrough";
import type { Platform, Pool } from "./targets";

// -------------------------------------------------------------------- names

/** Name of the buildx builder CI creates for a pool (the TargetImage `builder`). */
export function builderName(pool: Pool): string {
    return `ml-${pool}`;
}

/** The multi-node builder: one amd64 node and one arm64 node. */
export const MULTIARCH_BUILDER = "ml-multiarch";

/** The one platform a pool builds natively (no emulation anywhere). */
export function poolPlatform(pool: Pool): Platform {
    return pool === "arm64" ? "linux/arm64" : "linux/amd64";
}

/** Where buildkitd reads its TLS files on the runner. */
export const TLS_PATHS = {
    ca: "/etc/buildkit/tls/ca.pem",
    cert: "/etc/buildkit/tls/server.pem",
    key: "/etc/buildkit/tls/server-key.pem",
} as const;

export const BUILDKITD_TOML_PATH = "/etc/buildkit/buildkitd.toml";
export const BUILDKIT_ROOT = "/var/lib/buildkit";
export const BOOTSTRAP_PATH = "/usr/local/sbin/ml-buildkit-bootstrap";
/** CDI spec the gpu pool generates at boot (nvidia-ctk). */
export const NVIDIA_CDI_SPEC = "/etc/cdi/nvidia.yaml";
/** Subnet of BuildKit's own bridge for build steps (kept clear of the usual VPC ranges). */
export const BUILD_BRIDGE_SUBNET = "172.28.0.0/16";

// ---------------------------------------------------------------------- TOML

/** A TOML value this writer supports (no floats, no dates: buildkitd needs neither). */
export type TomlValue = string | number | boolean | readonly string[] | TomlTable | readonly TomlTable[] | undefined;
export type TomlTable = { readonly [key: string]: TomlValue };

const BARE_KEY = /^[A-Za-z0-9_-]+$/;

function tomlKey(key: string): string {
    return BARE_KEY.test(key) ? key : tomlString(key, key);
}

function isTable(v: TomlValue): v is TomlTable {
    return typeof v === "object" && v !== null && !Array.isArray(v);
}

function isTableArray(v: TomlValue): v is readonly TomlTable[] {
    return Array.isArray(v) && v.length > 0 && v.every((e) => typeof e === "object" && e !== null);
}

const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;

/** A TOML basic string: JSON's escapes are TOML's, plus DEL, which TOML also requires escaped. */
function tomlString(s: string, at: string): string {
    if (LONE_SURROGATE.test(s)) throw new Error(`TOML: ${at} is not well-formed Unicode`);
    return JSON.stringify(s).replace(/\u007f/g, "\\u007f");
}

function tomlScalar(v: string | number | boolean | readonly string[], at: string): string {
    if (typeof v === "string") return tomlString(v, at);
    if (typeof v === "boolean") return String(v);
    if (typeof v === "number") {
        if (!Number.isSafeInteger(v)) throw new Error(`TOML: ${at} must be a safe integer, got ${v}`);
        return String(v);
    }
    return `[${v.map((s) => tomlString(s, at)).join(", ")}]`;
}

/**
 * Serialises a table to TOML: scalars first, then sub-tables, then arrays of
 * tables, each in insertion order. JSON string escapes are valid TOML basic strings.
 */
export function toToml(table: TomlTable, path: readonly string[] = []): string {
    const lines: string[] = [];
    const tables: Array<[string, TomlTable]> = [];
    const arrays: Array<[string, readonly TomlTable[]]> = [];
    for (const [key, value] of Object.entries(table)) {
        if (value === undefined) continue;
        if (isTable(value)) tables.push([key, value]);
        else if (isTableArray(value)) arrays.push([key, value]);
        else lines.push(`${tomlKey(key)} = ${tomlScalar(value as string | number | boolean | readonly string[], [...path, key].join("."))}`);
    }
    const blocks: string[] = [];
    if (lines.length > 0) blocks.push(lines.join("\n"));
    for (const [key, sub] of tables) {
        const subPath = [...path, key];
        const header = `[${subPath.map(tomlKey).join(".")}]`;
        const body = toToml(sub, subPath);
        const hasScalars = Object.values(sub).some((v) => v !== undefined && !isTable(v) && !isTableArray(v));
        // A table holding only sub-tables needs no header of its own (its children's headers define it).
        if (hasScalars || body.length === 0) blocks.push(body.length > 0 ? `${header}\n${body}` : header);
        else blocks.push(body);
    }
    for (const [key, items] of arrays) {
        const subPath = [...path, key];
        for (const item of items) {
            const body = toToml(item, subPath);
            blocks.push(`[[${subPath.map(tomlKey).join(".")}]]${body.length > 0 ? `\n${body}` : ""}`);
        }
    }
    return blocks.join("\n\n");
}

// ------------------------------------------------------------- buildkitd.toml

/** One BuildKit GC policy (BuildKit ≥ 0.17 field names; sizes in bytes). */
export type GcPolicy = {
    readonly all?: boolean;
    readonly filters?: readonly string[];
    readonly keepDuration?: string;
    readonly reservedSpace?: number;
    readonly maxUsedSpace?: number;
    readonly minFreeSpace?: number;
};

export type BuildkitdConfig = {
    readonly root: string;
    /** gpu pool only: lets a client ask for `--allow device` (CDI devices in RUN --device). */
    readonly "insecure-entitlements"?: readonly string[];
    readonly log: { readonly format: "json" | "text" };
    readonly grpc: {
        readonly address: readonly string[];
        readonly tls: { readonly cert: string; readonly key: string; readonly ca: string };
    };
    readonly cdi: { readonly disabled: boolean; readonly specDirs?: readonly string[] };
    readonly worker: {
        readonly oci: {
            readonly enabled: true;
            readonly platforms: readonly string[];
            readonly snapshotter: string;
            readonly "max-parallelism": number;
            readonly networkMode: "bridge";
            readonly bridgeSubnet: string;
            readonly gc: true;
            readonly reservedSpace: number;
            readonly maxUsedSpace: number;
            readonly minFreeSpace: number;
            readonly gcpolicy: readonly GcPolicy[];
        };
        readonly containerd: { readonly enabled: false };
    };
    readonly registry: { readonly [host: string]: { readonly mirrors: readonly string[] } };
};

const GIB = 1024 ** 3;

/** Disk kept for the OS, the AMI's own software and logs, per pool kind (the DLAMI is big). */
export const OS_RESERVE_GIB: Readonly<Record<Pool, number>> = { amd64: 20, arm64: 20, gpu: 80 };

/** What BuildKit may use on a volume: 80% of what the OS leaves, in bytes (never negative). */
export function gcBudgetBytes(pool: Pool, volumeGiB: number): number {
    return Math.max(0, Math.floor((volumeGiB - OS_RESERVE_GIB[pool]) * 0.8)) * GIB;
}

/**
 * GC policies bounded by the volume: short-lived local/cache-mount/git data
 * first, then anything older than 60 days, then everything down to the
 * budget. `maxUsedSpace` is the hard bound (what `keepBytes` used to be).
 */
export function gcPolicies(pool: Pool, volumeGiB: number): { worker: Required<Pick<GcPolicy, "reservedSpace" | "maxUsedSpace" | "minFreeSpace">>; policies: GcPolicy[] } {
    const budget = gcBudgetBytes(pool, volumeGiB);
    const tenth = Math.floor(budget / 10 / GIB) * GIB;
    const minFree = Math.max(10, Math.floor(volumeGiB / 10)) * GIB;
    return {
        worker: { reservedSpace: tenth, maxUsedSpace: budget, minFreeSpace: minFree },
        policies: [
            { filters: ["type==source.local", "type==exec.cachemount", "type==source.git.checkout"], keepDuration: "48h", maxUsedSpace: tenth },
            { keepDuration: "1440h", maxUsedSpace: budget },
            { all: true, reservedSpace: tenth, maxUsedSpace: budget, minFreeSpace: minFree },
        ],
    };
}

/** The upstream prefixes ECR pull-through rules use, mapped to their upstream keys. */
export function upstreamKeysOf(prefixes: readonly string[]): Set<UpstreamKey> {
    const keys = new Set<UpstreamKey>();
    for (const prefix of prefixes) {
        const upstream = UPSTREAMS.find((u) => u.prefix === prefix);
        if (!upstream) throw new Error(`unknown pull-through prefix "${prefix}"; known: ${UPSTREAMS.map((u) => u.prefix).join(", ")}`);
        keys.add(upstream.key);
    }
    return keys;
}

/**
 * Registry mirrors: every upstream with a pull-through rule is pulled via
 * `<registryHost>/<prefix>` (BuildKit ≥ 0.12 accepts a path in a mirror).
 * Keyed by the host a Dockerfile names (docker.io, quay.io ...), sorted.
 */
export function registryMirrors(registryHost: string, prefixes: readonly string[]): Record<string, { mirrors: string[] }> {
    const keys = upstreamKeysOf(prefixes);
    const out: Record<string, { mirrors: string[] }> = {};
    for (const upstream of UPSTREAMS) {
        if (!keys.has(upstream.key)) continue;
        out[upstream.hosts[0]] = { mirrors: [`${registryHost}/${upstream.prefix}`] };
    }
    return Object.fromEntries(Object.entries(out).sort(([a], [b]) => a.localeCompare(b)));
}

const ECR_HOST_RE = /^\d{12}\.dkr\.ecr(?:-fips)?\.[a-z0-9-]+\.amazonaws\.com(?:\.cn)?$/;

/**
 * Why runners could not pull the buildkit image, or undefined when they can:
 * it must be in an ECR registry already, or come from an upstream whose
 * pull-through rule is enabled (runners have no other way out).
 */
export function buildkitImageProblem(image: string, prefixes: readonly string[]): string | undefined {
    const host = parseImage(image).host;
    if (ECR_HOST_RE.test(host)) return undefined;
    const upstream = UPSTREAMS.find((u) => u.hosts.includes(host));
    if (!upstream) return `buildkit image ${image} is on ${host}, which runners cannot reach; mirror it into the ECR registry`;
    if (!upstreamKeysOf(prefixes).has(upstream.key)) {
        return `buildkit image ${image} needs the "${upstream.prefix}" pull-through rule (runners pull it through ECR); enable it or mirror the image into the ECR registry`;
    }
    return undefined;
}

/** The buildkit image as the runner pulls it: through the pull-through cache, or as is when already in ECR. */
export function buildkitImageRef(image: string, registryHost: string, prefixes: readonly string[]): string {
    const problem = buildkitImageProblem(image, prefixes);
    if (problem) throw new Error(problem);
    return resolveThroughCache(image, registryHost, upstreamKeysOf(prefixes));
}

export interface BuildkitdOptions {
    readonly pool: Pool;
    readonly port: number;
    readonly volumeGiB: number;
    readonly maxParallelism: number;
    readonly registryHost: string;
    /** Pull-through prefixes with a rule (ecr-public, quay, docker-hub, github). */
    readonly pullThroughPrefixes: readonly string[];
}

/** buildkitd.toml as a typed object. */
export function buildkitdConfig(o: BuildkitdOptions): BuildkitdConfig {
    const gc = gcPolicies(o.pool, o.volumeGiB);
    const gpu = o.pool === "gpu";
    return {
        root: BUILDKIT_ROOT,
        "insecure-entitlements": gpu ? ["device"] : undefined,
        log: { format: "json" },
        grpc: {
            // TLS applies to the TCP listener; the unix socket is for buildctl on the box (via SSM).
            address: [`tcp://0.0.0.0:${o.port}`, "unix:///run/buildkit/buildkitd.sock"],
            tls: { cert: TLS_PATHS.cert, key: TLS_PATHS.key, ca: TLS_PATHS.ca },
        },
        cdi: gpu ? { disabled: false, specDirs: ["/etc/cdi", "/var/run/cdi"] } : { disabled: true },
        worker: {
            oci: {
                enabled: true,
                // Native only: no QEMU binaries are installed, and other platforms are refused.
                platforms: [poolPlatform(o.pool)],
                snapshotter: "overlayfs",
                "max-parallelism": o.maxParallelism,
                // Build steps get their own network namespace: with IMDS hop limit 1 they cannot read instance credentials.
                networkMode: "bridge",
                bridgeSubnet: BUILD_BRIDGE_SUBNET,
                gc: true,
                reservedSpace: gc.worker.reservedSpace,
                maxUsedSpace: gc.worker.maxUsedSpace,
                minFreeSpace: gc.worker.minFreeSpace,
                gcpolicy: gc.policies,
            },
            containerd: { enabled: false },
        },
        registry: registryMirrors(o.registryHost, o.pullThroughPrefixes),
    };
}

export function renderBuildkitdToml(o: BuildkitdOptions): string {
    return `# buildkitd for the ml-infra ${o.pool} pool (generated)\n${toToml(buildkitdConfig(o))}\n`;
}

// ---------------------------------------------------------------- systemd

export type SystemdUnit = {
    readonly Unit: ReadonlyArray<readonly [string, string]>;
    readonly Service: ReadonlyArray<readonly [string, string]>;
    readonly Install: ReadonlyArray<readonly [string, string]>;
};

export function renderUnit(unit: SystemdUnit): string {
    return (["Unit", "Service", "Install"] as const)
        .map((section) => [`[${section}]`, ...unit[section].map(([k, v]) => `${k}=${v}`)].join("\n"))
        .join("\n\n")
        .concat("\n");
}

/** buildkitd as a systemd service. */
export function buildkitdUnit(pool: Pool): SystemdUnit {
    return {
        Unit: [
            ["Description", `BuildKit daemon (ml-infra ${pool} pool, mTLS)`],
            ["Documentation", "https://github.com/moby/buildkit"],
            ["After", "network-online.target"],
            ["Wants", "network-online.target"],
        ],
        Service: [
            ["Type", "simple"],
            ["ExecStart", `/usr/local/bin/buildkitd --config ${BUILDKITD_TOML_PATH}`],
            ["Restart", "always"],
            ["RestartSec", "5"],
            ["Delegate", "yes"],
            ["KillMode", "mixed"],
            ["LimitNOFILE", "1048576"],
            ["TasksMax", "infinity"],
        ],
        Install: [["WantedBy", "multi-user.target"]],
    };
}

/**
 * Ships buildkitd's journal to the pool's log group: docker's awslogs driver
 * (instance role, logs VPC endpoint) reading `cat` in the buildkit image.
 */
export function logShipperUnit(o: { readonly region: string; readonly logGroupName: string; readonly image: string }): SystemdUnit {
    const pipeline = [
        "journalctl -u buildkitd.service -u cloud-final.service -f -o short-iso --no-pager",
        `exec docker run --rm -i --name buildkitd-logs --network none --log-driver awslogs --log-opt awslogs-region=${o.region} --log-opt awslogs-group=${o.logGroupName} --log-opt awslogs-stream=%H --entrypoint /bin/cat ${o.image}`,
    ].join(" | ");
    return {
        Unit: [
            ["Description", "Ship buildkitd logs to CloudWatch Logs"],
            ["After", "docker.service buildkitd.service"],
            ["Requires", "docker.service"],
        ],
        Service: [
            ["ExecStartPre", "-/usr/bin/docker rm -f buildkitd-logs"],
            ["ExecStart", `/bin/sh -c "${pipeline}"`],
            ["Restart", "always"],
            ["RestartSec", "10"],
        ],
        Install: [["WantedBy", "multi-user.target"]],
    };
}

// --------------------------------------------------------------- user data

/** Single-quotes a value for a POSIX shell. */
export function shellQuote(value: string): string {
    return `'${value.replace(/'/g, `'\\''`)}'`;
}

/** Binaries taken from the buildkit image (no QEMU: builds are native). */
export const BUILDKIT_BINARIES = [
    "buildctl",
    "buildkit-cni-bridge",
    "buildkit-cni-firewall",
    "buildkit-cni-host-local",
    "buildkit-cni-loopback",
    "buildkit-runc",
    "buildkitd",
] as const;

/** CloudWatch namespace of the runners' own metrics (disk use of the BuildKit volume, memory). */
export const RUNNER_METRICS_NAMESPACE = "ML-Infra/BuildRunners";
export const CLOUDWATCH_AGENT_CONFIG_PATH = "/opt/aws/amazon-cloudwatch-agent/etc/ml-infra.json";

/**
 * CloudWatch agent config: disk use of the root volume (which holds
 * /var/lib/buildkit) and memory, per Auto Scaling group, every minute.
 */
export function cloudWatchAgentConfig(): Record<string, unknown> {
    return {
        agent: { metrics_collection_interval: 60 },
        metrics: {
            namespace: RUNNER_METRICS_NAMESPACE,
            append_dimensions: { AutoScalingGroupName: "${aws:AutoScalingGroupName}" },
            aggregation_dimensions: [["AutoScalingGroupName"]],
            metrics_collected: {
                disk: { measurement: ["used_percent"], resources: ["/"], drop_device: true },
                mem: { measurement: ["used_percent"] },
            },
        },
    };
}

export interface BootstrapOptions {
    readonly pool: Pool;
    readonly region: string;
    readonly registryHost: string;
    /** The buildkit image as resolved through the pull-through cache. */
    readonly image: string;
    /** SSM SecureString holding the server's private key. */
    readonly serverKeyParameter: string;
}

/** The boot script: docker, buildkitd binaries from the image via ECR, server key from SSM, CDI (gpu), start. */
export function bootstrapScript(o: BootstrapOptions): string {
    const lines = [
        "#!/bin/bash",
        `# Installs and starts buildkitd for the ml-infra ${o.pool} pool (generated).`,
        "set -euo pipefail",
        `export AWS_REGION=${shellQuote(o.region)}`,
        `REGISTRY=${shellQuote(o.registryHost)}`,
        `IMAGE=${shellQuote(o.image)}`,
        "command -v docker >/dev/null || dnf install -y docker",
        "systemctl enable --now docker",
        "for attempt in 1 2 3 4 5; do",
        '  aws ecr get-login-password | docker login --username AWS --password-stdin "$REGISTRY" && docker pull "$IMAGE" && break',
        '  sleep $((attempt * 10))',
        "done",
        'cid=$(docker create "$IMAGE")',
        `for bin in ${BUILDKIT_BINARIES.join(" ")}; do`,
        '  docker cp "$cid:/usr/bin/$bin" "/usr/local/bin/$bin"',
        "done",
        'docker rm "$cid" >/dev/null',
        "install -d -m 0700 /etc/buildkit/tls",
        `(umask 077; aws ssm get-parameter --name ${shellQuote(o.serverKeyParameter)} --with-decryption --query Parameter.Value --output text > ${TLS_PATHS.key})`,
    ];
    if (o.pool === "gpu") {
        lines.push("install -d /etc/cdi", `nvidia-ctk cdi generate --output=${NVIDIA_CDI_SPEC}`);
    }
    lines.push(
        "command -v amazon-cloudwatch-agent-ctl >/dev/null || dnf install -y amazon-cloudwatch-agent",
        `amazon-cloudwatch-agent-ctl -a fetch-config -m ec2 -s -c file:${CLOUDWATCH_AGENT_CONFIG_PATH}`,
    );
    lines.push("systemctl daemon-reload", "systemctl enable --now buildkitd.service buildkitd-logs.service", "");
    return lines.join("\n");
}

export interface CloudInitOptions extends BuildkitdOptions, Omit<BootstrapOptions, "pool" | "registryHost"> {
    /** PEM of the CA that signs the clients' certificates. */
    readonly caCertPem: string;
    /** PEM of the server certificate (its SANs include the load balancer's DNS name). */
    readonly serverCertPem: string;
    readonly logGroupName: string;
}

export interface WriteFile {
    readonly path: string;
    readonly permissions: string;
    readonly owner: string;
    readonly content: string;
}

/** The cloud-config as a typed object (files sorted by path). */
export function cloudConfig(o: CloudInitOptions): { write_files: WriteFile[]; runcmd: string[][] } {
    const file = (path: string, content: string, permissions = "0644"): WriteFile => ({ path, permissions, owner: "root:root", content });
    const files = [
        file(BUILDKITD_TOML_PATH, renderBuildkitdToml(o)),
        file(TLS_PATHS.ca, o.caCertPem),
        file(TLS_PATHS.cert, o.serverCertPem),
        file("/etc/systemd/system/buildkitd.service", renderUnit(buildkitdUnit(o.pool))),
        file("/etc/systemd/system/buildkitd-logs.service", renderUnit(logShipperUnit({ region: o.region, logGroupName: o.logGroupName, image: o.image }))),
        file(BOOTSTRAP_PATH, bootstrapScript(o), "0755"),
        file(CLOUDWATCH_AGENT_CONFIG_PATH, `${JSON.stringify(cloudWatchAgentConfig(), null, 2)}\n`),
    ].sort((a, b) => a.path.localeCompare(b.path));
    return { write_files: files, runcmd: [[BOOTSTRAP_PATH]] };
}

/** User data (cloud-init) text; the launch template takes it base64-encoded. Contains no secret. */
export function cloudInit(o: CloudInitOptions): string {
    const text = `#cloud-config\n${toYaml(cloudConfig(o), { lineWidth: 0 })}`;
    const bytes = Buffer.byteLength(text, "utf8");
    if (bytes > MAX_USER_DATA_BYTES) throw new Error(`user data is ${bytes} bytes; EC2 accepts at most ${MAX_USER_DATA_BYTES}`);
    return text;
}

/** EC2's limit on user data (before base64). */
export const MAX_USER_DATA_BYTES = 16384;

// ---------------------------------------------------------------------- CI

/** Where CI keeps a pool's client certificate files. */
export function certDir(pool: Pool): string {
    return `$HOME/.ml-infra/buildkit/${pool}`;
}

/** Shell commands that write a pool's CA, client certificate and key from the stack output. */
export function certInstallCommands(o: { readonly pool: Pool; readonly stack: string; readonly output: string }): string[] {
    const dir = certDir(o.pool);
    const field = (key: string, file: string) =>
        `pulumi stack output --stack ${shellQuote(o.stack)} --show-secrets --json ${shellQuote(o.output)} | jq -r ${shellQuote(`.${o.pool}.${key}`)} > "${dir}/${file}"`;
    return [`install -d -m 0700 "${dir}"`, field("caCert", "ca.pem"), field("clientCert", "cert.pem"), `(umask 077; ${field("clientKey", "key.pem")})`];
}

export interface BuilderNode {
    readonly pool: Pool;
    /** `tcp://<nlb dns>:<port>` */
    readonly endpoint: string;
    /** TLS server name (the load balancer's DNS name). */
    readonly serverName: string;
}

function driverOpts(node: BuilderNode): string {
    const dir = certDir(node.pool);
    return `"cacert=${dir}/ca.pem,cert=${dir}/cert.pem,key=${dir}/key.pem,servername=${node.serverName}"`;
}

/** Recreates one pool's builder (`ml-<pool>`) with the remote driver and mTLS. */
export function buildxCreateCommands(node: BuilderNode): string[] {
    const name = builderName(node.pool);
    return [
        `docker buildx rm ${name} >/dev/null 2>&1 || true`,
        `docker buildx create --name ${name} --driver remote --platform ${poolPlatform(node.pool)} --driver-opt ${driverOpts(node)} ${node.endpoint}`,
    ];
}

/** The multi-node builder: one node per pool (amd64 and arm64), each building its own platform natively. */
export function multiNodeBuilderCommands(nodes: readonly BuilderNode[]): string[] {
    if (nodes.length < 2) throw new Error("a multi-node builder needs at least two nodes");
    const pools = nodes.map((n) => n.pool);
    if (new Set(pools.map(poolPlatform)).size !== nodes.length) {
        throw new Error(`multi-node builder nodes must build different platforms; got pools ${pools.join(", ")}`);
    }
    const commands = [`docker buildx rm ${MULTIARCH_BUILDER} >/dev/null 2>&1 || true`];
    nodes.forEach((node, i) => {
        const append = i === 0 ? "" : " --append";
        commands.push(
            `docker buildx create --name ${MULTIARCH_BUILDER}${append} --node ${MULTIARCH_BUILDER}-${node.pool} --driver remote --platform ${poolPlatform(node.pool)} --driver-opt ${driverOpts(node)} ${node.endpoint}`,
        );
    });
    return commands;
}

/** Raises the pool to one instance unless it already has capacity (never scales a busy pool in). */
export function scaleUpCommand(o: { readonly region: string; readonly autoScalingGroupName: string; readonly desired?: number }): string {
    const desired = o.desired ?? 1;
    const group = shellQuote(o.autoScalingGroupName);
    const current = `aws autoscaling describe-auto-scaling-groups --region ${o.region} --auto-scaling-group-names ${group} --query 'AutoScalingGroups[0].DesiredCapacity' --output text`;
    return `[ "$(${current})" -ge ${desired} ] || aws autoscaling set-desired-capacity --region ${o.region} --auto-scaling-group-name ${group} --desired-capacity ${desired}`;
}

/** Waits (up to `timeoutSeconds`, then fails) until the pool's target group has a healthy target. POSIX sh. */
export function waitHealthyCommand(o: { readonly region: string; readonly targetGroupArn: string; readonly timeoutSeconds?: number }): string {
    const timeout = o.timeoutSeconds ?? 1200;
    const query = `length(TargetHealthDescriptions[?TargetHealth.State=='healthy'])`;
    const healthy = `aws elbv2 describe-target-health --region ${o.region} --target-group-arn ${shellQuote(o.targetGroupArn)} --query "${query}" --output text`;
    return (
        `deadline=$(( $(date +%s) + ${timeout} )); ` +
        `until [ "$(${healthy})" -ge 1 ] 2>/dev/null; do ` +
        `[ "$(date +%s)" -lt "$deadline" ] || { echo "no healthy buildkitd target after ${timeout}s" >&2; exit 1; }; ` +
        "sleep 15; done"
    );
}
