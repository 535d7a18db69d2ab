/**
 * The `build` section (zod schemas and inferred types): images, hardware
 * targets, the registry with its caches and pull-through rules, and the
 * runner pools (./runners/schema). Cross-field checks are in ./checks.
 */
import { z } from "zod";
import { imageRef, name, strict, stringMap } from "../shared/schema";
import { targetsSchema } from "../shared/target-config";
import { stackName } from "../shared/stack-names";
import { repositoryPrefix } from "../registry/schema";

/** `build.registry`: the project's repositories. */
const registrySchema = strict({
    /** KMS key of the repositories. Default: unset (the AWS managed key for ECR). */
    kmsKeyArn: z.string().regex(/^arn:aws[a-z-]*:kms:[a-z0-9-]+:\d{12}:(key|alias)\/.+$/, "must be a KMS key or alias ARN").optional(),
    /** Let `pulumi destroy` delete repositories that hold images (only with protectData false). Default false. */
    forceDelete: z.boolean().default(false),
    /** Releases kept per target; older ones expire. Default 20. */
    keepReleasesPerTarget: z.number().int().min(1).max(1000).default(20),
    /** Days superseded cache manifests are kept. Default 7. */
    cacheUntaggedExpireDays: z.number().int().min(1).max(365).default(7),
}).prefault({});

const imageSchema = strict({
    name: name("image name"),
    context: z.string().min(1, "must name the build context directory").max(1024),
    dockerfile: z.string().min(1).default("Dockerfile"),
    targets: z.array(z.string()).min(1, "an image needs at least one target").max(32, "at most 32 targets per image"),
    buildArgs: stringMap.default({}),
    base: name("base image name").optional(),
    /**
     * Upstream image this image is built from instead of its targets' base
     * images (e.g. a sidecar on a vendor's image): passed as BASE_IMAGE,
     * RUNTIME_BASE_IMAGE and BUILD_BASE_IMAGE, through the pull-through cache.
     * Not with `base`. Default: the targets' base images.
     */
    baseImage: imageRef.optional(),
    /** Dockerfile stage built for every target. Default: each target's `stage`. */
    stage: z.string().regex(/^[A-Za-z][A-Za-z0-9_.-]{0,63}$/, "must be a Dockerfile stage name").optional(),
    secrets: z.array(z.string()).max(20, "at most 20 build secrets per image").default([]),
    multiArch: strict({
        amd64: z.string(),
        arm64: z.string(),
    }).optional(),
});

/** A registry on this machine's loopback (the `local` stack): 127.0.0.1:<port> or localhost:<port>. */
export const LOCAL_REGISTRY_RE = /^(127\.0\.0\.1|localhost):\d{2,5}$/;

export const buildSchema = strict({
    localRegistry: z.string().regex(LOCAL_REGISTRY_RE, "must be a registry on loopback, e.g. 127.0.0.1:5000").optional(),
    /** Removed: release tags are derived from the build inputs (`<target>.<hash>`), so no version is set by hand. */
    version: z
        .unknown()
        .optional()
        .refine((v) => v === undefined, "no longer used: release tags are derived from the build inputs (<target>.<hash>, README: How a release is identified); remove the key"),
    /** ECR namespace `<prefix>/<image>`: not a pull-through prefix, at most MAX_REPOSITORY_PREFIX_LENGTH characters. Default `ml`. */
    repositoryPrefix,
    buildOnPreview: z.boolean().default(false),
    /**
     * buildx builder every image builds on. Default: each target on the
     * builder of its runner pool (`ml-<pool>`, from the runners stack).
     * Required with `localRegistry` (the local runner's, `ml-local`).
     */
    builder: z.string().regex(/^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/, "must be a buildx builder name").optional(),
    /**
     * The runners stack (runner pools, pull-through cache) this stack builds on:
     * `[org/][project/]stack`. Default `<organization>/<project>/runners`.
     * Not used with `builder` or `localRegistry`.
     */
    runnersStack: stackName.optional(),
    registry: registrySchema,
    /**
     * Base images (exact references) a build may start from although they are
     * neither in this stack's registry nor behind its pull-through cache.
     * Default: none.
     */
    allowedBaseImages: z.array(imageRef).max(50, "at most 50 entries").default([]),
    targets: targetsSchema,
    images: z.array(imageSchema).min(1, "the build section needs at least one image").max(200, "at most 200 images per build stack"),
}, ["version"]);

export type BuildConfig = z.infer<typeof buildSchema>;
export type ImageConfig = BuildConfig["images"][number];
export type RegistryConfig = BuildConfig["registry"];
