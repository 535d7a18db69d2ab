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
 * The subnet and endpoint layout is computed by `planNetwork` (./plan, pure);
 * the component only turns the plan into resources. The config it gets is
 * validated by `checkNetwork` (./checks) when the program starts.
 */
import * as aws from "@pulumi/aws";
import * as pulumi from "@pulumi/pulumi";
import { type NetworkPlan, endpointServiceName, planNetwork } from "./plan";
import type { NetworkConfig } from "./schema";

// ---------------------------------------------------------------- component

export interface PrivateNetworkArgs {
    /** The validated `network` section (`mode` create or existing). Required. */
    readonly config: NetworkConfig;
    /** AWS region (config `aws:region`; the zones were checked to be in it): endpoint service names. Required. */
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
