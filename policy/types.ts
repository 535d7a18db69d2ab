/**
 * The shapes the policy pack works with (pure types): a resource as a policy
 * sees it, a violation, and the two kinds of policy. Our policies
 * (./policies) and the AWSGuard adapter (./awsguard) both use them.
 */

export interface PolicyResource {
    readonly type: string;
    readonly name: string;
    readonly urn: string;
    readonly props: Record<string, unknown>;
    /** Per input property, the URNs of the resources it was computed from (what links a service to its task definition). */
    readonly propertyDependencies?: Readonly<Record<string, readonly string[]>>;
}

export interface Violation {
    readonly policy: string;
    /** URN (or name) of the offending resource. */
    readonly resource: string;
    readonly message: string;
}

export interface ResourcePolicy {
    readonly name: string;
    readonly description: string;
    /** Messages for one resource (empty when it complies). */
    readonly check: (resource: PolicyResource) => string[];
}

export interface StackPolicy {
    readonly name: string;
    readonly description: string;
    readonly check: (resources: readonly PolicyResource[]) => Violation[];
}
