/**
 * PrivateNetwork: the VPC that runners and services live in, with no public IP
 * needed anywhere.
 *
 * `mode: create` — a VPC over ≥ 2 availability zones (named in config, so no
 * lookup): one private subnet per zone, public subnets (and an internet
 * gateway) only when asked for or when NAT needs them, NAT gateways as
 * configured, interface endpoints (ecr.api, ecr.dkr, logs, ssm, ssmmessages,
 * ec2messages, sts) with private DNS behind a security group admitting 443
 * from the VPC's range only, and an S3 gateway endpoint on the private route
 * tables (ECR layers come from S3).
 *
 * `mode: existing` — the VPC and subnets named in config; nothing is created
 * except, when asked, the endpoint security group.
 *
 * The subnet and endpoint layout is computed by `planNetwork` (pure); the
 * component only turns the plan into resources.
 */
import * as aws from "@pulumi/aws";
import * as pulumi from "@pulumi/pulumi";
import {
    type CreateNetworkConfig,
    type InterfaceEndpoint,
    type NatMode,
    type NetworkConfig,
    checkNetwork,
    ipToNumber,
    numberToIp,
} from "./runners-config";

// --------------------------------------------------------------------- plan

export type SubnetTier = "private" | "public";

export interface SubnetPlan {
    readonly tier: SubnetTier;
    readonly az: string;
    readonly cidr: string;
}

export interface NetworkPlan {
    readonly vpcCidr: string;
    /** Private subnets, one per zone, in config order. */
    readonly privateSubnets: readonly SubnetPlan[];
    /** Public subnets, one per zone, or none. */
    readonly publicSubnets: readonly SubnetPlan[];
    readonly nat: NatMode;
    /** Zones that get a NAT gateway (in their public subnet). */
    readonly natZones: readonly string[];
    /** For each zone, the zone whose NAT gateway its private route table uses (absent: no default route). */
    readonly natFor: Readonly<Record<string, string>>;
    /** Interface endpoints, sorted. */
    readonly interfaceEndpoints: readonly InterfaceEndpoint[];
    readonly s3GatewayEndpoint: boolean;
}

/** The `index`-th subnet of `bits` extra prefix bits inside `vpcCidr`. */
export function subnetCidr(vpcCidr: string, bits: number, index: number): string {
    const [address, prefixText] = vpcCidr.split("/");
    const prefix = Number(prefixText) + bits;
    if (prefix > 28) throw new Error(`${vpcCidr} with ${bits} more bits gives /${prefix} subnets, smaller than AWS allows (/28)`);
    if (index < 0 || index >= 2 ** bits) throw new Error(`subnet ${index} does not fit ${vpcCidr} with ${bits} bits`);
    const base = ipToNumber(address);
    return `${numberToIp(base + index * 2 ** (32 - prefix))}/${prefix}`;
}

/** Throws one error listing every problem of a `network` section (paths relative to it). */
export function assertNetwork(config: NetworkConfig, region?: string): void {
    const problems: string[] = [];
    checkNetwork(config, (keys, message) => problems.push(`network.${keys.join(".")}: ${message}`));
    if (region !== undefined && config.mode === "create") {
        config.availabilityZones.forEach((az, i) => {
            if (az.slice(0, -1) !== region) problems.push(`network.availabilityZones.${i}: ${az} is not in region ${region}`);
        });
    }
    if (problems.length > 0) throw new Error(`invalid network:\n  - ${problems.join("\n  - ")}`);
}

/**
 * Subnet layout: private subnets take slots 0..n-1, public subnets the upper
 * half of the slots, so adding public subnets later never renumbers a private one.
 */
export function planNetwork(config: CreateNetworkConfig): NetworkPlan {
    assertNetwork(config);
    const zones = config.availabilityZones;
    const half = 2 ** config.subnetBits / 2;
    const wantPublic = config.publicSubnets || config.natGateways !== "none";
    const natZones = config.natGateways === "none" ? [] : config.natGateways === "single" ? [zones[0]] : [...zones];
    const natFor: Record<string, string> = {};
    for (const az of zones) {
        if (config.natGateways === "single") natFor[az] = zones[0];
        else if (config.natGateways === "perAz") natFor[az] = az;
    }
    return {
        vpcCidr: config.cidr,
        privateSubnets: zones.map((az, i) => ({ tier: "private", az, cidr: subnetCidr(config.cidr, config.subnetBits, i) })),
        publicSubnets: wantPublic ? zones.map((az, i) => ({ tier: "public", az, cidr: subnetCidr(config.cidr, config.subnetBits, half + i) })) : [],
        nat: config.natGateways,
        natZones,
        natFor,
        interfaceEndpoints: [...new Set(config.interfaceEndpoints)].sort(),
        s3GatewayEndpoint: config.s3GatewayEndpoint,
    };
}

/** `com.amazonaws.<region>.<service>` */
export function endpointServiceName(region: string, service: string): string {
    return `com.amazonaws.${region}.${service}`;
}

// ---------------------------------------------------------------- component

export interface PrivateNetworkArgs {
    /** The validated `network` section (`mode` create or existing). Required. */
    readonly config: NetworkConfig;
    /** AWS region (config `aws:region`): endpoint service names, and every zone must be in it. Required. */
    readonly region: string;
    /** Tags put on every taggable resource (cost allocation). Required. */
    readonly tags: Readonly<Record<string, string>>;
}

export class PrivateNetwork extends pulumi.ComponentResource {
    public readonly vpcId: pulumi.Output<string>;
    /** One private subnet per zone. */
    public readonly privateSubnetIds: pulumi.Output<string[]>;
    /** Public subnets; empty unless asked for or needed by NAT. */
    public readonly publicSubnetIds: pulumi.Output<string[]>;
    /** Security group of the interface endpoints (443 from the VPC only); undefined when none was created. */
    public readonly endpointSecurityGroupId: pulumi.Output<string | undefined>;
    /** The VPC's range when known from config. */
    public readonly vpcCidr?: string;
    /** The layout (create mode). */
    public readonly plan?: NetworkPlan;

    constructor(name: string, args: PrivateNetworkArgs, opts?: pulumi.ComponentResourceOptions) {
        super("ml-infra:network:PrivateNetwork", name, {}, opts);
        const { config, region } = args;
        assertNetwork(config, region);
        const tagged = (role: string, extra: Record<string, string> = {}) => ({ ...args.tags, Name: `${name}-${role}`, ...extra });

        if (config.mode === "existing") {
            this.vpcId = pulumi.output(config.vpcId);
            this.privateSubnetIds = pulumi.output([...config.privateSubnetIds]);
            this.publicSubnetIds = pulumi.output([...config.publicSubnetIds]);
            this.vpcCidr = config.endpointSecurityGroup?.vpcCidr;
            this.endpointSecurityGroupId = config.endpointSecurityGroup
                ? this.endpointSecurityGroup(name, config.vpcId, config.endpointSecurityGroup.vpcCidr, tagged).id
                : pulumi.output(undefined);
            this.registerOutputs({ vpcId: this.vpcId, privateSubnetIds: this.privateSubnetIds, publicSubnetIds: this.publicSubnetIds });
            return;
        }

        const plan = planNetwork(config);
        this.plan = plan;
        this.vpcCidr = plan.vpcCidr;
        const vpc = new aws.ec2.Vpc(
            `${name}-vpc`,
            { cidrBlock: plan.vpcCidr, enableDnsSupport: true, enableDnsHostnames: true, tags: tagged("vpc") },
            { parent: this },
        );

        const privateSubnets = plan.privateSubnets.map(
            (s) =>
                new aws.ec2.Subnet(
                    `${name}-private-${s.az}`,
                    {
                        vpcId: vpc.id,
                        availabilityZone: s.az,
                        cidrBlock: s.cidr,
                        mapPublicIpOnLaunch: false,
                        tags: tagged(`private-${s.az}`, { "ml-infra:tier": "private" }),
                    },
                    { parent: this },
                ),
        );

        const publicSubnets: Record<string, aws.ec2.Subnet> = {};
        if (plan.publicSubnets.length > 0) {
            const igw = new aws.ec2.InternetGateway(`${name}-igw`, { vpcId: vpc.id, tags: tagged("igw") }, { parent: this });
            const publicRt = new aws.ec2.RouteTable(`${name}-public-rt`, { vpcId: vpc.id, tags: tagged("public-rt") }, { parent: this });
            new aws.ec2.Route(
                `${name}-public-default`,
                { routeTableId: publicRt.id, destinationCidrBlock: "0.0.0.0/0", gatewayId: igw.id },
                { parent: this },
            );
            for (const s of plan.publicSubnets) {
                const subnet = new aws.ec2.Subnet(
                    `${name}-public-${s.az}`,
                    {
                        vpcId: vpc.id,
                        availabilityZone: s.az,
                        cidrBlock: s.cidr,
                        // Nothing launched here gets a public IP by default: NAT and load balancers bring their own.
                        mapPublicIpOnLaunch: false,
                        tags: tagged(`public-${s.az}`, { "ml-infra:tier": "public" }),
                    },
                    { parent: this },
                );
                new aws.ec2.RouteTableAssociation(`${name}-public-rta-${s.az}`, { subnetId: subnet.id, routeTableId: publicRt.id }, { parent: this });
                publicSubnets[s.az] = subnet;
            }
        }

        const nats: Record<string, aws.ec2.NatGateway> = {};
        for (const az of plan.natZones) {
            const eip = new aws.ec2.Eip(`${name}-nat-eip-${az}`, { domain: "vpc", tags: tagged(`nat-${az}`) }, { parent: this });
            nats[az] = new aws.ec2.NatGateway(
                `${name}-nat-${az}`,
                { allocationId: eip.id, subnetId: publicSubnets[az].id, connectivityType: "public", tags: tagged(`nat-${az}`) },
                { parent: this },
            );
        }

        const privateRts = plan.privateSubnets.map((s, i) => {
            const rt = new aws.ec2.RouteTable(`${name}-private-rt-${s.az}`, { vpcId: vpc.id, tags: tagged(`private-rt-${s.az}`) }, { parent: this });
            new aws.ec2.RouteTableAssociation(`${name}-private-rta-${s.az}`, { subnetId: privateSubnets[i].id, routeTableId: rt.id }, { parent: this });
            const natAz = plan.natFor[s.az];
            if (natAz !== undefined) {
                new aws.ec2.Route(
                    `${name}-private-default-${s.az}`,
                    { routeTableId: rt.id, destinationCidrBlock: "0.0.0.0/0", natGatewayId: nats[natAz].id },
                    { parent: this },
                );
            }
            return rt;
        });

        const endpointSg = this.endpointSecurityGroup(name, vpc.id, plan.vpcCidr, tagged);
        for (const service of plan.interfaceEndpoints) {
            new aws.ec2.VpcEndpoint(
                `${name}-vpce-${service.replace(/\./g, "-")}`,
                {
                    vpcId: vpc.id,
                    serviceName: endpointServiceName(region, service),
                    vpcEndpointType: "Interface",
                    privateDnsEnabled: true,
                    subnetIds: privateSubnets.map((s) => s.id),
                    securityGroupIds: [endpointSg.id],
                    tags: tagged(`vpce-${service}`),
                },
                { parent: this },
            );
        }
        if (plan.s3GatewayEndpoint) {
            new aws.ec2.VpcEndpoint(
                `${name}-vpce-s3`,
                {
                    vpcId: vpc.id,
                    serviceName: endpointServiceName(region, "s3"),
                    vpcEndpointType: "Gateway",
                    routeTableIds: privateRts.map((rt) => rt.id),
                    tags: tagged("vpce-s3"),
                },
                { parent: this },
            );
        }

        this.vpcId = vpc.id;
        this.privateSubnetIds = pulumi.all(privateSubnets.map((s) => s.id));
        this.publicSubnetIds = pulumi.all(plan.publicSubnets.map((s) => publicSubnets[s.az].id));
        this.endpointSecurityGroupId = endpointSg.id;
        this.registerOutputs({
            vpcId: this.vpcId,
            privateSubnetIds: this.privateSubnetIds,
            publicSubnetIds: this.publicSubnetIds,
            endpointSecurityGroupId: this.endpointSecurityGroupId,
        });
    }

    /** Security group for interface endpoints: HTTPS from the VPC's range, nothing else. */
    private endpointSecurityGroup(
        name: string,
        vpcId: pulumi.Input<string>,
        vpcCidr: string,
        tagged: (role: string) => Record<string, string>,
    ): aws.ec2.SecurityGroup {
        const sg = new aws.ec2.SecurityGroup(
            `${name}-endpoints-sg`,
            { vpcId, description: "VPC interface endpoints: HTTPS from inside the VPC only", tags: tagged("endpoints-sg") },
            { parent: this },
        );
        new aws.vpc.SecurityGroupIngressRule(
            `${name}-endpoints-https`,
            {
                securityGroupId: sg.id,
                ipProtocol: "tcp",
                fromPort: 443,
                toPort: 443,
                cidrIpv4: vpcCidr,
                description: "HTTPS from the VPC",
                tags: tagged("endpoints-https"),
            },
            { parent: this },
        );
        return sg;
    }
}
