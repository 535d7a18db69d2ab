/**
 * AWS region names (pure): what `aws:region` may be. A region name is
 * `<area>-<direction>-<n>` in lower case (us-east-1, eu-central-2,
 * ap-southeast-7, us-gov-west-1, cn-north-1); a name of that shape not yet in
 * KNOWN_REGIONS is accepted (AWS opens new regions), anything else is refused.
 */

/** Regions AWS had opened when this was written (commercial, GovCloud, China). */
export const KNOWN_REGIONS: readonly string[] = [
    "af-south-1",
    "ap-east-1", "ap-east-2",
    "ap-northeast-1", "ap-northeast-2", "ap-northeast-3",
    "ap-south-1", "ap-south-2",
    "ap-southeast-1", "ap-southeast-2", "ap-southeast-3", "ap-southeast-4", "ap-southeast-5", "ap-southeast-6", "ap-southeast-7",
    "ca-central-1", "ca-west-1",
    "cn-north-1", "cn-northwest-1",
    "eu-central-1", "eu-central-2",
    "eu-north-1",
    "eu-south-1", "eu-south-2",
    "eu-west-1", "eu-west-2", "eu-west-3",
    "il-central-1",
    "me-central-1", "me-south-1",
    "mx-central-1",
    "sa-east-1",
    "us-east-1", "us-east-2",
    "us-gov-east-1", "us-gov-west-1",
    "us-west-1", "us-west-2",
];

const AREAS = ["af", "ap", "ca", "cn", "eu", "il", "me", "mx", "sa", "us", "us-gov", "us-iso", "us-isob", "us-isof", "eu-isoe"];
const DIRECTIONS = ["north", "south", "east", "west", "central", "northeast", "northwest", "southeast", "southwest"];
const REGION_SHAPE = new RegExp(`^(${AREAS.join("|")})-(${DIRECTIONS.join("|")})-[1-9]$`);

/** Why `region` is not an AWS region name (undefined: it is one). */
export function regionProblem(region: string): string | undefined {
    if (REGION_SHAPE.test(region)) return undefined;
    const near = region.trim().toLowerCase();
    const hint = near !== region && REGION_SHAPE.test(near) ? `; did you mean ${near}?` : "";
    return `is not an AWS region name${hint} (lower case <area>-<direction>-<n>, e.g. ${["us-east-1", "eu-central-1", "ap-southeast-2"].join(", ")}; known: ${KNOWN_REGIONS.join(", ")})`;
}
