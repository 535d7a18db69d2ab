/**
 * IAM policy documents of the build runners (pure, typed; JSON.stringify only
 * where a resource takes them).
 *
 * The runner role may: log in to ECR (`ecr:GetAuthorizationToken`, which has
 * no resource scope), push and pull the project's repositories (under its
 * namespace, `<prefix>/*`: the build stack creates them later, per image), pull
 * (and so create) pull-through repositories under `<prefix>/*` only, write to
 * its own log group, and read its own TLS key parameter. SSM core access
 * comes from the AWS managed policy, attached by ARN.
 */
import type { PolicyDocument, PolicyStatement } from "../shared/iam";
import type { RegistryLocation } from "../shared/image-refs";

/** Pull (and layer check) on a repository. */
export const ECR_PULL_ACTIONS = ["ecr:BatchCheckLayerAvailability", "ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer"] as const;

/** Pull plus push. */
export const ECR_PUSH_PULL_ACTIONS = [
    ...ECR_PULL_ACTIONS,
    "ecr:CompleteLayerUpload",
    "ecr:DescribeImages",
    "ecr:InitiateLayerUpload",
    "ecr:PutImage",
    "ecr:UploadLayerPart",
].sort();

/** Pulling through the cache creates the repository and imports the image on first use. */
export const PULL_THROUGH_ACTIONS = [...ECR_PULL_ACTIONS, "ecr:BatchImportUpstreamImage", "ecr:CreateRepository"].sort();

export const LOG_ACTIONS = ["logs:CreateLogStream", "logs:DescribeLogStreams", "logs:PutLogEvents"] as const;

/** Trust policy: EC2 instances may assume the role. */
export function ec2AssumeRolePolicy(location: Pick<RegistryLocation, "dnsSuffix">): PolicyDocument {
    return {
        Version: "2012-10-17",
        Statement: [
            {
                Sid: "Ec2Assume",
                Effect: "Allow",
                Principal: { Service: `ec2.${location.dnsSuffix}` },
                Action: ["sts:AssumeRole"],
            },
        ],
    };
}

/** AmazonSSMManagedInstanceCore in the registry's partition. */
export function ssmManagedInstanceCoreArn(partition: string): string {
    return `arn:${partition}:iam::aws:policy/AmazonSSMManagedInstanceCore`;
}

/** AWS managed policy of the CloudWatch agent (cloudwatch:PutMetricData takes no resource scope). */
export function cloudWatchAgentServerPolicyArn(partition: string): string {
    return `arn:${partition}:iam::aws:policy/CloudWatchAgentServerPolicy`;
}

/** ARN pattern of the repositories under a namespace (a pull-through prefix, or the project's). */
export function pullThroughRepositoryArn(location: RegistryLocation, prefix: string): string {
    if (!/^[a-z0-9]+(?:[._-][a-z0-9]+)*$/.test(prefix)) throw new Error(`not a pull-through prefix: ${JSON.stringify(prefix)}`);
    return `arn:${location.partition}:ecr:${location.region}:${location.account}:repository/${prefix}/*`;
}

export interface RunnerPolicyInput {
    readonly registry: RegistryLocation;
    /** The project's repository namespace (`registry.repositoryPrefix`): push and pull under `<prefix>/*` only. */
    readonly repositoryPrefix: string;
    /** Pull-through prefixes (ecr-public, quay, docker-hub, github). */
    readonly pullThroughPrefixes: readonly string[];
    /** The pool's own log group. */
    readonly logGroupArn: string;
    /** The SSM parameter holding the pool's TLS server key. */
    readonly serverKeyParameterArn: string;
}

const sortedUnique = (values: readonly string[]) => [...new Set(values)].sort();

/** The runner role's inline policy. Only `ecr:GetAuthorizationToken` has resource `*` (it has no resource scope). */
export function runnerPolicy(input: RunnerPolicyInput): PolicyDocument {
    // An invariant: the config refuses such a prefix (registry/schema.ts) and BuildRunnerPool refuses such args with a ResourceError first.
    if (input.pullThroughPrefixes.includes(input.repositoryPrefix)) {
        throw new Error(`the repository prefix ${JSON.stringify(input.repositoryPrefix)} is also a pull-through prefix: runners could push into the cache`);
    }
    const statements: PolicyStatement[] = [
        { Sid: "EcrLogin", Effect: "Allow", Action: ["ecr:GetAuthorizationToken"], Resource: "*" },
        // Releases <prefix>/<image> and caches <prefix>/cache/<image>: the build stack makes them, per image.
        { Sid: "EcrPushPullProjectRepositories", Effect: "Allow", Action: ECR_PUSH_PULL_ACTIONS, Resource: [pullThroughRepositoryArn(input.registry, input.repositoryPrefix)] },
    ];
    if (input.pullThroughPrefixes.length > 0) {
        statements.push({
            Sid: "EcrPullThroughCache",
            Effect: "Allow",
            Action: PULL_THROUGH_ACTIONS,
            Resource: sortedUnique(input.pullThroughPrefixes.map((p) => pullThroughRepositoryArn(input.registry, p))),
        });
    }
    statements.push(
        {
            Sid: "OwnLogGroup",
            Effect: "Allow",
            Action: [...LOG_ACTIONS],
            Resource: [input.logGroupArn, `${input.logGroupArn}:log-stream:*`],
        },
        { Sid: "OwnServerKey", Effect: "Allow", Action: ["ssm:GetParameter"], Resource: [input.serverKeyParameterArn] },
    );
    return { Version: "2012-10-17", Statement: statements };
}
