/**
 * IAM documents of an inference task (pure): the task role (read the model
 * prefix, ship logs and metrics, ECS Exec) and the execution role (pull the
 * task's ECR images, write its logs, read its secrets), each scoped to
 * exactly the resources the task uses.
 */
import type { PolicyDocument, PolicyStatement } from "../shared/iam";
import { ecrLocation } from "../shared/image-refs";
import { allowedEntryFor, splitRef } from "./images";
import type { ServiceFields } from "./schema";
import { resolveSidecar } from "./sidecars";

export interface TaskRolePolicyArgs {
    /** AWS partition ("aws", "aws-cn", "aws-us-gov"). */
    readonly partition: string;
    readonly model: Pick<ServiceFields["model"], "bucket" | "prefix" | "kmsKeyArn">;
    /** The service's log group, when a sidecar writes to it with the task role (FireLens, EMF). */
    readonly logGroupArn?: string;
    /** ECS Exec (SSM session channels). */
    readonly execCommand: boolean;
}

/**
 * What the task's containers may do: read the model prefix and nothing else
 * of the bucket; write to the service's log group when a sidecar ships logs
 * or metrics; open ECS Exec channels when enabled.
 */
export function taskRolePolicy(args: TaskRolePolicyArgs): PolicyDocument {
    const { bucket, prefix, kmsKeyArn } = args.model;
    const statements: PolicyStatement[] = [
        {
            Sid: "ReadModelObjects",
            Effect: "Allow",
            Action: ["s3:GetObject"],
            Resource: [`arn:${args.partition}:s3:::${bucket}/${prefix}/*`],
        },
        {
            Sid: "ListModelPrefix",
            Effect: "Allow",
            Action: ["s3:ListBucket"],
            Resource: [`arn:${args.partition}:s3:::${bucket}`],
            Condition: { StringLike: { "s3:prefix": [`${prefix}/`, `${prefix}/*`] } },
        },
    ];
    if (kmsKeyArn !== undefined) {
        statements.push({
            Sid: "DecryptModelObjects",
            Effect: "Allow",
            Action: ["kms:Decrypt"],
            Resource: [kmsKeyArn],
            Condition: { StringLike: { "kms:ViaService": ["s3.*.amazonaws.com"] } },
        });
    }
    if (args.logGroupArn !== undefined) {
        statements.push({
            Sid: "ShipLogsAndMetrics",
            Effect: "Allow",
            Action: ["logs:CreateLogStream", "logs:DescribeLogStreams", "logs:PutLogEvents"],
            Resource: [args.logGroupArn, `${args.logGroupArn}:*`],
        });
    }
    if (args.execCommand) {
        statements.push({
            Sid: "EcsExec",
            Effect: "Allow",
            Action: ["ssmmessages:CreateControlChannel", "ssmmessages:CreateDataChannel", "ssmmessages:OpenControlChannel", "ssmmessages:OpenDataChannel"],
            Resource: ["*"],
        });
    }
    return { Version: "2012-10-17", Statement: statements };
}

/** The ECR repository ARN of a private ECR image reference; undefined for other registries. */
export function ecrRepositoryArn(image: string, partition: string): string | undefined {
    const at = image.indexOf("@");
    const name = at >= 0 ? image.slice(0, at) : image;
    const slash = name.indexOf("/");
    if (slash < 0) return undefined;
    const location = ecrLocation(name.slice(0, slash));
    if (!location) return undefined;
    const repository = name.slice(slash + 1).replace(/:[^/]*$/, "");
    return `arn:${partition}:ecr:${location.region}:${location.account}:repository/${repository}`;
}

/**
 * Every `valueFrom` the task's containers inject (the server's `secrets` and
 * each sidecar's), sorted and unique: exactly what the execution role may
 * read (the same set buildContainerDefinitions writes; secretValueFroms).
 */
export function taskSecretRefs(service: Pick<ServiceFields, "secrets" | "sidecars">): string[] {
    const all = [...Object.values(service.secrets ?? {}), ...service.sidecars.map(resolveSidecar).flatMap((s) => Object.values(s.secrets))];
    return [...new Set(all)].sort();
}

/** The resource a `secrets[].valueFrom` names (a Secrets Manager JSON-key suffix is cut off). */
export function secretResourceArn(valueFrom: string): string {
    const parts = valueFrom.split(":");
    return parts[2] === "secretsmanager" ? parts.slice(0, 7).join(":") : valueFrom;
}

/**
 * The ECR repositories the execution role may pull from: those of the task's
 * images in the stack's own registry, and those of its allow-listed images
 * that are ECR repositories. An image anywhere else gets no grant, whatever
 * config named it (sorted, unique).
 */
export function pullableRepositoryArns(images: readonly string[], registryHost: string, allowedImages: readonly string[], partition: string): string[] {
    const arns = images.flatMap((image) => {
        const host = splitRef(image)?.host;
        const ours = host === registryHost;
        if (!ours && allowedEntryFor(image, allowedImages) === undefined) return [];
        return ecrRepositoryArn(image, partition) ?? [];
    });
    return [...new Set(arns)].sort();
}

export interface ExecutionRolePolicyArgs {
    readonly partition: string;
    /** Every container image of the task. */
    readonly images: readonly string[];
    /** The stack's own ECR registry host (`<account>.dkr.ecr.<region>.amazonaws.com`): the task's repositories there may be pulled. */
    readonly registryHost: string;
    /** `serve.allowedImages`: the task's images they admit may be pulled too when they are in ECR. Default []. */
    readonly allowedImages?: readonly string[];
    readonly logGroupArn: string;
    /** Every `valueFrom` of the task's secrets. */
    readonly secrets: readonly string[];
}

/**
 * What ECS itself does for the task: pull its images from the stack's
 * registry (and allow-listed ECR repositories; pullableRepositoryArns), write its
 * awslogs streams, read the secrets it injects. Scoped to those resources
 * (instead of the broad AmazonECSTaskExecutionRolePolicy).
 */
export function executionRolePolicy(args: ExecutionRolePolicyArgs): PolicyDocument {
    const uniqueSorted = (list: Iterable<string>) => [...new Set(list)].sort();
    const repositories = pullableRepositoryArns(args.images, args.registryHost, args.allowedImages ?? [], args.partition);
    const resources = uniqueSorted(args.secrets.map(secretResourceArn));
    const secretArns = resources.filter((r) => r.split(":")[2] === "secretsmanager");
    const parameterArns = resources.filter((r) => r.split(":")[2] === "ssm");
    const statements: PolicyStatement[] = [
        {
            Sid: "WriteTaskLogs",
            Effect: "Allow",
            Action: ["logs:CreateLogStream", "logs:PutLogEvents"],
            Resource: [args.logGroupArn, `${args.logGroupArn}:*`],
        },
    ];
    if (repositories.length > 0) {
        statements.push(
            { Sid: "EcrLogin", Effect: "Allow", Action: ["ecr:GetAuthorizationToken"], Resource: ["*"] },
            {
                Sid: "PullTaskImages",
                Effect: "Allow",
                Action: ["ecr:BatchCheckLayerAvailability", "ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer"],
                Resource: repositories,
            },
        );
    }
    if (secretArns.length > 0) {
        statements.push({ Sid: "ReadTaskSecrets", Effect: "Allow", Action: ["secretsmanager:GetSecretValue"], Resource: secretArns });
    }
    if (parameterArns.length > 0) {
        statements.push({ Sid: "ReadTaskParameters", Effect: "Allow", Action: ["ssm:GetParameters"], Resource: parameterArns });
    }
    return { Version: "2012-10-17", Statement: statements };
}
