/**
 * Cross-field checks of the `network` section (pure). Key paths are relative
 * to the section.
 */
import type { Report } from "../shared/problems";
import { PRIVATE_RANGES, ingressRangeProblem, isPrivateRange } from "../shared/cidr";
import type { NetworkConfig } from "./schema";

/**
 * What one field of `network` cannot say alone: duplicate subnets or zones,
 * zones outside one region (and outside `region`, the stack's `aws:region`,
 * when given), a VPC range outside private address space or too small for
 * its subnets, an endpoint security group open to public address space.
 */
export function checkNetwork(network: NetworkConfig, report: Report, region?: string): void {
    if (network.mode === "existing") {
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
    const seen = new Set<string>();
    network.availabilityZones.forEach((az, i) => {
        if (seen.has(az)) report(["availabilityZones", i], "availability zone listed twice");
        seen.add(az);
    });
    const zonesRegion = network.availabilityZones[0].slice(0, -1);
    network.availabilityZones.forEach((az, i) => {
        if (az.slice(0, -1) !== zonesRegion) report(["availabilityZones", i], `all zones must be in one region (${zonesRegion})`);
        else if (region !== undefined && zonesRegion !== region) report(["availabilityZones", i], `${az} is not in region ${region} (aws:region)`);
    });
    // The schema has checked it is a network (octets, host bits).
    const prefix = Number(network.cidr.split("/")[1]);
    if (!isPrivateRange(network.cidr)) report(["cidr"], `a VPC's range must be private address space (${PRIVATE_RANGES.join(", ")}), or its addresses shadow the internet's`);
    if (prefix < 16 || prefix > 24) report(["cidr"], "a VPC's prefix must be /16 to /24");
    if (prefix + network.subnetBits > 28) report(["subnetBits"], `/${prefix} plus ${network.subnetBits} bits gives subnets smaller than /28`);
    const slots = 2 ** network.subnetBits / 2;
    if (network.availabilityZones.length > slots) {
        report(["availabilityZones"], `${network.availabilityZones.length} zones need ${network.availabilityZones.length * 2} subnets; subnetBits ${network.subnetBits} gives ${slots * 2}`);
    }
}
