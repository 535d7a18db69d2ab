/**
 * An internal load balancer in front of private targets, with the two
 * security groups and the rules between them (a named part, not a component:
 * its resources are children of the component that calls it, so their URNs
 * are that component's):
 *
 *   sources --(listener port)--> front group (the load balancer)
 *           --(target port)-->   back group (the targets) --> the targets' egress
 *
 * Every rule is its own aws.vpc rule resource, never inline, so the policy
 * pack sees each one.
 */
import * as aws from "@pulumi/aws";
import type * as pulumi from "@pulumi/pulumi";

type Tags = Readonly<Record<string, string>>;

/** One named resource of the part: its resource name, description and tags. */
export interface PartSpec {
    readonly name: string;
    readonly description: string;
    readonly tags: Tags;
}

/** One ingress source of the front group: an address range or a security group. */
export interface IngressSourceSpec extends PartSpec {
    readonly cidrIpv4?: string;
    readonly referencedSecurityGroupId?: string;
}

export interface PrivateLoadBalancerSpec {
    readonly vpcId: pulumi.Input<string>;
    /** Port the load balancer listens on (what sources may reach). */
    readonly listenerPort: number;
    /** Port of the targets (the only port the load balancer reaches). */
    readonly targetPort: number;
    /** The load balancer's group: admits `sources` on the listener port. */
    readonly frontGroup: PartSpec;
    /** The targets' group: admits the front group on the target port only. */
    readonly backGroup: PartSpec;
    readonly sources: readonly IngressSourceSpec[];
    /**
     * Also admit the targets themselves on the listener port (a connection a
     * target's own agent makes to the load balancer, e.g. an SSM tunnel).
     * Default: not admitted.
     */
    readonly admitTargets?: PartSpec;
    /** Egress rule front -> back on the target port. */
    readonly toTargets: PartSpec;
    /** Ingress rule of the back group from the front group. */
    readonly fromLoadBalancer: PartSpec;
    /** What the targets may reach (one egress rule). */
    readonly targetEgress: PartSpec & { readonly ipProtocol: string; readonly port?: number; readonly cidrIpv4: string };
    /** The load balancer: always internal, always behind the front group. */
    readonly loadBalancer: { readonly name: string; readonly args: Omit<aws.lb.LoadBalancerArgs, "internal" | "securityGroups"> };
}

export interface PrivateLoadBalancer {
    readonly frontGroup: aws.ec2.SecurityGroup;
    readonly backGroup: aws.ec2.SecurityGroup;
    readonly loadBalancer: aws.lb.LoadBalancer;
}

/** Creates the groups, their rules and the internal load balancer as children of `parent`. */
export function privateLoadBalancer(parent: pulumi.Resource, spec: PrivateLoadBalancerSpec): PrivateLoadBalancer {
    const opts = { parent };
    const group = (part: PartSpec) =>
        new aws.ec2.SecurityGroup(part.name, { vpcId: spec.vpcId, description: part.description, tags: part.tags }, opts);
    const frontGroup = group(spec.frontGroup);
    const backGroup = group(spec.backGroup);
    const tcp = (port: number) => ({ ipProtocol: "tcp", fromPort: port, toPort: port });

    for (const source of spec.sources) {
        new aws.vpc.SecurityGroupIngressRule(
            source.name,
            {
                securityGroupId: frontGroup.id,
                ...tcp(spec.listenerPort),
                cidrIpv4: source.cidrIpv4,
                referencedSecurityGroupId: source.referencedSecurityGroupId,
                description: source.description,
                tags: source.tags,
            },
            opts,
        );
    }
    if (spec.admitTargets) {
        new aws.vpc.SecurityGroupIngressRule(
            spec.admitTargets.name,
            {
                securityGroupId: frontGroup.id,
                ...tcp(spec.listenerPort),
                referencedSecurityGroupId: backGroup.id,
                description: spec.admitTargets.description,
                tags: spec.admitTargets.tags,
            },
            opts,
        );
    }
    new aws.vpc.SecurityGroupEgressRule(
        spec.toTargets.name,
        { securityGroupId: frontGroup.id, ...tcp(spec.targetPort), referencedSecurityGroupId: backGroup.id, description: spec.toTargets.description, tags: spec.toTargets.tags },
        opts,
    );
    new aws.vpc.SecurityGroupIngressRule(
        spec.fromLoadBalancer.name,
        { securityGroupId: backGroup.id, ...tcp(spec.targetPort), referencedSecurityGroupId: frontGroup.id, description: spec.fromLoadBalancer.description, tags: spec.fromLoadBalancer.tags },
        opts,
    );
    const egress = spec.targetEgress;
    new aws.vpc.SecurityGroupEgressRule(
        egress.name,
        {
            securityGroupId: backGroup.id,
            ipProtocol: egress.ipProtocol,
            fromPort: egress.port,
            toPort: egress.port,
            cidrIpv4: egress.cidrIpv4,
            description: egress.description,
            tags: egress.tags,
        },
        opts,
    );
    const loadBalancer = new aws.lb.LoadBalancer(
        spec.loadBalancer.name,
        { ...spec.loadBalancer.args, internal: true, securityGroups: [frontGroup.id] },
        opts,
    );
    return { frontGroup, backGroup, loadBalancer };
}
