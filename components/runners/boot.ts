/**
 * How a runner machine boots (pure): systemd units for buildkitd and its log
 * shipper, the boot script (docker, the BuildKit binaries from the image via
 * ECR, the server key from SSM, CDI on the gpu pool), the CloudWatch agent
 * config and the cloud-init user data that writes them all.
 */
import { stringify as toYaml } from "yaml";
import type { Pool } from "../shared/hardware";
import { shellQuote } from "./shell";
import { BOOTSTRAP_PATH, BUILDKITD_TOML_PATH, type BuildkitdOptions, NVIDIA_CDI_SPEC, TLS_PATHS, pinnedImageRefs, renderBuildkitdToml } from "./buildkitd";

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
    /** The buildkit image as resolved through the pull-through cache: `repo:tag@sha256:<64 hex>` (buildkitImageRef). */
    readonly image: string;
    /** SSM SecureString holding the server's private key. */
    readonly serverKeyParameter: string;
}

/** The buildkit image's tag and digest references; refuses anything but `repo:tag@sha256:<64 hex>`. */
function imageRefs(image: string): { readonly byTag: string; readonly byDigest: string } {
    const refs = pinnedImageRefs(image);
    if (!refs) throw new Error(`buildkit image ${image} is not repo:tag@sha256:<64 hex digits>; runners run a pinned digest only`);
    return refs;
}

/**
 * The boot script: docker, buildkitd binaries from the image via ECR, server
 * key from SSM, CDI (gpu), start. The image is pulled by its tag through the
 * cache first (ECR's pull-through cache cannot serve a first pull by digest of
 * an image it has not cached yet, aws/containers-roadmap#2837), then by its
 * digest, and only the digest is run: the boot fails if it cannot be pulled.
 */
export function bootstrapScript(o: BootstrapOptions): string {
    const refs = imageRefs(o.image);
    const lines = [
        "#!/bin/bash",
        `# Installs and starts buildkitd for the ml-infra ${o.pool} pool (generated).`,
        "set -euo pipefail",
        `export AWS_REGION=${shellQuote(o.region)}`,
        `REGISTRY=${shellQuote(o.registryHost)}`,
        `TAGGED=${shellQuote(refs.byTag)}`,
        `IMAGE=${shellQuote(refs.byDigest)}`,
        "command -v docker >/dev/null || dnf install -y docker",
        "systemctl enable --now docker",
        "for attempt in 1 2 3 4 5; do",
        '  aws ecr get-login-password | docker login --username AWS --password-stdin "$REGISTRY" && break',
        '  sleep $((attempt * 10))',
        "done",
        "# The tag first: it makes the pull-through cache fetch the image (a first pull by digest fails there).",
        "for attempt in 1 2 3; do",
        '  docker pull "$TAGGED" && break',
        '  sleep $((attempt * 10))',
        "done",
        "# Then exactly the digest, which is all that runs.",
        "pulled=no",
        "for attempt in 1 2 3 4 5; do",
        '  if docker pull "$IMAGE"; then pulled=yes; break; fi',
        '  sleep $((attempt * 10))',
        "done",
        'if [ "$pulled" != yes ]; then',
        '  echo "ml-buildkit-bootstrap: cannot pull $IMAGE (the pinned buildkit image); refusing to run anything else" >&2',
        "  exit 1",
        "fi",
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
        file("/etc/systemd/system/buildkitd-logs.service", renderUnit(logShipperUnit({ region: o.region, logGroupName: o.logGroupName, image: imageRefs(o.image).byDigest }))),
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
