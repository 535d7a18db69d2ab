/**
 * The role ECR assumes to create the repositories a pull-through cache rule
 * makes, when their creation template encrypts with a customer managed key
 * (pure). AWS documents that role's trust (ecr.amazonaws.com) and its
 * permissions: create the repository, and use the key (DescribeKey,
 * CreateGrant, RetireGrant). Here each is scoped to what this project's
 * templates need: repositories under the pull-through prefixes, that one key.
 * The templates set no resource tags, so ecr:TagResource is not needed.
 */
import type { PolicyDocument } from "../shared/iam";
import type { RegistryLocation } from "../shared/image-refs";

/** Trust: ECR itself assumes the role, for this account only. */
export function creationTemplateTrustPolicy(location: Pick<RegistryLocation, "account">): PolicyDocument {
    return {
        Version: "2012-10-17",
        Statement: [
            {
                Sid: "EcrCreatesRepositories",
                Effect: "Allow",
                Principal: { Service: "ecr.amazonaws.com" },
                Action: "sts:AssumeRole",
                Condition: { StringEquals: { "aws:SourceAccount": location.account } },
            },
        ],
    };
}

/** What the role may do: create repositories under the prefixes, and use the key for them. */
export function creationTemplateRolePolicy(o: { readonly location: RegistryLocation; readonly prefixes: readonly string[]; readonly kmsKeyArn: string }): PolicyDocument {
    if (o.prefixes.length === 0) throw new Error("a creation template role needs at least one pull-through prefix");
    const repositories = [...new Set(o.prefixes)].sort().map((p) => `arn:${o.location.partition}:ecr:${o.location.region}:${o.location.account}:repository/${p}/*`);
    return {
        Version: "2012-10-17",
        Statement: [
            { Sid: "CreatePullThroughRepositories", Effect: "Allow", Action: ["ecr:CreateRepository"], Resource: repositories },
            { Sid: "EncryptWithTheKey", Effect: "Allow", Action: ["kms:CreateGrant", "kms:DescribeKey", "kms:RetireGrant"], Resource: [o.kmsKeyArn] },
        ],
    };
}
