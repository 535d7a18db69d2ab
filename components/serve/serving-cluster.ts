/**
 * ServingCluster: one ECS cluster per environment (Container Insights on) and
 * one capacity provider per hardware kind its services need: an Auto Scaling
 * group of the ECS-optimized AL2023 AMI for that kind (GPU, arm64 for
 * Graviton, x86_64), AMI resolved by EC2 from the public SSM parameter at
 * launch (`resolve:ssm:` in the launch template: no invoke, no diff when AWS
 * publishes a new AMI), ECS managed scaling, managed termination protection
 * (with protectFromScaleIn), managed draining, IMDSv2 only, no public IP.
 */
import * as aws from "@pulumi/aws";
import * as pulumi from "@pulumi/pulumi";
import { assumeRolePolicy } from "../shared/iam";
import { IMDSV2_ONLY, encryptedRootVolume, privateNetworkInterfaces } from "../shared/launch-template";
import { CLUSTER_NAME_RE, capacityProviderName, ecsAgentConfig, ecsAmiImageId, ecsUserData, usesSpot } from "./ecs";
import { type HardwareKind, HARDWARE_KINDS } from "./hardware-kinds";
import type { CapacityConfig } from "./schema";

type Tags = Readonly<Record<string, string>>;

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

        // The config was checked when the program started; these are about how the args fit.
        const problems: string[] = [];
        if (!CLUSTER_NAME_RE.test(clusterName)) problems.push(`clusterName ${JSON.stringify(clusterName)} must be letters, digits, - and _ (at most 200)`);
        if (/^(aws|ecs|fargate)/i.test(clusterName)) problems.push(`clusterName ${JSON.stringify(clusterName)} may not start with aws, ecs or fargate (capacity providers are named after it)`);
        if (hardware.length === 0) problems.push("needs at least one hardware kind");
        for (const kind of hardware) {
            if (args.capacity[kind].maxSize < 1) problems.push(`capacity.${kind}.maxSize must be at least 1 (a service needs ${kind} capacity)`);
        }
        if (problems.length > 0) throw new pulumi.ResourceError(problems.join("; "), this);

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
            const capacity = this.capacityFor(name, kind, args, clusterName, profile.arn);
            groups[kind] = capacity.autoScalingGroup;
            capacityProviders[kind] = capacity.capacityProvider;
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

    /** One kind's launch template, Auto Scaling group (instances of the kind's ECS AMI) and capacity provider. */
    private capacityFor(
        name: string,
        kind: HardwareKind,
        args: ServingClusterArgs,
        clusterName: string,
        instanceProfileArn: pulumi.Output<string>,
    ): { autoScalingGroup: aws.autoscaling.Group; capacityProvider: aws.ecs.CapacityProvider } {
        const { tags } = args;
        const group = args.capacity[kind];
        const spot = usesSpot(group);
        const instanceName = `${clusterName}-${kind}`;
        const launchTemplate = new aws.ec2.LaunchTemplate(
            `${name}-${kind}-lt`,
            {
                description: `ECS ${kind} instances of ${clusterName}`,
                imageId: ecsAmiImageId(kind),
                iamInstanceProfile: { arn: instanceProfileArn },
                metadataOptions: IMDSV2_ONLY,
                networkInterfaces: privateNetworkInterfaces(this.instanceSecurityGroup.id),
                blockDeviceMappings: encryptedRootVolume({ deviceName: "/dev/xvda", sizeGiB: group.rootVolumeGiB }),
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
        const capacityProvider = new aws.ecs.CapacityProvider(
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
        return { autoScalingGroup: asg, capacityProvider };
    }

    /** Name of the capacity provider for a kind; throws when this cluster has none. */
    public capacityProviderFor(kind: HardwareKind): string {
        if (!this.hardware.includes(kind)) {
            throw new pulumi.ResourceError(`cluster ${this.clusterName} has no ${kind} capacity (it has: ${this.hardware.join(", ")}); add the kind to ServingCluster's hardware`, this);
        }
        return capacityProviderName(this.clusterName, kind);
    }
}
