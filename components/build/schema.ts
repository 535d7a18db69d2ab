/**
 * The `build` section (zod schemas and inferred types): images, hardware
 * targets, the registry with its caches and pull-through rules, and the
 * runner pools (./runners/schema). Cross-field checks are in ./checks.
 */
import { z } from "zod";
import { name, strict, stringMap } from "../shared/schema";
import { targetsSchema } from "../shared/target-config";
import { runnersSchema } from "../runners/schema";

const pullThroughSecret = strict({
    secretName: z
        .string()
        .regex(/^ecr-pullthroughcache\/[A-Za-z0-9/_+=.@-]+$/, "must name a Secrets Manager secret whose name starts with ecr-pullthroughcache/"),
});

const registrySchema = strict({
    kmsKeyArn: z.string().regex(/^arn:aws[a-z-]*:kms:[a-z0-9-]+:\d{12}:(key|alias)\/.+$/, "must be a KMS key or alias ARN").optional(),
    forceDelete: z.boolean().default(false),
    keepReleasesPerTarget: z.number().int().min(1).max(1000).default(20),
    cacheUntaggedExpireDays: z.number().int().min(1).max(365).default(7),
    pullThrough: strict({
        enabled: z.boolean().default(true),
        ecrPublic: z.boolean().default(true),
        quay: z.boolean().default(true),
        dockerHub: pullThroughSecret.optional(),
        github: pullThroughSecret.optional(),
        cachedImageExpireDays: z.number().int().min(1).max(3650).default(90),
    }).prefault({}),
}).prefault({});

const imageSchema = strict({
    name: name("image name"),
    context: z.string().min(1, "must name the build context directory"),
    dockerfile: z.string().min(1).default("Dockerfile"),
    targets: z.array(z.string()).min(1, "an image needs at least one target"),
    buildArgs: stringMap.default({}),
    base: name("base image name").optional(),
    secrets: z.array(z.string()).default([]),
    multiArch: strict({
        amd64: z.string(),
        arm64: z.string(),
    }).optional(),
});

/** A registry on this machine's loopback (the `local` stack): 127.0.0.1:<port> or localhost:<port>. */
export const LOCAL_REGISTRY_RE = /^(127\.0\.0\.1|localhost):\d{2,5}$/;

export const buildSchema = strict({
    localRegistry: z.string().regex(LOCAL_REGISTRY_RE, "must be a registry on loopback, e.g. 127.0.0.1:5000").optional(),
    version: z.string().regex(/^[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}$/, "must be a valid image tag of at most 64 characters"),
    repositoryPrefix: z.string().regex(/^[a-z0-9]+(?:[._-][a-z0-9]+)*$/, "must be a lower-case ECR repository namespace").default("ml"),
    buildOnPreview: z.boolean().default(false),
    builder: z.string().min(1).optional(),
    registry: registrySchema,
    runners: runnersSchema.optional(),
    targets: targetsSchema,
    images: z.array(imageSchema).min(1, "the build section needs at least one image"),
});

export type BuildConfig = z.infer<typeof buildSchema>;
export type ImageConfig = BuildConfig["images"][number];
export type RegistryConfig = BuildConfig["registry"];
