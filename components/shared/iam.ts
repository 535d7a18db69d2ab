/**
 * The IAM policy document type every section writes (pure, typed; JSON text
 * only where a resource takes it) and the trust policy of service roles.
 */

export interface PolicyStatement {
    readonly Sid?: string;
    readonly Effect: "Allow" | "Deny";
    /** Trust policies name a principal instead of a resource. */
    readonly Principal?: { readonly Service: string };
    readonly Action: string | readonly string[];
    readonly Resource?: string | readonly string[];
    readonly Condition?: Readonly<Record<string, Readonly<Record<string, string | readonly string[]>>>>;
}

export interface PolicyDocument {
    readonly Version: "2012-10-17";
    readonly Statement: readonly PolicyStatement[];
}

/** Trust policy letting an AWS service assume a role. */
export function assumeRolePolicy(service: "ecs-tasks.amazonaws.com" | "ec2.amazonaws.com"): PolicyDocument {
    return {
        Version: "2012-10-17",
        Statement: [{ Effect: "Allow", Principal: { Service: service }, Action: "sts:AssumeRole" }],
    };
}
