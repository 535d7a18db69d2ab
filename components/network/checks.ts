/**
 * Cross-field checks of the `network` section (pure). Key paths are relative
 * to the section.
 */
import type { Report } from "../shared/problems";
import { PRIVATE_RANGES, ingressRangeProblem, isPrivateRange } from "../shared/cidr";
import { regionProblem } from "../shared/region";
import type { CreateNetworkConfig, InterfaceEndpoint, NetworkConfig } from "./schema";

/** What anything in a VPC without NAT needs: runners and ECS hosts alike pull images (ECR API and registry, layers from S3) and send logs. */
export const ENDPOINTS_WITHOUT_NAT: readonly InterfaceEndpoint[] = ["ecr.api", "ecr.dkr", "logs"];

/** What build runners need besides, without NAT: SSM (their TLS key parameter, the agent CI's tunnel goes through). */
export const RUNNER_ENDPOINTS_WITHOUT_NAT: readonly InterfaceEndpoint[] = ["ssm", "ssmmessages", "ec2messages"];

/**
 * Without NAT, the endpoints a created network lacks for what lives in it:
 * `ENDPOINTS_WITHOUT_NAT` and the S3 gateway endpoint always, and
 * `RUNNER_ENDPOINTS_WITHOUT_NAT` when `forRunners` (the stack has a `runners`
 * section). Keys are relative to the `network` section. Nothing with NAT, or
 * in an existing VPC (its routes are not known here).
 */
export function endpointProblems(network: NetworkConfig, report: Report, forRunners = false): void {
    if (network.mode !== "create" || network.natGateways !== "none") return;
    const wanted = [...ENDPOINTS_WITHOUT_NAT, ...(forRunners ? RUNNER_ENDPOINTS_WITHOUT_NAT : [])];
    const missing = wanted.filter((e) => !network.interfaceEndpoints.includes(e));
    if (missing.length > 0) {
        const who = forRunners ? "build runners pull images through ecr.api and ecr.dkr, send logs through logs and read their TLS key and take CI's tunnel through ssm, ssmmessages and ec2messages" : "runners and ECS hosts pull images through ecr.api and ecr.dkr and send logs through logs";
        report(["interfaceEndpoints"], `without NAT (natGateways: none) the VPC reaches AWS services only through endpoints, and ${who}: add ${missing.join(", ")}, or set natGateways: single`);
    }
    if (!network.s3GatewayEndpoint) {
        report(["s3GatewayEndpoint"], "without NAT (natGateways: none) image layers come from S3 through this endpoint only (it is free): set it to true, or set natGateways: single");
    }
}

/**
 * What one field of `network` cannot say alone: duplicate subnets or zones,
 * zones outside one region (and outside `region`, the stack's `aws:region`,
 * when given), a VPC range outside private address space or too small for
 * its subnets, an endpoint security group open to public address space,
 * and, without NAT, the interface endpoints the hosts need (`forRunners`: the
 * stack runs build runners, which also need the SSM endpoints).
 */
export function checkNetwork(network: NetworkConfig, report: Report, region?: string, forRunners = false): void {
    if (network.mode === "existing") {
        const badRegion = region === undefined ? undefined : regionProblem(region);
        if (badRegion) report(["vpcId"], `cannot be used: aws:region ${JSON.stringify(region)} ${badRegion}`);
        const dupes = (ids: readonly string[], key: string) => {
            const seen = new Set<string>();
            ids.forEach((id, i) => {
                if (seen.has(id)) report([key, i], "subnet listed twice");
                seen.add(id);
            });
        };
        const endpointRange = network.endpointSecurityGroup?.vpcCidr;
        if (endpointRange !== undefined) {
            const problem = ingressRangeProblem(endpointRange);
            if (problem) report(["endpointSecurityGroup", "vpcCidr"], problem);
        }
        dupes(network.privateSubnetIds, "privateSubnetIds");
        dupes(network.publicSubnetIds, "publicSubnetIds");
        network.publicSubnetIds.forEach((id, i) => {
            if (network.privateSubnetIds.includes(id)) report(["publicSubnetIds", i], "is also listed as a private subnet");
        });
        return;
    }
    checkZones(network, report, region);
    // The schema has checked it is a network (octets, host bits).
    const prefix = Number(network.cidr.split("/")[1]);
    if (!isPrivateRange(network.cidr)) report(["cidr"], `a VPC's range must be private address space (${PRIVATE_RANGES.join(", ")}), or its addresses shadow the internet's`);
    if (prefix < 16 || prefix > 24) {
        // The subnets of a range that is refused anyway are not worth a second message.
        report(["cidr"], "a VPC's prefix must be /16 to /24");
    } else {
        if (prefix + network.subnetBits > 28) report(["subnetBits"], `/${prefix} plus ${network.subnetBits} bits gives subnets smaller than /28`);
        const slots = 2 ** network.subnetBits / 2;
        if (network.availabilityZones.length > slots) {
            report(["availabilityZones"], `${network.availabilityZones.length} zones need ${network.availabilityZones.length * 2} subnets; subnetBits ${network.subnetBits} gives ${slots * 2}`);
        }
    }
    endpointProblems(network, report, forRunners);
}

/**
 * Zones: no duplicates, all in one region and in `region` (aws:region). An
 * `aws:region` that is no region name at all is one problem, and then the
 * zones are not compared with it.
 */
function checkZones(network: CreateNetworkConfig, report: Report, region?: string): void {
    const seen = new Set<string>();
    network.availabilityZones.forEach((az, i) => {
        if (seen.has(az)) report(["availabilityZones", i], "availability zone listed twice");
        seen.add(az);
    });
    const badRegion = region === undefined ? undefined : regionProblem(region);
    if (region !== undefined && badRegion) report(["availabilityZones"], `cannot be checked: aws:region ${JSON.stringify(region)} ${badRegion}`);
    const zonesRegion = network.availabilityZones[0].slice(0, -1);
    network.availabilityZones.forEach((az, i) => {
        if (az.slice(0, -1) !== zonesRegion) report(["availabilityZones", i], `all zones must be in one region (${zonesRegion})`);
        else if (region !== undefined && !badRegion && zonesRegion !== region) report(["availabilityZones", i], `${az} is not in region ${region} (aws:region)`);
    });
}
