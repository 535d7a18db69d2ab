/**
 * Serving on ECS with EC2 capacity.
 *
 * ServingCluster: one ECS cluster per environment (Container Insights on) and
 * one capacity provider per hardware kind its services need: an Auto Scaling
 * group of the ECS-optimized AL2023 AMI for that kind (GPU, arm64 for
 * Graviton, x86_64), AMI resolved by EC2 from the public SSM parameter at
 * launch (`resolve:ssm:` in the launch template: no invoke, no diff when AWS
 * publishes a new AMI), ECS managed scaling, managed termination protection
 * (with protectFromScaleIn), managed draining, IMDSv2 only, no public IP.
 *
 * InferenceService: one service of the environment: task definition (awsvpc,
 * EC2, runtimePlatform of the target, server pinned by digest, GPUs when the
 * target needs them, model fetched from S3 by an init container, private
 * sidecars), an ECS service on the target's capacity provider (private
 * subnets, no public IP, circuit breaker with rollback), an internal ALB in
 * front of the server's port only, security groups, log group, roles.
 *
 * Security-group rules are separate aws.vpc.SecurityGroupIngressRule /
 * SecurityGroupEgressRule resources (never inline), so one test can inspect
 * every rule of the graph.
 */
import * as aws from "@pulumi/aws";
import * as pulumi from "@pulumi/pulumi";
import {
    AWS_CLI_IMAGE,
    PLACEHOLDER_DIGEST_RE,
    SERVER_CONTAINER,
    SIDECAR_CATALOGUE,
    assumeRolePolicy,
    buildContainerDefinitions,
    executionRolePolicy,
    resolveSidecar,
    serialiseContainerDefinitions,
    taskRolePolicy,
    taskVolumes,
} from "./container-definitions";
import { dataResourceOptions } from "./protection";
import { parseDigestRef } from "./references";
import {
    type CapacityConfig,
    type CapacityGroupConfig,
    type ClientsConfig,
    type HardwareKind,
    type LoadBalancerConfig,
    type ServiceFields,
    HARDWARE_KINDS,
    checkCapacityGroup,
    checkClients,
    checkService,
    gpusFor,
    hardwareKindOf,
} from "./serve-config";
import type { HardwareTarget } from "./targets";

type Tags = Readonly<Record<string, string>>;

// ---------------------------------------------------------------- pure helpers

/** Public SSM parameter of the ECS-optimized Amazon Linux 2023 AMI for a kind. */
export function ecsAmiParameter(kind: HardwareKind): string {
    const variant: Record<HardwareKind, string> = { gpu: "gpu/", arm64: "arm64/", cpu: "" };
    return `/aws/service/ecs/optimized-ami/amazon-linux-2023/${variant[kind]}recommended/image_id`;
}

/** What the launch template puts in `imageId`: EC2 resolves it at launch. */
export function ecsAmiImageId(kind: HardwareKind): string {
    return `resolve:ssm:${ecsAmiParameter(kind)}`;
}

/** Name of a kind's capacity provider (ECS refuses names starting with aws, ecs or fargate). */
export function capacityProviderName(clusterName: string, kind: HardwareKind): string {
    return `${clusterName}-${kind}`;
}

/**
 * ECS agent settings (/etc/ecs/ecs.config) of a kind's instances.
 *
 * Instance metadata: IMDSv2 only, hop limit 1. Tasks do not need IMDS: in
 * awsvpc mode their credentials come from the ECS agent's endpoint
 * (169.254.170.2, AWS_CONTAINER_CREDENTIALS_RELATIVE_URI) and the region from
 * AWS_REGION, which the definitions set. Hop limit 1 alone does not stop an
 * awsvpc task (its ENI reaches IMDS in one hop), so ECS_AWSVPC_BLOCK_IMDS
 * closes it: a task can never borrow the instance role.
 */
export function ecsAgentConfig(clusterName: string, kind: HardwareKind, spot: boolean): Record<string, string> {
    const config: Record<string, string> = {
        ECS_CLUSTER: clusterName,
        ECS_AWSVPC_BLOCK_IMDS: "true",
        // Images are pinned by digest, so a cached image is the right image; GPU images are large.
        ECS_IMAGE_PULL_BEHAVIOR: "prefer-cached",
        ECS_ENABLE_CONTAINER_METADATA: "true",
    };
    if (spot) config.ECS_ENABLE_SPOT_INSTANCE_DRAINING = "true";
    if (kind === "gpu") config.ECS_ENABLE_GPU_SUPPORT = "true";
    return config;
}

/** User data (plain text) writing the agent config, keys sorted. */
export function ecsUserData(config: Readonly<Record<string, string>>): string {
    const lines = Object.keys(config)
        .sort()
        .map((k) => `${k}=${config[k]}`);
    return ["#!/bin/bash", "cat >> /etc/ecs/ecs.config <<'EOF'", ...lines, "EOF", ""].join("\n");
}

/** Whether a group may run spot instances. */
export function usesSpot(group: CapacityGroupConfig): boolean {
    return group.onDemandPercentageAboveBaseCapacity < 100 && group.maxSize > group.onDemandBaseCapacity;
}

export interface DeploymentPercents {
    readonly minimumHealthyPercent: number;
    readonly maximumPercent: number;
}

/**
 * Rolling-update bounds. GPU services replace tasks one at a time without
 * ever needing a spare GPU (maximum 100%): a single-GPU service stops its task
 * and starts the new one (minimum 0%); with n replicas n-1 keep serving.
 * CPU and Graviton capacity is cheap to surge: start new tasks first (100/200).
 */
export function deploymentPercents(kind: HardwareKind, replicas: number): DeploymentPercents {
    if (kind !== "gpu") return { minimumHealthyPercent: 100, maximumPercent: 200 };
    if (replicas <= 1) return { minimumHealthyPercent: 0, maximumPercent: 100 };
    return { minimumHealthyPercent: Math.floor((100 * (replicas - 1)) / replicas), maximumPercent: 100 };
}

/** A resource-name-safe suffix for a rule's peer (sg-0abc... or 10-0-0-0-16). */
export function peerSuffix(peer: string): string {
    return peer.replace(/[^A-Za-z0-9]+/g, "-").replace(/-+$/, "");
}

/** The ECS attribute value of a target's CPU architecture. */
export function ecsCpuArchitecture(target: HardwareTarget): "x86_64" | "arm64" {
    return target.runtime.cpuArchitecture === "ARM64" ? "arm64" : "x86_64";
}

/** Throws unless `ref` is `registry/repository@sha256:<digest>`. */
export function requireDigestRef(ref: string, service: string): string {
    if (!parseDigestRef(ref)) {
        throw new Error(`service ${service}: image ${JSON.stringify(ref)} is not pinned by digest (registry/repository@sha256:<64 hex>); refusing to deploy a mutable reference`);
    }
    return ref;
}

const CLUSTER_NAME_RE = /^[A-Za-z0-9_-]{1,200}$/;

// ---------------------------------------------------------------- ServingCluster

export interface ServingClusterArgs {
    /** ECS cluster name; also prefixes capacity providers, task families and log groups. Default: `<project>-<stack>`. */
    readonly clusterName?: string;
    /** Hardware kinds to create capacity for (`hardwareKindsOf` the services' targets). At least one. */
    readonly hardware: readonly HardwareKind[];
    /** Sizing per kind (config `serve.capacity`; every field has a default). Only the kinds in `hardware` are read. */
    readonly capacity: CapacityConfig;
    /** VPC of the instances (from the network component). */
    readonly vpcId: pulumi.Input<string>;
    /** Private subnets the instances launch in (from the network component; they need a route to ECR, S3 and CloudWatch). */
    readonly privateSubnetIds: pulumi.Input<string[]>;
    /** Container Insights level: "enabled" or "enhanced". Default "enabled". */
    readonly containerInsights?: "enabled" | "enhanced";
    /** AWS partition of managed-policy and S3 ARNs. Default "aws". */
    readonly partition?: string;
    /** Tags put on every taggable resource (propagated to instances and volumes). */
    readonly tags: Tags;
}

export class ServingCluster extends pulumi.ComponentResource {
    public readonly clusterName: string;
    public readonly cluster: aws.ecs.Cluster;
    /** Kinds this cluster has capacity for. */
    public readonly hardware: readonly HardwareKind[];
    public readonly capacityProviders: Readonly<Partial<Record<HardwareKind, aws.ecs.CapacityProvider>>>;
    public readonly autoScalingGroups: Readonly<Partial<Record<HardwareKind, aws.autoscaling.Group>>>;
    /** Association of the capacity providers with the cluster (services depend on it). */
    public readonly clusterCapacityProviders: aws.ecs.ClusterCapacityProviders;
    public readonly instanceSecurityGroup: aws.ec2.SecurityGroup;
    public readonly vpcId: pulumi.Input<string>;
    public readonly privateSubnetIds: pulumi.Input<string[]>;
    public readonly partition: string;

    constructor(name: string, args: ServingClusterArgs, opts?: pulumi.ComponentResourceOptions) {
        super("ml-infra:serve:ServingCluster", name, {}, opts);
        const clusterName = args.clusterName ?? `${pulumi.getProject()}-${pulumi.getStack()}`;
        const hardware = HARDWARE_KINDS.filter((k) => args.hardware.includes(k));
        const partition = args.partition ?? "aws";
        const { tags } = args;

        const problems: string[] = [];
        if (!CLUSTER_NAME_RE.test(clusterName)) problems.push(`clusterName ${JSON.stringify(clusterName)} must be letters, digits, - and _ (at most 200)`);
        if (/^(aws|ecs|fargate)/i.test(clusterName)) problems.push(`clusterName ${JSON.stringify(clusterName)} may not start with aws, ecs or fargate (capacity providers are named after it)`);
        if (hardware.length === 0) problems.push("needs at least one hardware kind");
        for (const kind of hardware) {
            const group = args.capacity[kind];
            checkCapacityGroup(kind, group, (keys, message) => problems.push(`capacity.${kind}${keys.map((k) => (typeof k === "number" ? `[${k}]` : `.${k}`)).join("")}: ${message}`));
            if (group.maxSize < 1) problems.push(`capacity.${kind}.maxSize: must be at least 1 (a service needs ${kind} capacity)`);
        }
        if (problems.length > 0) throw new Error(`ServingCluster ${name}:\n  - ${problems.join("\n  - ")}`);

        this.clusterName = clusterName;
        this.hardware = hardware;
        this.partition = partition;
        this.vpcId = args.vpcId;
        this.privateSubnetIds = args.privateSubnetIds;

        this.cluster = new aws.ecs.Cluster(
            `${name}-cluster`,
            {
                name: clusterName,
                settings: [{ name: "containerInsights", value: args.containerInsights ?? "enabled" }],
                tags,
            },
            { parent: this },
        );

        // ---- instance role, profile, security group (shared by every kind)
        const instanceRole = new aws.iam.Role(
            `${name}-instance`,
            {
                description: `ECS container instances of ${clusterName}`,
                assumeRolePolicy: JSON.stringify(assumeRolePolicy("ec2.amazonaws.com")),
                tags,
            },
            { parent: this },
        );
        const managed: Record<string, string> = {
            ecs: `arn:${partition}:iam::aws:policy/service-role/AmazonEC2ContainerServiceforEC2Role`,
            // Shell access through Session Manager instead of SSH keys and open ports.
            ssm: `arn:${partition}:iam::aws:policy/AmazonSSMManagedInstanceCore`,
        };
        for (const [key, policyArn] of Object.entries(managed)) {
            new aws.iam.RolePolicyAttachment(`${name}-instance-${key}`, { role: instanceRole.name, policyArn }, { parent: this });
        }
        const profile = new aws.iam.InstanceProfile(`${name}-instance-profile`, { role: instanceRole.name, tags }, { parent: this });

        this.instanceSecurityGroup = new aws.ec2.SecurityGroup(
            `${name}-instance-sg`,
            {
                vpcId: args.vpcId,
                description: `ECS container instances of ${clusterName}: no inbound; tasks have their own ENIs and groups`,
                tags: { ...tags, Name: `${clusterName}-instances` },
            },
            { parent: this },
        );
        new aws.vpc.SecurityGroupEgressRule(
            `${name}-instance-out-https`,
            {
                securityGroupId: this.instanceSecurityGroup.id,
                description: "ECS agent, ECR, S3, SSM over HTTPS",
                ipProtocol: "tcp",
                fromPort: 443,
                toPort: 443,
                cidrIpv4: "0.0.0.0/0",
                tags,
            },
            { parent: this },
        );

        // ---- one launch template, Auto Scaling group and capacity provider per kind
        const capacityProviders: Partial<Record<HardwareKind, aws.ecs.CapacityProvider>> = {};
        const groups: Partial<Record<HardwareKind, aws.autoscaling.Group>> = {};
        for (const kind of hardware) {
            const group = args.capacity[kind];
            const spot = usesSpot(group);
            const instanceName = `${clusterName}-${kind}`;
            const launchTemplate = new aws.ec2.LaunchTemplate(
                `${name}-${kind}-lt`,
                {
                    description: `ECS ${kind} instances of ${clusterName}`,
                    imageId: ecsAmiImageId(kind),
                    iamInstanceProfile: { arn: profile.arn },
                    metadataOptions: {
                        httpEndpoint: "enabled",
                        httpTokens: "required",
                        httpPutResponseHopLimit: 1,
                        instanceMetadataTags: "disabled",
                    },
                    networkInterfaces: [
                        {
                            deviceIndex: 0,
                            associatePublicIpAddress: "false",
                            deleteOnTermination: "true",
                            securityGroups: [this.instanceSecurityGroup.id],
                        },
                    ],
                    blockDeviceMappings: [
                        {
                            deviceName: "/dev/xvda",
                            ebs: { volumeSize: group.rootVolumeGiB, volumeType: "gp3", encrypted: "true", deleteOnTermination: "true" },
                        },
                    ],
                    monitoring: { enabled: true },
                    userData: Buffer.from(ecsUserData(ecsAgentConfig(clusterName, kind, spot))).toString("base64"),
                    updateDefaultVersion: true,
                    tagSpecifications: ["instance", "volume", "network-interface"].map((resourceType) => ({
                        resourceType,
                        tags: { ...tags, Name: instanceName },
                    })),
                    tags,
                },
                { parent: this },
            );
            const asg = new aws.autoscaling.Group(
                `${name}-${kind}-asg`,
                {
                    minSize: group.minSize,
                    maxSize: group.maxSize,
                    vpcZoneIdentifiers: args.privateSubnetIds,
                    // Required by managed termination protection: ECS lifts it from instances without tasks.
                    protectFromScaleIn: true,
                    capacityRebalance: spot,
                    healthCheckType: "EC2",
                    defaultInstanceWarmup: 300,
                    mixedInstancesPolicy: {
                        instancesDistribution: {
                            onDemandAllocationStrategy: "prioritized",
                            onDemandBaseCapacity: group.onDemandBaseCapacity,
                            onDemandPercentageAboveBaseCapacity: group.onDemandPercentageAboveBaseCapacity,
                            spotAllocationStrategy: group.spotAllocationStrategy,
                        },
                        launchTemplate: {
                            // $Latest: new instances get template changes; see the README (Serving) for rolling old ones.
                            launchTemplateSpecification: { launchTemplateId: launchTemplate.id, version: "$Latest" },
                            overrides: group.instanceTypes.map((instanceType) => ({ instanceType })),
                        },
                    },
                    tags: [
                        ...Object.entries({ ...tags, Name: instanceName }).map(([key, value]) => ({ key, value, propagateAtLaunch: true })),
                        // Marks the group as managed by an ECS capacity provider.
                        { key: "AmazonECSManaged", value: "", propagateAtLaunch: true },
                    ],
                },
                // ECS managed scaling owns the desired capacity.
                { parent: this, ignoreChanges: ["desiredCapacity"] },
            );
            groups[kind] = asg;
            capacityProviders[kind] = new aws.ecs.CapacityProvider(
                `${name}-${kind}`,
                {
                    name: capacityProviderName(clusterName, kind),
                    autoScalingGroupProvider: {
                        autoScalingGroupArn: asg.arn,
                        managedTerminationProtection: "ENABLED",
                        managedDraining: "ENABLED",
                        managedScaling: {
                            status: "ENABLED",
                            targetCapacity: group.targetCapacityPercent,
                            minimumScalingStepSize: 1,
                            maximumScalingStepSize: kind === "gpu" ? 2 : 10,
                            instanceWarmupPeriod: 300,
                        },
                    },
                    tags,
                },
                { parent: this },
            );
        }
        this.capacityProviders = capacityProviders;
        this.autoScalingGroups = groups;
        this.clusterCapacityProviders = new aws.ecs.ClusterCapacityProviders(
            `${name}-capacity-providers`,
            {
                clusterName: this.cluster.name,
                capacityProviders: hardware.map((k) => capacityProviders[k]?.name ?? capacityProviderName(clusterName, k)),
            },
            { parent: this },
        );

        this.registerOutputs({
            clusterName: this.cluster.name,
            clusterArn: this.cluster.arn,
            capacityProviders: Object.fromEntries(hardware.map((k) => [k, capacityProviderName(clusterName, k)])),
        });
    }

    /** Name of the capacity provider for a kind; throws when this cluster has none. */
    public capacityProviderFor(kind: HardwareKind): string {
        if (!this.hardware.includes(kind)) {
            throw new Error(`cluster ${this.clusterName} has no ${kind} capacity (it has: ${this.hardware.join(", ")}); add the kind to ServingCluster's hardware`);
        }
        return capacityProviderName(this.clusterName, kind);
    }
}

// ---------------------------------------------------------------- InferenceService

export interface InferenceServiceArgs {
    /** The environment's cluster; it must have capacity for the target's hardware kind. */
    readonly cluster: ServingCluster;
    /** The service's validated fields (config `serve.services[i]`). The component's name is the service name. */
    readonly service: ServiceFields;
    /** The service's resolved hardware target. */
    readonly target: HardwareTarget;
    /** The server image, `registry/repository@sha256:<digest>` (Environment's `ResolvedDeployment.ref`). Anything else fails the deployment. */
    readonly image: pulumi.Input<string>;
    /** Who may reach the load balancer (config `serve.clients`); at least one security group or CIDR, never /0. */
    readonly clients: ClientsConfig;
    /** Listener settings (config `serve.loadBalancer`; every field has a default). */
    readonly loadBalancer: LoadBalancerConfig;
    /** AWS region (awslogs and the SDKs inside the task). */
    readonly region: string;
    /** VPC of the load balancer and target group. Default: the cluster's. */
    readonly vpcId?: pulumi.Input<string>;
    /** Private subnets of the tasks and the load balancer. Default: the cluster's. */
    readonly privateSubnetIds?: pulumi.Input<string[]>;
    /** Wait for the deployment to reach a steady state (up to 45 minutes). Default true. */
    readonly waitForSteadyState?: boolean;
    /** Protect and retain the log group (config `ml-infra:protectData`; false in dev). Default true. */
    readonly protectData?: boolean;
    /** Tags put on every taggable resource. */
    readonly tags: Tags;
}

export class InferenceService extends pulumi.ComponentResource {
    public readonly service: aws.ecs.Service;
    public readonly taskDefinition: aws.ecs.TaskDefinition;
    public readonly loadBalancer: aws.lb.LoadBalancer;
    public readonly targetGroup: aws.lb.TargetGroup;
    public readonly taskSecurityGroup: aws.ec2.SecurityGroup;
    public readonly loadBalancerSecurityGroup: aws.ec2.SecurityGroup;
    public readonly logGroup: aws.cloudwatch.LogGroup;
    public readonly taskRole: aws.iam.Role;
    public readonly executionRole: aws.iam.Role;
    /** The deterministic `containerDefinitions` text. */
    public readonly containerDefinitions: pulumi.Output<string>;
    /** `http(s)://<internal ALB DNS name>` */
    public readonly url: pulumi.Output<string>;

    constructor(name: string, args: InferenceServiceArgs, opts?: pulumi.ComponentResourceOptions) {
        super("ml-infra:serve:InferenceService", name, {}, opts);
        const { cluster, service, target, tags } = args;
        const kind = hardwareKindOf(target);

        // ---- contradictions fail before anything is registered
        const problems: string[] = [];
        const at = (prefix: string) => (keys: ReadonlyArray<string | number>, message: string) => {
            const path = [prefix, ...keys].filter((k) => k !== "").map(String).join(".");
            problems.push(path === "" ? message : `${path}: ${message}`);
        };
        checkService(service, target, at(""));
        checkClients(args.clients, at("clients"));
        if (!cluster.hardware.includes(kind)) {
            problems.push(`target "${target.name}" runs on ${kind} capacity, which cluster ${cluster.clusterName} does not have (it has: ${cluster.hardware.join(", ")})`);
        }
        if (typeof args.image === "string" && !parseDigestRef(args.image)) {
            problems.push(`image ${JSON.stringify(args.image)} is not pinned by digest (registry/repository@sha256:<64 hex>)`);
        }
        if (problems.length > 0) throw new Error(`InferenceService ${name}:\n  - ${problems.join("\n  - ")}`);

        const sidecars = service.sidecars.map(resolveSidecar);
        const staticImages = [service.model.syncImage ?? AWS_CLI_IMAGE, ...sidecars.map((s) => s.image)];
        for (const image of staticImages) {
            if (PLACEHOLDER_DIGEST_RE.test(image)) {
                pulumi.log.warn(`service ${name}: ${image} carries a placeholder digest; pin the real one (README, Serving: sidecars) before deploying`, this);
            }
        }

        const partition = cluster.partition;
        const vpcId = args.vpcId ?? cluster.vpcId;
        const subnets = args.privateSubnetIds ?? cluster.privateSubnetIds;
        const gpus = gpusFor(service, target);
        const https = args.loadBalancer.certificateArn !== undefined;
        const listenerPort = https ? 443 : 80;
        const image = pulumi.output(args.image).apply((ref) => requireDigestRef(ref, name));

        // ---- logs and roles
        this.logGroup = new aws.cloudwatch.LogGroup(
            `${name}-logs`,
            { name: `/ecs/${cluster.clusterName}/${name}`, retentionInDays: service.logRetentionDays, tags },
            { parent: this, ...dataResourceOptions(args.protectData ?? true) },
        );
        this.executionRole = new aws.iam.Role(
            `${name}-execution`,
            {
                description: `ECS pulls images, writes logs and reads secrets for ${name}`,
                assumeRolePolicy: JSON.stringify(assumeRolePolicy("ecs-tasks.amazonaws.com")),
                tags,
            },
            { parent: this },
        );
        this.taskRole = new aws.iam.Role(
            `${name}-task`,
            {
                description: `containers of ${name}: read the model prefix only`,
                assumeRolePolicy: JSON.stringify(assumeRolePolicy("ecs-tasks.amazonaws.com")),
                tags,
            },
            { parent: this },
        );
        const secrets = sidecars.flatMap((s) => Object.values(s.secrets));
        const executionPolicy = new aws.iam.RolePolicy(
            `${name}-execution-policy`,
            {
                role: this.executionRole.id,
                policy: pulumi.all([image, this.logGroup.arn]).apply(([ref, logGroupArn]) =>
                    JSON.stringify(executionRolePolicy({ partition, images: [ref, ...staticImages], logGroupArn, secrets })),
                ),
            },
            { parent: this },
        );
        const shipsLogs = sidecars.some((s) => SIDECAR_CATALOGUE[s.kind].writesLogs);
        const taskPolicy = new aws.iam.RolePolicy(
            `${name}-task-policy`,
            {
                role: this.taskRole.id,
                policy: this.logGroup.arn.apply((logGroupArn) =>
                    JSON.stringify(
                        taskRolePolicy({
                            partition,
                            model: service.model,
                            logGroupArn: shipsLogs ? logGroupArn : undefined,
                            execCommand: service.execCommand,
                        }),
                    ),
                ),
            },
            { parent: this },
        );

        // ---- security groups: clients -> ALB (listener port) -> tasks (server port only)
        this.loadBalancerSecurityGroup = new aws.ec2.SecurityGroup(
            `${name}-alb-sg`,
            { vpcId, description: `internal ALB of ${name}: listed clients on ${listenerPort}`, tags: { ...tags, Name: `${cluster.clusterName}-${name}-alb` } },
            { parent: this },
        );
        this.taskSecurityGroup = new aws.ec2.SecurityGroup(
            `${name}-task-sg`,
            { vpcId, description: `tasks of ${name}: the ALB on port ${service.port} only`, tags: { ...tags, Name: `${cluster.clusterName}-${name}-tasks` } },
            { parent: this },
        );
        const albSg = this.loadBalancerSecurityGroup.id;
        const taskSg = this.taskSecurityGroup.id;
        for (const peer of [...new Set(args.clients.securityGroupIds)]) {
            new aws.vpc.SecurityGroupIngressRule(
                `${name}-alb-in-${peerSuffix(peer)}`,
                { securityGroupId: albSg, description: "client security group", ipProtocol: "tcp", fromPort: listenerPort, toPort: listenerPort, referencedSecurityGroupId: peer, tags },
                { parent: this },
            );
        }
        for (const block of [...new Set(args.clients.cidrs)]) {
            new aws.vpc.SecurityGroupIngressRule(
                `${name}-alb-in-${peerSuffix(block)}`,
                { securityGroupId: albSg, description: "client network", ipProtocol: "tcp", fromPort: listenerPort, toPort: listenerPort, cidrIpv4: block, tags },
                { parent: this },
            );
        }
        new aws.vpc.SecurityGroupEgressRule(
            `${name}-alb-out-tasks`,
            { securityGroupId: albSg, description: "to the server port of the tasks", ipProtocol: "tcp", fromPort: service.port, toPort: service.port, referencedSecurityGroupId: taskSg, tags },
            { parent: this },
        );
        new aws.vpc.SecurityGroupIngressRule(
            `${name}-task-in-alb`,
            { securityGroupId: taskSg, description: "the load balancer, server port only", ipProtocol: "tcp", fromPort: service.port, toPort: service.port, referencedSecurityGroupId: albSg, tags },
            { parent: this },
        );
        new aws.vpc.SecurityGroupEgressRule(
            `${name}-task-out-https`,
            { securityGroupId: taskSg, description: "S3 (model), CloudWatch, SSM over HTTPS", ipProtocol: "tcp", fromPort: 443, toPort: 443, cidrIpv4: "0.0.0.0/0", tags },
            { parent: this },
        );

        // ---- internal load balancer in front of the server port
        this.loadBalancer = new aws.lb.LoadBalancer(
            `${name}-alb`,
            {
                internal: true,
                loadBalancerType: "application",
                subnets,
                securityGroups: [albSg],
                idleTimeout: args.loadBalancer.idleTimeoutSeconds,
                dropInvalidHeaderFields: true,
                tags,
            },
            { parent: this },
        );
        this.targetGroup = new aws.lb.TargetGroup(
            `${name}-tg`,
            {
                vpcId,
                targetType: "ip",
                protocol: "HTTP",
                port: service.port,
                // Short drain: a single-GPU service is down while its only task drains.
                deregistrationDelay: 30,
                healthCheck: {
                    enabled: true,
                    protocol: "HTTP",
                    port: "traffic-port",
                    path: service.healthPath,
                    matcher: "200",
                    interval: 15,
                    timeout: 5,
                    healthyThreshold: 2,
                    unhealthyThreshold: 3,
                },
                tags,
            },
            { parent: this },
        );
        const listener = new aws.lb.Listener(
            `${name}-listener`,
            {
                loadBalancerArn: this.loadBalancer.arn,
                port: listenerPort,
                protocol: https ? "HTTPS" : "HTTP",
                certificateArn: args.loadBalancer.certificateArn,
                sslPolicy: https ? args.loadBalancer.sslPolicy : undefined,
                defaultActions: [{ type: "forward", targetGroupArn: this.targetGroup.arn }],
                tags,
            },
            { parent: this },
        );

        // ---- task definition
        this.containerDefinitions = pulumi.all([image, this.logGroup.name]).apply(([ref, logGroupName]) =>
            serialiseContainerDefinitions(
                buildContainerDefinitions(service, { service: name, image: ref, gpus, logGroupName, region: args.region }),
            ),
        );
        this.taskDefinition = new aws.ecs.TaskDefinition(
            `${name}-definition`,
            {
                family: `${cluster.clusterName}-${name}`,
                networkMode: "awsvpc",
                requiresCompatibilities: ["EC2"],
                runtimePlatform: { cpuArchitecture: target.runtime.cpuArchitecture, operatingSystemFamily: "LINUX" },
                cpu: String(service.cpu),
                memory: String(service.memory),
                containerDefinitions: this.containerDefinitions,
                volumes: taskVolumes(service).map((volume) => ({ name: volume })),
                taskRoleArn: this.taskRole.arn,
                executionRoleArn: this.executionRole.arn,
                // Keep superseded revisions registered: the circuit breaker rolls back to them.
                skipDestroy: true,
                tags,
            },
            { parent: this, dependsOn: [executionPolicy, taskPolicy] },
        );

        // ---- service
        const percents = deploymentPercents(kind, service.replicas);
        const timeout = "45m";
        this.service = new aws.ecs.Service(
            `${name}-service`,
            {
                cluster: cluster.cluster.arn,
                taskDefinition: this.taskDefinition.arn,
                desiredCount: service.replicas,
                capacityProviderStrategies: [{ capacityProvider: cluster.capacityProviderFor(kind), weight: 1, base: 0 }],
                networkConfiguration: { subnets, securityGroups: [taskSg], assignPublicIp: false },
                loadBalancers: [{ targetGroupArn: this.targetGroup.arn, containerName: SERVER_CONTAINER, containerPort: service.port }],
                healthCheckGracePeriodSeconds: service.healthGracePeriodSeconds,
                deploymentCircuitBreaker: { enable: true, rollback: true },
                deploymentMinimumHealthyPercent: percents.minimumHealthyPercent,
                deploymentMaximumPercent: percents.maximumPercent,
                placementConstraints: [{ type: "memberOf", expression: `attribute:ecs.cpu-architecture == ${ecsCpuArchitecture(target)}` }],
                orderedPlacementStrategies: [
                    { type: "spread", field: "attribute:ecs.availability-zone" },
                    { type: "binpack", field: "memory" },
                ],
                enableExecuteCommand: service.execCommand,
                enableEcsManagedTags: true,
                propagateTags: "SERVICE",
                waitForSteadyState: args.waitForSteadyState ?? true,
                tags,
            },
            {
                parent: this,
                dependsOn: [listener, cluster.clusterCapacityProviders],
                customTimeouts: { create: timeout, update: timeout, delete: "20m" },
            },
        );

        this.url = pulumi.interpolate`${https ? "https" : "http"}://${this.loadBalancer.dnsName}`;
        this.registerOutputs({
            url: this.url,
            serviceName: this.service.name,
            taskDefinitionArn: this.taskDefinition.arn,
            logGroupName: this.logGroup.name,
        });
    }
}
