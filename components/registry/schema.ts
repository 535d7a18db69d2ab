/**
 * The `registry` section (zod schema and inferred types): what the account's
 * ECR registry has for every image of the project, made by the runners stack
 * before anything is built: the repository namespace, and the pull-through
 * cache (rules and repository creation templates) that base images and the
 * runners' BuildKit image are pulled through. Every field says its default.
 */
import { z } from "zod";
import { strict } from "../shared/schema";
import { UPSTREAMS } from "./pullthrough";

/** Longest ECR repository name. */
export const MAX_REPOSITORY_NAME_LENGTH = 256;
/** Longest image name (NAME_RE). */
const MAX_IMAGE_NAME_LENGTH = 40;
/** Longest repository prefix: `<prefix>/cache/<image>` must fit ECR's 256 characters with the longest image name. */
export const MAX_REPOSITORY_PREFIX_LENGTH = MAX_REPOSITORY_NAME_LENGTH - "/cache/".length - MAX_IMAGE_NAME_LENGTH;

/** Prefixes of the pull-through rules (whether enabled or not): the project's repositories may never live under one. */
export const RESERVED_REPOSITORY_PREFIXES: readonly string[] = UPSTREAMS.map((u) => u.prefix);

/** Why a repository prefix cannot be the project's namespace (undefined: it can). */
export function repositoryPrefixProblem(prefix: string): string | undefined {
    if (RESERVED_REPOSITORY_PREFIXES.includes(prefix)) {
        return `is the prefix of a pull-through cache rule (reserved: ${RESERVED_REPOSITORY_PREFIXES.join(", ")}): the runners push under the project's prefix and would push into the cache; choose another, e.g. ml`;
    }
    if (prefix.length > MAX_REPOSITORY_PREFIX_LENGTH) {
        return `is ${prefix.length} characters; at most ${MAX_REPOSITORY_PREFIX_LENGTH} (ECR repository names are at most ${MAX_REPOSITORY_NAME_LENGTH} characters: <prefix>/cache/<image>, image names up to ${MAX_IMAGE_NAME_LENGTH})`;
    }
    return undefined;
}

/** The project's repository namespace (`registry.repositoryPrefix`, `build.repositoryPrefix`). Default `ml`. */
export const repositoryPrefix = z
    .string()
    .regex(/^[a-z0-9]+(?:[._-][a-z0-9]+)*$/, "must be a lower-case ECR repository namespace")
    .superRefine((prefix, ctx) => {
        const problem = repositoryPrefixProblem(prefix);
        if (problem) ctx.addIssue({ code: "custom", message: problem });
    })
    .default("ml");

const pullThroughSecret = strict({
    /** Secrets Manager secret with the upstream's credentials, created outside Pulumi. Required. */
    secretName: z
        .string()
        .regex(/^ecr-pullthroughcache\/[A-Za-z0-9/_+=.@-]+$/, "must name a Secrets Manager secret whose name starts with ecr-pullthroughcache/"),
});

/** A KMS key ARN (an alias would not do: IAM grants key use on the key's ARN). */
export const kmsKeyArn = z.string().regex(/^arn:aws[a-z-]*:kms:[a-z0-9-]+:\d{12}:key\/[A-Za-z0-9-]+$/, "must be a KMS key ARN (arn:aws:kms:<region>:<account>:key/<id>), not an alias");

export const pullThroughSchema = strict({
    /** Create pull-through cache rules at all. Default true. */
    enabled: z.boolean().default(true),
    /** ECR Public (public.ecr.aws), no credentials. Default true. */
    ecrPublic: z.boolean().default(true),
    /** Quay (quay.io), no credentials. Default true. */
    quay: z.boolean().default(true),
    /** Docker Hub: needs a credentials secret. Default: no rule. */
    dockerHub: pullThroughSecret.optional(),
    /** GitHub Container Registry: needs a credentials secret. Default: no rule. */
    github: pullThroughSecret.optional(),
    /** Days a cached upstream image is kept (ECR re-fetches it on the next pull). Default 90. */
    cachedImageExpireDays: z.number().int().min(1).max(3650).default(90),
}).prefault({});
export type PullThroughConfig = z.infer<typeof pullThroughSchema>;

/** `registry`: account-wide ECR settings of the project (the runners stack). */
export const registrySectionSchema = strict({
    /** Namespace of the project's repositories (`<prefix>/<image>`, `<prefix>/cache/<image>`); the runners may push under it only. Default `ml`. */
    repositoryPrefix,
    /**
     * Customer managed KMS key of the repositories the pull-through cache
     * creates. Default: unset (AES-256, which needs no role). With a key the
     * creation templates get a role trusted by ecr.amazonaws.com that may use
     * exactly this key.
     */
    kmsKeyArn: kmsKeyArn.optional(),
    pullThrough: pullThroughSchema,
});
export type RegistrySectionConfig = z.infer<typeof registrySectionSchema>;
