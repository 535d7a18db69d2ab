/**
 * BuildRunnerPool: one pool of BuildKit machines (amd64, arm64 or gpu) on EC2.
 *
 * - launch template: AMI from an SSM public parameter (`resolve:ssm:`), IMDSv2
 *   required with hop limit 1, no public IP, no SSH key, encrypted gp3 root
 *   volume, instance profile; cloud-init user data that installs buildkitd and
 *   runs it under systemd with mutual TLS (./boot renders it; no secret in
 *   it: the server key is an SSM SecureString the instance reads at boot);
 * - Auto Scaling group: min 0, max from config, spot over several instance
 *   types with an on-demand base, capacity rebalance; `desiredCapacity` is
 *   owned by CI and the idle alarm, never by `pulumi up`;
 * - an internal Network Load Balancer on the buildkitd port (the stable
 *   endpoint); its security group admits only the configured CI sources and
 *   the runners' security group admits only the load balancer;
 * - scale to zero: an alarm on "capacity > 0 and no connection" for N minutes,
 *   and optional scheduled actions;
 * - IAM: ECR push/pull on the project's repositories only, pull-through under
 *   `<prefix>/*`, its own log group and key parameter, SSM core.
 *
 * The constructor composes named parts (the private load balancer, the TLS
 * material, the role, the launch template with its group, scale to zero);
 * what they decide is computed by pure functions (./buildkitd, ./boot, ./ci,
 * ./iam and the helpers below) so tests call them directly. The config was
 * validated when the program started (./checks).
 */
import * as aws from "@pulumi/aws";
import * as pulumi from "@pulumi/pulumi";
import { type Platform, type Pool, poolPlatform } from "../shared/hardware";
import { parseRegistryHost } from "../shared/image-refs";
import { IMDSV2_ONLY, encryptedRootVolume, privateNetworkInterfaces } from "../shared/launch-template";
import { privateLoadBalancer } from "../shared/private-load-balancer";
import { dataResourceOptions } from "../shared/protection";
import { cloudInit } from "./boot";
import { buildkitImageRef, upstreamKeysOf } from "./buildkitd";
import {
    type BuilderNode,
    MULTIARCH_BUILDER,
    builderName,
    buildxCreateCommands,
    certInstallCommands,
    multiNodeBuilderCommands,
    TUNNEL_PORTS,
    tunnelCommands,
    scaleUpCommand,
    waitHealthyCommand,
} from "./ci";
import { cloudWatchAgentServerPolicyArn, ec2AssumeRolePolicy, runnerPolicy, ssmManagedInstanceCoreArn } from "./iam";
import type { PoolConfig, RunnersConfig } from "./schema";
import { type RunnerTls, runnerTls } from "./tls";

// ------------------------------------------------------------ pure helpers

/** Longest component name: `<name>-nlb` / `<name>-tg` plus Pulumi's 8-character suffix must fit AWS's 32. */
export const MAX_POOL_NAME_LENGTH = 20;
/** Root device of the AL2023 and DLAMI (AL2023) images. */
export const ROOT_DEVICE = "/dev/xvda";
/** NLB TCP idle timeout: long enough for quiet stretches of a multi-hour build. */
export const TCP_IDLE_TIMEOUT_SECONDS = 3600;
/** Boot (docker, image pull, CDI) before the load balancer's health check counts. */
export const HEALTH_CHECK_GRACE_SECONDS = 600;

/** One ingress source of the load balancer's security group. */
export interface IngressSource {
    /** Stable slug for the rule's resource name (independent of order in config). */
    readonly key: string;
    readonly cidrIpv4?: string;
    readonly referencedSecurityGroupId?: string;
    readonly description: string;
}

/** The CI sources as ingress rules, sorted by key. */
export function ciIngressSources(ci: RunnersConfig["ciSources"]): IngressSource[] {
    const sources: IngressSource[] = [
        ...ci.securityGroupIds.map((id) => ({ key: id, referencedSecurityGroupId: id, description: `buildkitd from CI security group ${id}` })),
        ...ci.cidrs.map((c) => ({ key: `cidr-${c.replace(/[./]/g, "-")}`, cidrIpv4: c, description: `buildkitd from CI range ${c}` })),
    ];
    const unique = new Map(sources.map((s) => [s.key, s]));
    return [...unique.values()].sort((a, b) => a.key.localeCompare(b.key));
}

/** 1 for a minute when the pool has capacity and nobody is connected, else 0. */
export const IDLE_EXPRESSION = "IF(FILL(desired, 0) > 0 AND FILL(flows, 0) == 0, 1, 0)";

/**
 * Metric math for the idle alarm: the load balancer's active flows and the
 * group's desired capacity, per minute. Alarming on "capacity and no flows"
 * (rather than "no flows") means a pool that CI just raised is not scaled
 * back in while it boots, and a pool at zero is never "in alarm".
 */
export interface MetricQuery<T> {
    readonly id: string;
    readonly returnData: boolean;
    readonly expression?: string;
    readonly label?: string;
    readonly metric?: {
        readonly namespace: string;
        readonly metricName: string;
        readonly stat: string;
        readonly period: number;
        readonly dimensions: Record<string, T>;
    };
}

export function idleAlarmQueries<T>(o: { readonly loadBalancer: T; readonly autoScalingGroupName: T }, periodSeconds = 60): MetricQuery<T>[] {
    return [
        {
            id: "flows",
            returnData: false,
            metric: { namespace: "AWS/NetworkELB", metricName: "ActiveFlowCount", stat: "Maximum", period: periodSeconds, dimensions: { LoadBalancer: o.loadBalancer } },
        },
        {
            id: "desired",
            returnData: false,
            metric: {
                namespace: "AWS/AutoScaling",
                metricName: "GroupDesiredCapacity",
                stat: "Maximum",
                period: periodSeconds,
                dimensions: { AutoScalingGroupName: o.autoScalingGroupName },
            },
        },
        { id: "idle", expression: IDLE_EXPRESSION, label: "pool has capacity and no connection", returnData: true },
    ];
}

/** Tags of the group, propagated to its instances, sorted by key. */
export function asgTags(tags: Readonly<Record<string, string>>): Array<{ key: string; value: string; propagateAtLaunch: boolean }> {
    return Object.keys(tags)
        .sort()
        .map((key) => ({ key, value: tags[key], propagateAtLaunch: true }));
}

/** What the runners stack exports per pool in its plain `runners` output; CI and the build stack read it. */
export interface RunnerSummary {
    readonly pool: Pool;
    readonly platform: Platform;
    /** buildx builder name (TargetImage `builder`). */
    readonly builder: string;
    /** `tcp://<nlb dns>:<port>`: for callers in the VPC. */
    readonly endpoint: string;
    /** TLS server name: the load balancer's DNS name (in the server certificate's SANs, with 127.0.0.1 for the tunnel). */
    readonly serverName: string;
    /** Local port of the SSM tunnel on the CI machine. */
    readonly tunnelPort: number;
    /** Root volume, GiB (a source build needs 200). */
    readonly volumeGiB: number;
    readonly autoScalingGroupName: string;
    readonly targetGroupArn: string;
    /** The CA that signed the server and client certificates (public). */
    readonly caCert: string;
    /** Raises the pool to one instance unless it already has capacity. */
    readonly scaleUpCommand: string;
    /** Waits for a healthy target behind the endpoint (fails after 20 minutes). */
    readonly waitHealthyCommand: string;
    /** Writes ca.pem (from this output), cert.pem and key.pem (from `runnerCredentials`, with --show-secrets; key mode 0600). */
    readonly certInstallCommands: readonly string[];
    /** Opens the SSM tunnel to the pool on 127.0.0.1:<tunnelPort> (bash). */
    readonly tunnelCommands: readonly string[];
    /** (Re)creates the builder on the tunnel: what CI outside the VPC runs. */
    readonly buildxCreateCommands: readonly string[];
    /** (Re)creates the builder on the load balancer's endpoint: for callers in the VPC. */
    readonly inVpcBuildxCreateCommands: readonly string[];
}

/** What the runners stack exports per pool in its secret `runnerCredentials` output. */
export interface RunnerCredentials {
    readonly clientCert: string;
    readonly clientKey: string;
}

// ---------------------------------------------------------------- component

export interface BuildRunnerPoolArgs {
    /** Pool kind: `amd64`, `arm64` or `gpu`; its config is `runners.pools[pool]`, which must exist. Required. */
    readonly pool: Pool;
    /** The validated `build.runners` section (port, CI sources, buildkit image, schedule, pools). Required. */
    readonly runners: RunnersConfig;
    /** VPC of the runners (PrivateNetwork.vpcId). Required. */
    readonly vpcId: pulumi.Input<string>;
    /** Private subnets, at least two zones (PrivateNetwork.privateSubnetIds). Required. */
    readonly privateSubnetIds: pulumi.Input<pulumi.Input<string>[]>;
    /** The project's repository namespace (`registry.repositoryPrefix`): ECR push/pull is scoped to `<prefix>/*`. Required. */
    readonly repositoryPrefix: string;
    /** Pull-through prefixes with a rule (e.g. ecr-public, quay, docker-hub, github): registry mirrors and IAM. Required (may be empty). */
    readonly pullThroughPrefixes: readonly string[];
    /** `<account>.dkr.ecr.<region>.amazonaws.com` (ImageRegistry.registryHost). Required. */
    readonly registryHost: pulumi.Input<string>;
    /** Tags put on every taggable resource (cost allocation). Required. */
    readonly tags: Readonly<Record<string, string>>;
    /** Protect and retain the pool's log group (config `protectData`). Default true. */
    readonly protectData?: boolean;
    /** Stack CI reads the certificates from (outputs `runners` and `runnerCredentials`). Default: this stack, `<organization>/<project>/<stack>`. */
    readonly outputStack?: string;
}

export class BuildRunnerPool extends pulumi.ComponentResource {
    public readonly pool: Pool;
    public readonly platform: Platform;
    /** buildx builder name CI creates for this pool (TargetImage `builder`). */
    public readonly builder: string;
    /** `tcp://<nlb dns>:<port>` */
    public readonly endpoint: pulumi.Output<string>;
    public readonly node: pulumi.Output<BuilderNode>;
    public readonly autoScalingGroup: aws.autoscaling.Group;
    public readonly targetGroup: aws.lb.TargetGroup;
    public readonly loadBalancer: aws.lb.LoadBalancer;
    public readonly launchTemplate: aws.ec2.LaunchTemplate;
    public readonly role: aws.iam.Role;
    public readonly caCertPem: pulumi.Output<string>;
    /** Secret. */
    public readonly clientCertPem: pulumi.Output<string>;
    /** Secret. */
    public readonly clientKeyPem: pulumi.Output<string>;
    /** Plain: the `runners` output's entry. */
    public readonly summary: pulumi.Output<RunnerSummary>;
    /** Secret: the `runnerCredentials` output's entry. */
    public readonly credentials: pulumi.Output<RunnerCredentials>;

    constructor(name: string, args: BuildRunnerPoolArgs, opts?: pulumi.ComponentResourceOptions) {
        super("ml-infra:build:BuildRunnerPool", name, {}, opts);
        const { pool, runners } = args;
        const config = this.poolConfig(name, args);
        const port = runners.port;
        this.pool = pool;
        this.platform = poolPlatform(pool);
        this.builder = builderName(pool);
        const tags = { ...args.tags, "ml-infra:pool": pool };
        const tagged = (role: string) => ({ ...tags, Name: `${name}-${role}` });
        const scope = `/${pulumi.getProject()}/${pulumi.getStack()}/buildkit/${name}`;
        const registry = pulumi.output(args.registryHost).apply(parseRegistryHost);

        const logGroup = new aws.cloudwatch.LogGroup(
            `${name}-logs`,
            { name: scope, retentionInDays: runners.logRetentionDays, tags: tagged("logs") },
            { parent: this, ...dataResourceOptions(args.protectData ?? true) },
        );

        // ------------------------------------------------ the endpoint: CI -> NLB -> runners
        const endpoint = this.endpointParts(name, args, tagged);
        this.loadBalancer = endpoint.loadBalancer;
        this.targetGroup = endpoint.targetGroup;
        const dnsName = this.loadBalancer.dnsName;

        // ------------------------------------------------------------- mutual TLS
        // The name clients dial (the load balancer) must be in the server certificate.
        const certificates = runnerTls(this, name, {
            validityDays: runners.certificateValidityDays,
            serverDnsNames: pulumi.output(dnsName).apply((dns) => [dns, "localhost"]),
            serverIpAddresses: ["127.0.0.1"],
        });
        const serverKeyParam = new aws.ssm.Parameter(
            `${name}-server-key-param`,
            {
                name: `${scope}/server-key`,
                type: "SecureString",
                value: certificates.serverKeyPem,
                description: `TLS key of the ${pool} buildkitd servers (read at boot)`,
                tags: tagged("server-key-param"),
            },
            { parent: this },
        );

        // ---------------------------------------------------------------- IAM
        this.role = this.runnerRole(name, args, registry, logGroup.arn, serverKeyParam.arn, tagged);
        const profile = new aws.iam.InstanceProfile(`${name}-profile`, { role: this.role.name, tags: tagged("profile") }, { parent: this });

        // ------------------------------------------- launch template and Auto Scaling group
        const machines = this.machines(name, args, config, { certificates, logGroupName: logGroup.name, profileArn: profile.arn, securityGroupId: endpoint.runnerSecurityGroup.id, scope, tagged });
        this.launchTemplate = machines.launchTemplate;
        this.autoScalingGroup = machines.autoScalingGroup;
        const asgName = this.autoScalingGroup.name;
        this.scaleToZero(name, runners, config, asgName, tagged);

        // ------------------------------------------------------------- outputs
        this.endpoint = pulumi.interpolate`tcp://${dnsName}:${port}`;
        this.node = pulumi.output(dnsName).apply((dns) => ({ pool, endpoint: `tcp://${dns}:${port}`, serverName: dns }));
        this.caCertPem = certificates.caCertPem;
        this.clientCertPem = certificates.clientCertPem;
        this.clientKeyPem = certificates.clientKeyPem;
        const certCommands = certInstallCommands({ pool, stack: args.outputStack ?? `${pulumi.getOrganization()}/${pulumi.getProject()}/${pulumi.getStack()}` });
        const tunnel = { pool, endpoint: `tcp://127.0.0.1:${TUNNEL_PORTS[pool]}`, serverName: "127.0.0.1" };
        this.summary = pulumi
            .all([registry, this.node, asgName, this.targetGroup.arn, this.caCertPem])
            .apply(([loc, node, autoScalingGroupName, targetGroupArn, caCert]) => ({
                pool,
                platform: this.platform,
                builder: this.builder,
                endpoint: node.endpoint,
                serverName: node.serverName,
                tunnelPort: TUNNEL_PORTS[pool],
                volumeGiB: config.volumeGiB,
                autoScalingGroupName,
                targetGroupArn,
                caCert,
                scaleUpCommand: scaleUpCommand({ region: loc.region, autoScalingGroupName }),
                waitHealthyCommand: waitHealthyCommand({ region: loc.region, targetGroupArn }),
                certInstallCommands: certCommands,
                tunnelCommands: tunnelCommands({ pool, region: loc.region, autoScalingGroupName, host: node.serverName, port, localPort: TUNNEL_PORTS[pool] }),
                buildxCreateCommands: buildxCreateCommands(tunnel),
                inVpcBuildxCreateCommands: buildxCreateCommands(node),
            }));
        this.credentials = pulumi.secret(pulumi.all([this.clientCertPem, this.clientKeyPem]).apply(([clientCert, clientKey]) => ({ clientCert, clientKey })));

        this.registerOutputs({ endpoint: this.endpoint, builder: this.builder, autoScalingGroupName: asgName });
    }

    /** The pool's endpoint: CI sources -> internal NLB (its security group) -> runners (theirs), target group and listener. */
    private endpointParts(
        name: string,
        args: BuildRunnerPoolArgs,
        tagged: (role: string) => Record<string, string>,
    ): { loadBalancer: aws.lb.LoadBalancer; targetGroup: aws.lb.TargetGroup; runnerSecurityGroup: aws.ec2.SecurityGroup } {
        const { pool, runners } = args;
        const port = runners.port;
    const endpoint = privateLoadBalancer(this, {
        vpcId: args.vpcId,
        listenerPort: port,
        targetPort: port,
        frontGroup: { name: `${name}-lb-sg`, description: `BuildKit ${pool} endpoint: port ${port} from CI only`, tags: tagged("lb-sg") },
        backGroup: { name: `${name}-sg`, description: `BuildKit ${pool} runners: port ${port} from the load balancer only`, tags: tagged("sg") },
        sources: ciIngressSources(runners.ciSources).map((source) => ({
            name: `${name}-lb-from-${source.key}`,
            description: source.description,
            cidrIpv4: source.cidrIpv4,
            referencedSecurityGroupId: source.referencedSecurityGroupId,
            tags: tagged("lb-from-ci"),
        })),
        // The SSM tunnel: a runner's agent connects to the load balancer for CI outside the VPC.
        admitTargets: { name: `${name}-lb-from-tunnel`, description: "buildkitd through the SSM tunnel (a runner's agent)", tags: tagged("lb-from-tunnel") },
        toTargets: { name: `${name}-lb-to-runners`, description: "traffic and health checks to the runners", tags: tagged("lb-to-runners") },
        fromLoadBalancer: { name: `${name}-from-lb`, description: "buildkitd from the load balancer only", tags: tagged("from-lb") },
        targetEgress: {
            name: `${name}-egress`,
            ipProtocol: "-1",
            cidrIpv4: "0.0.0.0/0",
            description: "build steps fetch packages (via NAT); ECR, S3, SSM and logs go through the VPC endpoints",
            tags: tagged("egress"),
        },
        loadBalancer: {
            name: `${name}-nlb`,
            args: {
                loadBalancerType: "network",
                subnets: args.privateSubnetIds,
                // One instance in one zone must be reachable through every zone's address.
                enableCrossZoneLoadBalancing: true,
                ipAddressType: "ipv4",
                tags: tagged("nlb"),
            },
        },
    });
    const targetGroup = new aws.lb.TargetGroup(
        `${name}-tg`,
        {
            port,
            protocol: "TCP",
            targetType: "instance",
            vpcId: args.vpcId,
            deregistrationDelay: 30,
            // A tunnel's connection comes from a runner; with the client's IP preserved, one sent back
            // to the same runner would never complete (NLB hairpinning).
            preserveClientIp: "false",
            healthCheck: { enabled: true, protocol: "TCP", port: "traffic-port", interval: 10, healthyThreshold: 2, unhealthyThreshold: 2 },
            tags: tagged("tg"),
        },
        { parent: this },
    );
    new aws.lb.Listener(
        `${name}-listener`,
        {
            loadBalancerArn: endpoint.loadBalancer.arn,
            port,
            protocol: "TCP",
            tcpIdleTimeoutSeconds: TCP_IDLE_TIMEOUT_SECONDS,
            defaultActions: [{ type: "forward", targetGroupArn: targetGroup.arn }],
            tags: tagged("listener"),
        },
        { parent: this },
    );
        return { loadBalancer: endpoint.loadBalancer, targetGroup, runnerSecurityGroup: endpoint.backGroup };
    }

    /** The runners themselves: the launch template (cloud-init from ./boot) and the Auto Scaling group around it. */
    private machines(
        name: string,
        args: BuildRunnerPoolArgs,
        config: PoolConfig,
        parts: {
            readonly certificates: RunnerTls;
            readonly logGroupName: pulumi.Output<string>;
            readonly profileArn: pulumi.Output<string>;
            readonly securityGroupId: pulumi.Output<string>;
            readonly scope: string;
            readonly tagged: (role: string) => Record<string, string>;
        },
    ): { launchTemplate: aws.ec2.LaunchTemplate; autoScalingGroup: aws.autoscaling.Group } {
        const { pool, runners } = args;
        const port = runners.port;
    const userData = pulumi
        .all([args.registryHost, parts.certificates.caCertPem, parts.certificates.serverCertPem, parts.logGroupName])
        .apply(([registryHost, caCertPem, serverCertPem, logGroupName]) => {
            const { region } = parseRegistryHost(registryHost);
            const text = cloudInit({
                pool,
                port,
                volumeGiB: config.volumeGiB,
                maxParallelism: config.maxParallelism,
                registryHost,
                pullThroughPrefixes: args.pullThroughPrefixes,
                region,
                image: buildkitImageRef(runners.buildkitImage, registryHost, args.pullThroughPrefixes),
                serverKeyParameter: `${parts.scope}/server-key`,
                caCertPem,
                serverCertPem,
                logGroupName,
            });
            return Buffer.from(text, "utf8").toString("base64");
        });
    const launchTemplate = new aws.ec2.LaunchTemplate(
        `${name}-lt`,
        {
            description: `BuildKit ${pool} runners (${name})`,
            // Resolved at launch: a new AMI needs no template change.
            imageId: `resolve:ssm:${config.amiParameter}`,
            updateDefaultVersion: true,
            metadataOptions: IMDSV2_ONLY,
            networkInterfaces: privateNetworkInterfaces(parts.securityGroupId),
            blockDeviceMappings: encryptedRootVolume({
                deviceName: ROOT_DEVICE,
                sizeGiB: config.volumeGiB,
                iops: config.volumeIops,
                throughputMiBps: config.volumeThroughputMiBps,
            }),
            iamInstanceProfile: { arn: parts.profileArn },
            instanceInitiatedShutdownBehavior: "terminate",
            monitoring: { enabled: false },
            userData,
            tagSpecifications: ["instance", "network-interface", "volume"].map((resourceType) => ({ resourceType, tags: parts.tagged("runner") })),
            tags: parts.tagged("lt"),
        },
        { parent: this },
    );

    const autoScalingGroup = new aws.autoscaling.Group(
        `${name}-asg`,
        {
            // A fixed name: CI's scale-up command and the alarm name it, and it must be unique per account and region.
            name: `${pulumi.getProject()}-${pulumi.getStack()}-${name}`,
            minSize: 0,
            maxSize: config.maxSize,
            vpcZoneIdentifiers: args.privateSubnetIds,
            capacityRebalance: true,
            mixedInstancesPolicy: {
                instancesDistribution: {
                    onDemandBaseCapacity: config.onDemandBaseCapacity,
                    onDemandPercentageAboveBaseCapacity: config.onDemandPercentageAboveBaseCapacity,
                    onDemandAllocationStrategy: "lowest-price",
                    spotAllocationStrategy: "price-capacity-optimized",
                },
                launchTemplate: {
                    launchTemplateSpecification: { launchTemplateId: launchTemplate.id, version: "$Latest" },
                    overrides: [...new Set(config.instanceTypes)].sort().map((instanceType) => ({ instanceType })),
                },
            },
            targetGroupArns: [this.targetGroup.arn],
            healthCheckType: "ELB",
            healthCheckGracePeriod: HEALTH_CHECK_GRACE_SECONDS,
            enabledMetrics: ["GroupDesiredCapacity", "GroupInServiceInstances"],
            metricsGranularity: "1Minute",
            // Nothing to wait for at min 0; CI waits for a healthy target itself.
            waitForCapacityTimeout: "0",
            tags: asgTags(parts.tagged("runner")),
        },
        // Desired capacity belongs to CI, the idle alarm and the schedule: a `pulumi up`
        // in the middle of a build must not reset it (and kill the build).
        { parent: this, ignoreChanges: ["desiredCapacity"] },
    );
        return { launchTemplate, autoScalingGroup };
    }

    /** The pool's config; refuses args whose parts cannot fit together. */
    private poolConfig(name: string, args: BuildRunnerPoolArgs): PoolConfig {
        const config = args.runners.pools[args.pool];
        if (!config) throw new pulumi.ResourceError(`build.runners.pools.${args.pool} is not configured`, this);
        if (name.length > MAX_POOL_NAME_LENGTH) {
            throw new pulumi.ResourceError(`name "${name}" is longer than ${MAX_POOL_NAME_LENGTH} characters (load balancer and target group names are limited to 32)`, this);
        }
        try {
            upstreamKeysOf(args.pullThroughPrefixes);
        } catch (error) {
            throw new pulumi.ResourceError((error as Error).message, this);
        }
        // The config refuses such a prefix (registry.repositoryPrefix); runnerPolicy's own throw is never reached from here.
        if (args.pullThroughPrefixes.includes(args.repositoryPrefix)) {
            throw new pulumi.ResourceError(`the repository prefix ${JSON.stringify(args.repositoryPrefix)} is also a pull-through prefix: runners could push into the cache`, this);
        }
        return config;
    }

    /** The runners' role: its inline policy (./iam), SSM core and the CloudWatch agent. */
    private runnerRole(
        name: string,
        args: BuildRunnerPoolArgs,
        registry: pulumi.Output<ReturnType<typeof parseRegistryHost>>,
        logGroupArn: pulumi.Output<string>,
        serverKeyParameterArn: pulumi.Output<string>,
        tagged: (role: string) => Record<string, string>,
    ): aws.iam.Role {
        const role = new aws.iam.Role(
            `${name}-role`,
            {
                description: `BuildKit ${args.pool} runners`,
                assumeRolePolicy: registry.apply((loc) => JSON.stringify(ec2AssumeRolePolicy(loc))),
                tags: tagged("role"),
            },
            { parent: this },
        );
        new aws.iam.RolePolicy(
            `${name}-policy`,
            {
                role: role.id,
                policy: pulumi
                    .all([registry, logGroupArn, serverKeyParameterArn])
                    .apply(([loc, logGroup, serverKey]) =>
                        JSON.stringify(
                            runnerPolicy({
                                registry: loc,
                                repositoryPrefix: args.repositoryPrefix,
                                pullThroughPrefixes: args.pullThroughPrefixes,
                                logGroupArn: logGroup,
                                serverKeyParameterArn: serverKey,
                            }),
                        ),
                    ),
            },
            { parent: this },
        );
        new aws.iam.RolePolicyAttachment(
            `${name}-ssm-core`,
            { role: role.name, policyArn: registry.apply((loc) => ssmManagedInstanceCoreArn(loc.partition)) },
            { parent: this },
        );
        new aws.iam.RolePolicyAttachment(
            `${name}-cw-agent`,
            { role: role.name, policyArn: registry.apply((loc) => cloudWatchAgentServerPolicyArn(loc.partition)) },
            { parent: this },
        );
        return role;
    }

    /** Scale to zero: the idle alarm with its policy, and the off-hours schedule. */
    private scaleToZero(
        name: string,
        runners: RunnersConfig,
        config: PoolConfig,
        asgName: pulumi.Output<string>,
        tagged: (role: string) => Record<string, string>,
    ): void {
        const toZero = new aws.autoscaling.Policy(
            `${name}-scale-to-zero`,
            { autoscalingGroupName: asgName, policyType: "SimpleScaling", adjustmentType: "ExactCapacity", scalingAdjustment: 0, cooldown: 60 },
            { parent: this },
        );
        new aws.cloudwatch.MetricAlarm(
            `${name}-idle`,
            {
                alarmDescription: `No connection to the ${this.pool} BuildKit endpoint for ${config.idleMinutes} minutes while the pool has capacity: scale it to zero`,
                comparisonOperator: "GreaterThanOrEqualToThreshold",
                threshold: 1,
                evaluationPeriods: config.idleMinutes,
                datapointsToAlarm: config.idleMinutes,
                treatMissingData: "notBreaching",
                metricQueries: idleAlarmQueries({ loadBalancer: this.loadBalancer.arnSuffix, autoScalingGroupName: asgName }),
                alarmActions: [toZero.arn],
                tags: tagged("idle"),
            },
            { parent: this },
        );
        const schedule = runners.scaleToZeroSchedule;
        schedule?.recurrences.forEach((recurrence, i) => {
            new aws.autoscaling.Schedule(
                `${name}-offhours-${i}`,
                {
                    autoscalingGroupName: asgName,
                    scheduledActionName: `${name}-scale-to-zero-${i}`,
                    recurrence,
                    timeZone: schedule.timeZone,
                    minSize: 0,
                    maxSize: -1,
                    desiredCapacity: 0,
                },
                { parent: this },
            );
        });
    }
}

/** Every pool's credentials, keyed by pool: the runners stack's secret `runnerCredentials` output. */
export function runnerCredentials(pools: readonly BuildRunnerPool[]): pulumi.Output<Record<string, RunnerCredentials>> {
    const sorted = [...pools].sort((a, b) => a.pool.localeCompare(b.pool));
    return pulumi.secret(pulumi.all(sorted.map((p) => p.credentials)).apply((all) => Object.fromEntries(all.map((c, i) => [sorted[i].pool, c]))));
}

/** Every pool's summary, keyed by pool: the runners stack's plain `runners` output. */
export function runnerSummaries(pools: readonly BuildRunnerPool[]): pulumi.Output<Record<string, RunnerSummary>> {
    const sorted = [...pools].sort((a, b) => a.pool.localeCompare(b.pool));
    return pulumi.all(sorted.map((p) => p.summary)).apply((summaries) => Object.fromEntries(summaries.map((s) => [s.pool, s])));
}

/**
 * The multi-node builder (`ml-multiarch`): the amd64 pool's node and the
 * arm64 pool's node, each building its platform natively. Undefined unless
 * both pools exist.
 */
export function multiArchBuilder(pools: readonly BuildRunnerPool[]): pulumi.Output<{ name: string; commands: string[] }> | undefined {
    const amd64 = pools.find((p) => p.pool === "amd64");
    const arm64 = pools.find((p) => p.pool === "arm64");
    if (!amd64 || !arm64) return undefined;
    return pulumi.all([amd64.node, arm64.node]).apply((nodes) => ({ name: MULTIARCH_BUILDER, commands: multiNodeBuilderCommands(nodes) }));
}
