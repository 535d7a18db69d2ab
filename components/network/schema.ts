/**
 * The `network` section (zod schema and inferred types): the VPC that runners
 * and services live in, either created here (`mode: create`) or named
 * (`mode: existing`). Every field says its default.
 */
import { z } from "zod";
import { cidr, strict } from "../shared/schema";

/** Interface endpoints runners and tasks need with no public IP. */
export const INTERFACE_ENDPOINTS = ["ec2messages", "ecr.api", "ecr.dkr", "ecs", "ecs-agent", "ecs-telemetry", "logs", "ssm", "ssmmessages", "sts"] as const;
/** Created when a stack names none: what runners need with no public IP (serving stacks add the ecs ones). */
export const DEFAULT_INTERFACE_ENDPOINTS: readonly InterfaceEndpoint[] = ["ec2messages", "ecr.api", "ecr.dkr", "logs", "ssm", "ssmmessages", "sts"];
export type InterfaceEndpoint = (typeof INTERFACE_ENDPOINTS)[number];

/** NAT layout: none (endpoints only), one shared NAT gateway, or one per availability zone. */
export const NAT_MODES = ["none", "single", "perAz"] as const;
export type NatMode = (typeof NAT_MODES)[number];

const azName = z.string().regex(/^[a-z]{2}(-[a-z]+)+-\d[a-z]$/, "must be an availability zone name such as us-east-1a");
const vpcId = z.string().regex(/^vpc-[0-9a-f]{8,17}$/, "must be a VPC id such as vpc-0123456789abcdef0");
const subnetId = z.string().regex(/^subnet-[0-9a-f]{8,17}$/, "must be a subnet id such as subnet-0123456789abcdef0");

const networkCreateSchema = strict({
    /** `create` (default when `mode` is omitted): this stack creates the VPC. */
    mode: z.literal("create"),
    /** VPC address range. Default `10.40.0.0/16`. */
    cidr: cidr.default("10.40.0.0/16"),
    /** Availability zones to spread subnets over, at least two (named here so no lookup is needed). No default. */
    availabilityZones: z.array(azName).min(2, "needs at least two availability zones"),
    /**
     * Bits added to the VPC prefix for each subnet: a /16 with 4 gives /20 subnets.
     * Private subnets take the lower half of the slots, public ones the upper half,
     * so turning public subnets on later never moves a private subnet. Default 4.
     */
    subnetBits: z.number().int().min(1).max(8).default(4),
    /** Create public subnets (for an internet-facing load balancer) even without NAT. Default false. */
    publicSubnets: z.boolean().default(false),
    /**
     * NAT gateways for outbound internet from private subnets (build steps that
     * download packages need it): `none`, `single` (cheapest) or `perAz` (zone
     * failure tolerant). Any value other than `none` creates public subnets. Default `none`.
     */
    natGateways: z.enum(NAT_MODES).default("none"),
    /** Interface endpoints to create (private DNS on). Default: all of ecr.api, ecr.dkr, logs, ssm, ssmmessages, ec2messages, sts. */
    interfaceEndpoints: z.array(z.enum(INTERFACE_ENDPOINTS)).default([...DEFAULT_INTERFACE_ENDPOINTS]),
    /** S3 gateway endpoint on the private route tables (ECR layers live in S3; it is free). Default true. */
    s3GatewayEndpoint: z.boolean().default(true),
});

const networkExistingSchema = strict({
    /** `existing`: use a VPC made elsewhere; nothing is created but the optional endpoint security group. */
    mode: z.literal("existing"),
    /** The VPC. No default. */
    vpcId,
    /** Private subnets (at least two, in different zones) for runners and services. No default. */
    privateSubnetIds: z.array(subnetId).min(2, "needs at least two private subnets in different availability zones"),
    /** Public subnets, if the VPC has any a stack may use. Default []. */
    publicSubnetIds: z.array(subnetId).default([]),
    /** Create a security group for VPC endpoints admitting 443 from `vpcCidr` only. Default: not created. */
    endpointSecurityGroup: strict({
        /** The VPC's address range. No default. */
        vpcCidr: cidr,
    }).optional(),
});

/**
 * `network` section. `mode` may be omitted and then means `create`. An explicit
 * `publicSubnets: false` next to NAT gateways (which live in public subnets)
 * is refused: the NAT would silently override it.
 */
export const networkSchema = z.preprocess(
    (raw, ctx) => {
        if (raw === null || typeof raw !== "object" || Array.isArray(raw)) return raw;
        const fields = raw as Record<string, unknown>;
        const nat = fields.natGateways;
        if (fields.publicSubnets === false && (nat === "single" || nat === "perAz")) {
            ctx.addIssue({
                code: "custom",
                path: ["publicSubnets"],
                message: `contradicts natGateways: ${nat}: NAT gateways live in public subnets, so that creates them; remove publicSubnets: false, or set natGateways: none (endpoints only)`,
            });
        }
        return "mode" in fields ? raw : { ...fields, mode: "create" };
    },
    z.discriminatedUnion("mode", [networkCreateSchema, networkExistingSchema]),
);

export type NetworkConfig = z.infer<typeof networkSchema>;
export type CreateNetworkConfig = Extract<NetworkConfig, { mode: "create" }>;
