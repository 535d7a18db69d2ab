/**
 * IAM policy documents of the build runners (pure, typed; JSON.stringify only
 * where a resource takes them).
 *
 * The runner role may: log in to ECR (`ecr:GetAuthorizationToken`, which has
 * no resource scope), push and pull exactly the project's repositories, pull
 * (and so create) pull-through repositories under `<prefix>/*` only, write to
 * its own log group, and read its own TLS key parameter. SSM core access
 * comes from the AWS managed policy, attached by ARN.
 */

export interface PolicyStatement {
    readonly Sid: string;
    readonly Effect: "Allow";
    readonly Action: readonly string[];
    readonly Resource: string | readonly string[];
}

export interface PolicyDocument {
    readonly Version: "2012-10-17";
    readonly Statement: readonly PolicyStatement[];
}

/** A trust policy statement: a principal instead of a resource. */
export interface TrustStatement {
    readonly Sid: string;
    readonly Effect: "Allow";
    readonly Principal: { readonly Service: string };
    readonly Action: readonly string[];
}

export interface TrustPolicyDocument {
    readonly Version: "2012-10-17";
    readonly Statement: readonly TrustStatement[];
}

/** Where an ECR registry lives, read from its host name. */
export interface RegistryLocation {
    readonly account: string;
    readonly region: string;
    /** aws, aws-cn, aws-us-gov */
    readonly partition: string;
    /** amazonaws.com or amazonaws.com.cn */
    readonly dnsSuffix: string;
}

const REGISTRY_HOST_RE = /^(\d{12})\.dkr\.ecr(?:-fips)?\.([a-z]{2}(?:-[a-z]+)+-\d)\.(amazonaws\.com(?:\.cn)?)$/;

/** `123456789012.dkr.ecr.us-east-1.amazonaws.com` -> account, region, partition. */
export function parseRegistryHost(host: string): RegistryLocation {
    const m = REGISTRY_HOST_RE.exec(host);
    if (!m) throw new Error(`not an ECR registry host: ${JSON.stringify(host)} (expected <account>.dkr.ecr.<region>.amazonaws.com)`);
    const [, account, region, dnsSuffix] = m;
    const partition = dnsSuffix.endsWith(".cn") ? "aws-cn" : region.startsWith("us-gov-") ? "aws-us-gov" : "aws";
    return { account, region, partition, dnsSuffix };
}

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
export function ec2AssumeRolePolicy(location: Pick<RegistryLocation, "dnsSuffix">): TrustPolicyDocument {
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

/** ARN pattern of the repositories a pull-through prefix creates. */
export function pullThroughRepositoryArn(location: RegistryLocation, prefix: string): string {
    if (!/^[a-z0-9]+(?:[._-][a-z0-9]+)*$/.test(prefix)) throw new Error(`not a pull-through prefix: ${JSON.stringify(prefix)}`);
    return `arn:${location.partition}:ecr:${location.region}:${location.account}:repository/${prefix}/*`;
}

export interface RunnerPolicyInput {
    readonly registry: RegistryLocation;
    /** The project's release and cache repositories: push and pull on exactly these. */
    readonly repositoryArns: readonly string[];
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
    if (input.repositoryArns.length === 0) throw new Error("the runner policy needs at least one repository ARN");
    for (const arn of input.repositoryArns) {
        if (!/^arn:aws[a-z-]*:ecr:[a-z0-9-]+:\d{12}:repository\/[a-z0-9._/-]+$/.test(arn) || arn.includes("*")) {
            throw new Error(`not an ECR repository ARN (wildcards are not allowed): ${JSON.stringify(arn)}`);
        }
    }
    const statements: PolicyStatement[] = [
        { Sid: "EcrLogin", Effect: "Allow", Action: ["ecr:GetAuthorizationToken"], Resource: "*" },
        { Sid: "EcrPushPullProjectRepositories", Effect: "Allow", Action: ECR_PUSH_PULL_ACTIONS, Resource: sortedUnique(input.repositoryArns) },
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

/** Statements whose resource is `*` (for guards and tests). */
export function unscopedStatements(doc: PolicyDocument): PolicyStatement[] {
    return doc.Statement.filter((s) => s.Resource === "*" || (Array.isArray(s.Resource) && s.Resource.includes("*")));
}

/**
 * What the CI identity needs to drive the pools (not created here: CI's role
 * lives with CI). Raising capacity is scoped to the pools' groups; the two
 * describe calls have no resource-level permissions in IAM.
 */
export function ciRunnerAccessPolicy(autoScalingGroupArns: readonly string[]): PolicyDocument {
    if (autoScalingGroupArns.length === 0) throw new Error("the CI policy needs at least one Auto Scaling group ARN");
    return {
        Version: "2012-10-17",
        Statement: [
            { Sid: "RaisePoolCapacity", Effect: "Allow", Action: ["autoscaling:SetDesiredCapacity"], Resource: sortedUnique(autoScalingGroupArns) },
            {
                Sid: "ReadPoolState",
                Effect: "Allow",
                Action: ["autoscaling:DescribeAutoScalingGroups", "elasticloadbalancing:DescribeTargetHealth"],
                Resource: "*",
            },
        ],
    };
}
