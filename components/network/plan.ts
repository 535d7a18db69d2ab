/**
 * The layout of a created network (pure): subnet ranges per zone and tier,
 * NAT placement, endpoints. PrivateNetwork only turns the plan into resources.
 */
import type { CreateNetworkConfig, InterfaceEndpoint, NatMode } from "./schema";

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

/**
 * Subnet layout: private subnets take slots 0..n-1, public subnets the upper
 * half of the slots, so adding public subnets later never renumbers a private one.
 */
export function planNetwork(config: CreateNetworkConfig): NetworkPlan {
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

export function ipToNumber(ip: string): number {
    return ip.split(".").reduce((acc, o) => acc * 256 + Number(o), 0);
}

export function numberToIp(n: number): string {
    return [24, 16, 8, 0].map((shift) => Math.floor(n / 2 ** shift) % 256).join(".");
}
