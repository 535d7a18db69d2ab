/**
 * What CI runs to use a pool (pure): the buildx builder names and the
 * commands that raise a pool, wait for it, write its client certificate and
 * create its remote-driver builder.
 */
import { type Pool, poolPlatform } from "../shared/hardware";
import { shellQuote } from "./shell";

/** Name of the buildx builder CI creates for a pool (the TargetImage `builder`). */
export function builderName(pool: Pool): string {
    return `ml-${pool}`;
}

/** The multi-node builder: one amd64 node and one arm64 node. */
export const MULTIARCH_BUILDER = "ml-multiarch";

/** Where CI keeps a pool's client certificate files. */
export function certDir(pool: Pool): string {
    return `$HOME/.ml-infra/buildkit/${pool}`;
}

/** Local port of a pool's SSM tunnel on the CI machine (one per pool, so all pools can be open at once). */
export const TUNNEL_PORTS: Readonly<Record<Pool, number>> = { amd64: 12341, arm64: 12342, gpu: 12343 };

/**
 * Shell commands that write a pool's CA (plain output `runners`), client
 * certificate and key (secret output `runnerCredentials`, read with
 * --show-secrets; the key file is made with mode 0600).
 */
export function certInstallCommands(o: { readonly pool: Pool; readonly stack: string }): string[] {
    const dir = certDir(o.pool);
    const read = (output: string, key: string, secret: boolean) =>
        `pulumi stack output --stack ${shellQuote(o.stack)}${secret ? " --show-secrets" : ""} --json ${output} | jq -er ${shellQuote(`.${o.pool}.${key}`)}`;
    return [
        `install -d -m 0700 "${dir}"`,
        `${read("runners", "caCert", false)} > "${dir}/ca.pem"`,
        `${read("runnerCredentials", "clientCert", true)} > "${dir}/cert.pem"`,
        `(umask 077; ${read("runnerCredentials", "clientKey", true)} > "${dir}/key.pem")`,
    ];
}

/**
 * Opens the SSM tunnel to a pool from outside the VPC (GitHub-hosted CI): an
 * AWS Systems Manager port-forwarding session through one of the pool's
 * in-service runners (they run the SSM agent; no inbound rule is involved) to
 * the pool's load balancer, on 127.0.0.1:<local port> here. The session runs
 * in the background (pid and log in the pool's certificate directory); the
 * commands fail unless the port answers within `timeoutSeconds`. Needs the
 * AWS CLI with the session-manager-plugin. bash.
 */
export function tunnelCommands(o: {
    readonly pool: Pool;
    readonly region: string;
    readonly autoScalingGroupName: string;
    readonly host: string;
    readonly port: number;
    readonly localPort: number;
    readonly timeoutSeconds?: number;
}): string[] {
    const dir = certDir(o.pool);
    const group = shellQuote(o.autoScalingGroupName);
    const query = "AutoScalingGroups[0].Instances[?LifecycleState=='InService' && HealthStatus=='Healthy'].InstanceId | [0]";
    const parameters = JSON.stringify({ host: [o.host], portNumber: [String(o.port)], localPortNumber: [String(o.localPort)] });
    const timeout = o.timeoutSeconds ?? 120;
    return [
        `instance="$(aws autoscaling describe-auto-scaling-groups --region ${o.region} --auto-scaling-group-names ${group} --query ${shellQuote(query)} --output text)"`,
        `[ -n "$instance" ] && [ "$instance" != None ] || { echo "pool ${o.pool} has no healthy in-service runner to tunnel through" >&2; exit 1; }`,
        `install -d -m 0700 "${dir}"`,
        `nohup aws ssm start-session --region ${o.region} --target "$instance" --document-name AWS-StartPortForwardingSessionToRemoteHost --parameters ${shellQuote(parameters)} > "${dir}/tunnel.log" 2>&1 &`,
        `echo $! > "${dir}/tunnel.pid"`,
        `deadline=$(( $(date +%s) + ${timeout} )); until (exec 3<>/dev/tcp/127.0.0.1/${o.localPort}) 2>/dev/null; do [ "$(date +%s)" -lt "$deadline" ] || { echo "the SSM tunnel to pool ${o.pool} did not open on 127.0.0.1:${o.localPort} within ${timeout}s" >&2; cat "${dir}/tunnel.log" >&2; exit 1; }; sleep 2; done`,
    ];
}

export interface BuilderNode {
    readonly pool: Pool;
    /** `tcp://<nlb dns>:<port>` */
    readonly endpoint: string;
    /** TLS server name (the load balancer's DNS name). */
    readonly serverName: string;
    /** The builder's name. Default `builderName(pool)`. */
    readonly builder?: string;
    /** Absolute directory of ca.pem, cert.pem and key.pem. Default `certDir(pool)`. */
    readonly certDir?: string;
}

function driverOpts(node: BuilderNode): string {
    const dir = node.certDir ?? certDir(node.pool);
    return `"cacert=${dir}/ca.pem,cert=${dir}/cert.pem,key=${dir}/key.pem,servername=${node.serverName}"`;
}

/**
 * Recreates one pool's builder (`ml-<pool>`) with the remote driver and mTLS.
 * `buildx` is how the commands call buildx: the docker CLI plugin (default) or a standalone binary.
 */
export function buildxCreateCommands(node: BuilderNode, buildx = "docker buildx"): string[] {
    const name = node.builder ?? builderName(node.pool);
    return [
        `${buildx} rm ${name} >/dev/null 2>&1 || true`,
        `${buildx} create --name ${name} --driver remote --platform ${poolPlatform(node.pool)} --driver-opt ${driverOpts(node)} ${node.endpoint}`,
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
