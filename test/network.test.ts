/**
 * PrivateNetwork: the pure layout (subnet math, NAT placement, checks) and
 * the component under mocks, driven by a list of network configs.
 */
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { checkNetwork } from "../components/network/checks";
import { type NetworkPlan, ipToNumber, planNetwork, subnetCidr } from "../components/network/plan";
import { PrivateNetwork } from "../components/network/private-network";
import { type CreateNetworkConfig, DEFAULT_INTERFACE_ENDPOINTS, INTERFACE_ENDPOINTS, type NetworkConfig, networkSchema } from "../components/network/schema";
import { type Registered, evaluateFailure, runUnderMocks } from "./harness";

const TAGS = { project: "ml-infra", stack: "build", "cost-center": "ml-platform", "managed-by": "pulumi" };

function create(raw: Record<string, unknown>): CreateNetworkConfig {
    const parsed = networkSchema.parse(raw);
    if (parsed.mode !== "create") throw new Error("expected create mode");
    return parsed;
}

function problemsOf(raw: unknown): string[] {
    const problems: string[] = [];
    checkNetwork(networkSchema.parse(raw), (keys, message) => problems.push(`${keys.join(".")}: ${message}`));
    return problems;
}

const range = (c: string) => {
    const [ip, p] = c.split("/");
    const start = ipToNumber(ip);
    return { start, end: start + 2 ** (32 - Number(p)) };
};

describe("network config", () => {
    it("defaults to create mode with every endpoint, no public subnets and no NAT", () => {
        const cfg = create({ availabilityZones: ["us-east-1a", "us-east-1b"] });
        expect(cfg).toMatchObject({ mode: "create", cidr: "10.40.0.0/16", subnetBits: 4, publicSubnets: false, natGateways: "none", s3GatewayEndpoint: true });
        expect([...cfg.interfaceEndpoints].sort()).toEqual([...DEFAULT_INTERFACE_ENDPOINTS].sort());
        expect(INTERFACE_ENDPOINTS).toEqual(expect.arrayContaining(["ecs", "ecs-agent", "ecs-telemetry"]));
    });

    it("rejects one zone, unknown keys (listing the allowed ones) and an existing VPC without subnets", () => {
        expect(networkSchema.safeParse({ availabilityZones: ["us-east-1a"] }).success).toBe(false);
        const unknown = networkSchema.safeParse({ availabilityZones: ["us-east-1a", "us-east-1b"], nat: "single" });
        expect(unknown.success).toBe(false);
        expect(unknown.error?.issues[0].message).toMatch(/unknown key; allowed: .*natGateways/);
        expect(networkSchema.safeParse({ mode: "existing", vpcId: "vpc-0123456789abcdef0" }).success).toBe(false);
    });

    it("reports a misaligned range, repeated or cross-region zones, and too many zones for the subnet bits", () => {
        expect(networkSchema.safeParse({ cidr: "10.40.1.0/16", availabilityZones: ["us-east-1a", "us-east-1b"] }).error?.issues[0].message).toBe(
            "is not a network address (host bits are set); did you mean 10.40.0.0/16?",
        );
        expect(problemsOf({ cidr: "52.40.0.0/16", availabilityZones: ["us-east-1a", "us-east-1b"] })).toEqual([
            "cidr: a VPC's range must be private address space (10.0.0.0/8, 172.16.0.0/12, 192.168.0.0/16, 100.64.0.0/10), or its addresses shadow the internet's",
        ]);
        expect(problemsOf({ availabilityZones: ["us-east-1a", "us-east-1a"] })).toEqual(["availabilityZones.1: availability zone listed twice"]);
        expect(problemsOf({ availabilityZones: ["us-east-1a", "us-west-2b"] })).toEqual(["availabilityZones.1: all zones must be in one region (us-east-1)"]);
        expect(problemsOf({ subnetBits: 1, availabilityZones: ["us-east-1a", "us-east-1b"] })).toEqual([
            "availabilityZones: 2 zones need 4 subnets; subnetBits 1 gives 2",
        ]);
        expect(problemsOf({ mode: "existing", vpcId: "vpc-0123456789abcdef0", privateSubnetIds: ["subnet-0123456789abcdef0", "subnet-0123456789abcdef0"] })).toEqual([
            "privateSubnetIds.1: subnet listed twice",
        ]);
    });
});

describe("planNetwork", () => {
    it("computes subnet ranges", () => {
        expect(subnetCidr("10.40.0.0/16", 4, 0)).toBe("10.40.0.0/20");
        expect(subnetCidr("10.40.0.0/16", 4, 9)).toBe("10.40.144.0/20");
        expect(() => subnetCidr("10.40.0.0/24", 5, 0)).toThrow(/smaller than AWS allows/);
    });

    it("never moves a private subnet when public subnets are turned on", () => {
        const zones = ["us-east-1a", "us-east-1b", "us-east-1c"];
        const without = planNetwork(create({ availabilityZones: zones }));
        const withPublic = planNetwork(create({ availabilityZones: zones, natGateways: "perAz" }));
        expect(without.publicSubnets).toEqual([]);
        expect(withPublic.privateSubnets).toEqual(without.privateSubnets);
        expect(withPublic.publicSubnets.map((s) => s.az)).toEqual(zones);
    });

    it("places NAT gateways: none, one shared, or one per zone used by that zone", () => {
        const zones = ["us-east-1a", "us-east-1b"];
        expect(planNetwork(create({ availabilityZones: zones })).natFor).toEqual({});
        expect(planNetwork(create({ availabilityZones: zones, natGateways: "single" }))).toMatchObject({
            natZones: ["us-east-1a"],
            natFor: { "us-east-1a": "us-east-1a", "us-east-1b": "us-east-1a" },
        });
        expect(planNetwork(create({ availabilityZones: zones, natGateways: "perAz" })).natFor).toEqual({ "us-east-1a": "us-east-1a", "us-east-1b": "us-east-1b" });
    });

    it("lays out disjoint subnets inside the VPC for any valid config (property)", () => {
        const letters = "abcdef".split("");
        fc.assert(
            fc.property(
                fc.integer({ min: 16, max: 22 }),
                fc.integer({ min: 0, max: 255 }),
                fc.integer({ min: 2, max: 6 }),
                fc.integer({ min: 2, max: 6 }),
                fc.boolean(),
                (prefix, second, zoneCount, bits, pub) => {
                    fc.pre(prefix + bits <= 28 && zoneCount <= 2 ** bits / 2);
                    const base = ipToNumber(`10.${second}.0.0`);
                    const aligned = base - (base % 2 ** (32 - prefix));
                    const cidr = `10.${Math.floor(aligned / 65536) % 256}.${Math.floor(aligned / 256) % 256}.0/${prefix}`;
                    const plan: NetworkPlan = planNetwork(create({ cidr, subnetBits: bits, publicSubnets: pub, availabilityZones: letters.slice(0, zoneCount).map((l) => `eu-west-1${l}`) }));
                    const vpc = range(cidr);
                    const subnets = [...plan.privateSubnets, ...plan.publicSubnets].map((s) => range(s.cidr));
                    expect(subnets).toHaveLength(pub ? zoneCount * 2 : zoneCount);
                    for (const s of subnets) expect(s.start >= vpc.start && s.end <= vpc.end).toBe(true);
                    const sorted = [...subnets].sort((a, b) => a.start - b.start);
                    sorted.slice(1).forEach((s, i) => expect(s.start).toBeGreaterThanOrEqual(sorted[i].end));
                },
            ),
        );
    });
});

// ------------------------------------------------------------ under mocks

/** The network configs the stacks use (the integrator adds the real stack files' sections here). */
const CREATE_CASES: ReadonlyArray<{ readonly name: string; readonly raw: Record<string, unknown> }> = [
    { name: "endpoints only", raw: { availabilityZones: ["us-east-1a", "us-east-1b"] } },
    { name: "single NAT", raw: { cidr: "10.50.0.0/16", availabilityZones: ["us-east-1a", "us-east-1b", "us-east-1c"], natGateways: "single" } },
    { name: "NAT per zone", raw: { availabilityZones: ["us-east-1a", "us-east-1b"], natGateways: "perAz" } },
    { name: "public subnets, no NAT", raw: { availabilityZones: ["us-east-1a", "us-east-1b"], publicSubnets: true, interfaceEndpoints: ["ecr.api", "ecr.dkr"] } },
];

async function deploy(config: NetworkConfig, region = "us-east-1") {
    let network: PrivateNetwork | undefined;
    const ev = await runUnderMocks("build", {}, () => {
        network = new PrivateNetwork("net", { config, region, tags: TAGS });
        return { vpcId: network.vpcId, privateSubnetIds: network.privateSubnetIds, publicSubnetIds: network.publicSubnetIds, endpointSg: network.endpointSecurityGroupId };
    });
    return { ev, network: network as PrivateNetwork };
}

const UNTAGGABLE = new Set(["aws:ec2/route:Route", "aws:ec2/routeTableAssociation:RouteTableAssociation"]);

describe.each(CREATE_CASES)("PrivateNetwork (create): $name", ({ raw }) => {
    const config = create(raw);
    const plan = planNetwork(config);

    it("creates private subnets in every zone that never hand out public IPs", async () => {
        const { ev } = await deploy(config);
        const subnets = ev.ofType("aws:ec2/subnet:Subnet");
        const privates = subnets.filter((s) => (s.inputs.tags as Record<string, string>)["ml-infra:tier"] === "private");
        expect(privates.map((s) => s.inputs.availabilityZone)).toEqual([...config.availabilityZones].sort());
        for (const s of subnets) expect(s.inputs.mapPublicIpOnLaunch).toBe(false);
        const vpc = ev.ofType("aws:ec2/vpc:Vpc")[0].inputs;
        expect(vpc).toMatchObject({ cidrBlock: config.cidr, enableDnsSupport: true, enableDnsHostnames: true });
    });

    it("has an internet gateway and public subnets only when asked for or needed by NAT", async () => {
        const { ev } = await deploy(config);
        const wantPublic = config.publicSubnets || config.natGateways !== "none";
        expect(ev.ofType("aws:ec2/internetGateway:InternetGateway")).toHaveLength(wantPublic ? 1 : 0);
        expect(ev.ofType("aws:ec2/natGateway:NatGateway")).toHaveLength(plan.natZones.length);
        const defaults = ev.ofType("aws:ec2/route:Route").filter((r) => r.inputs.natGatewayId !== undefined);
        expect(defaults).toHaveLength(Object.keys(plan.natFor).length);
        for (const route of defaults) {
            const az = route.name.replace("net-private-default-", "");
            expect(route.inputs.natGatewayId).toBe(`net-nat-${plan.natFor[az]}-id`);
        }
    });

    it("creates the interface endpoints with private DNS behind a group admitting 443 from the VPC only", async () => {
        const { ev } = await deploy(config);
        const endpoints = ev.ofType("aws:ec2/vpcEndpoint:VpcEndpoint");
        const iface = endpoints.filter((e) => e.inputs.vpcEndpointType === "Interface");
        expect(iface.map((e) => e.inputs.serviceName).sort()).toEqual(plan.interfaceEndpoints.map((s) => `com.amazonaws.us-east-1.${s}`).sort());
        for (const e of iface) {
            expect(e.inputs).toMatchObject({ privateDnsEnabled: true, securityGroupIds: ["net-endpoints-sg-id"] });
            expect(e.inputs.subnetIds).toHaveLength(config.availabilityZones.length);
        }
        const rules = ev.ofType("aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule");
        expect(rules.map((r) => r.inputs)).toEqual([
            expect.objectContaining({ securityGroupId: "net-endpoints-sg-id", ipProtocol: "tcp", fromPort: 443, toPort: 443, cidrIpv4: config.cidr }),
        ]);
    });

    it("puts the S3 gateway endpoint on every private route table", async () => {
        const { ev } = await deploy(config);
        const s3 = ev.ofType("aws:ec2/vpcEndpoint:VpcEndpoint").filter((e) => e.inputs.vpcEndpointType === "Gateway");
        expect(s3).toHaveLength(1);
        expect(s3[0].inputs.serviceName).toBe("com.amazonaws.us-east-1.s3");
        expect([...(s3[0].inputs.routeTableIds as string[])].sort()).toEqual(config.availabilityZones.map((az) => `net-private-rt-${az}-id`).sort());
    });

    it("tags every taggable resource, parents and names every child after the component", async () => {
        const { ev } = await deploy(config);
        const component = ev.ofType("ml-infra:network:PrivateNetwork")[0];
        const children = ev.resources.filter((r) => r !== component);
        for (const r of children) {
            expect(r.parent).toBe(component.urn);
            expect(r.name.startsWith("net-")).toBe(true);
            if (!UNTAGGABLE.has(r.type)) expect(r.inputs.tags, `${r.type} ${r.name}`).toMatchObject(TAGS);
        }
    });

    it("exports the private subnets in zone order and is deterministic", async () => {
        const first = await deploy(config);
        const second = await deploy(config);
        expect(first.ev.outputs.privateSubnetIds).toEqual(config.availabilityZones.map((az) => `net-private-${az}-id`));
        const strip = (rs: Registered[]) => rs.map((r) => ({ type: r.type, name: r.name, inputs: r.inputs }));
        expect(strip(second.ev.resources)).toEqual(strip(first.ev.resources));
    });
});

describe("PrivateNetwork (existing)", () => {
    const base = { mode: "existing", vpcId: "vpc-0123456789abcdef0", privateSubnetIds: ["subnet-0123456789abcdef0", "subnet-0123456789abcdef1"] };

    it("creates nothing and passes the named VPC and subnets through", async () => {
        const { ev } = await deploy(networkSchema.parse(base));
        expect(ev.resources.map((r) => r.type)).toEqual(["ml-infra:network:PrivateNetwork"]);
        expect(ev.outputs).toMatchObject({ vpcId: base.vpcId, privateSubnetIds: base.privateSubnetIds, publicSubnetIds: [] });
    });

    it("creates only the endpoint security group when asked", async () => {
        const { ev } = await deploy(networkSchema.parse({ ...base, endpointSecurityGroup: { vpcCidr: "10.7.0.0/16" } }));
        expect(ev.resources.map((r) => r.type).sort()).toEqual(
            ["ml-infra:network:PrivateNetwork", "aws:ec2/securityGroup:SecurityGroup", "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule"].sort(),
        );
        expect(ev.ofType("aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule")[0].inputs).toMatchObject({ fromPort: 443, toPort: 443, cidrIpv4: "10.7.0.0/16" });
        expect(ev.outputs.endpointSg).toBe("net-endpoints-sg-id");
    });
});

describe("a network PrivateNetwork could not build is refused before anything is registered", () => {
    const stackWith = (network: Record<string, unknown>, region = "us-east-1") => ({
        "aws:region": region,
        "ml-infra:network": network,
        "ml-infra:build": { images: [{ name: "inference", context: "images/inference-server", targets: ["cpu-avx2"] }] },
    });

    it("zones outside the region", async () => {
        const config = stackWith({ availabilityZones: ["eu-west-1a", "eu-west-1b"] });
        const { error, registered } = await evaluateFailure("build", config);
        expect(error.message).toMatch(/ml-infra:network\.availabilityZones\[0\] = "eu-west-1a": eu-west-1a is not in region us-east-1/);
        expect(registered).toBe(0);
    });

    it("a misaligned range", async () => {
        const { error, registered } = await evaluateFailure("build", stackWith({ cidr: "10.40.0.1/16", availabilityZones: ["us-east-1a", "us-east-1b"] }));
        expect(error.message).toMatch(/ml-infra:network\.cidr = "10\.40\.0\.1\/16": is not a network address/);
        expect(registered).toBe(0);
    });
});
