/**
 * Cross-field checks of the `network` section (pure). Key paths are relative
 * to the section.
 */
import type { Report } from "../shared/problems";
import { ipToNumber, numberToIp } from "./plan";
import type { NetworkConfig } from "./schema";

/**
 * What one field of `network` cannot say alone: duplicate subnets or zones,
 * zones outside one region (and outside `region`, the stack's `aws:region`,
 * when given), a VPC range that is not a network address or too small for
 * its subnets.
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
    const [address, prefixText] = network.cidr.split("/");
    const prefix = Number(prefixText);
    const octets = address.split(".").map(Number);
    if (octets.some((o) => o > 255)) {
        report(["cidr"], "octets must be 0 to 255");
        return;
    }
    const base = ipToNumber(address);
    if (base % 2 ** (32 - prefix) !== 0) report(["cidr"], `is not a network address; did you mean ${numberToIp(base - (base % 2 ** (32 - prefix)))}/${prefix}?`);
    if (prefix < 16 || prefix > 24) report(["cidr"], "a VPC's prefix must be /16 to /24");
    if (prefix + network.subnetBits > 28) report(["subnetBits"], `/${prefix} plus ${network.subnetBits} bits gives subnets smaller than /28`);
    const slots = 2 ** network.subnetBits / 2;
    if (network.availabilityZones.length > slots) {
        report(["availabilityZones"], `${network.availabilityZones.length} zones need ${network.availabilityZones.length * 2} subnets; subnetBits ${network.subnetBits} gives ${slots * 2}`);
    }
}
