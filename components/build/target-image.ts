/**
 * TargetImage: one image built for one hardware target with BuildKit
 * (@pulumi/docker-build), pushed to ECR under an immutable release tag that
 * is a hash of its build inputs (./release), with its layer cache exported to
 * and imported from the image's cache repository. Kept on delete.
 *
 * MultiArchImage: joins one amd64 and one arm64 target of an image under one
 * multi-arch tag (a docker-build Index).
 */
import * as dockerbuild from "@pulumi/docker-build";
import * as pulumi from "@pulumi/pulumi";
import * as path from "node:path";
import type { ImageConfig } from "./schema";
import { cacheTag } from "./naming";
import { type ImageSpec, cachedContextDigest, releaseTag } from "./release";
import { type BuiltTarget, digestRef } from "../shared/image-refs";
import type { RegistryCredentials } from "./registry";
import { type HardwareTarget, targetBuildArgs } from "../shared/hardware";

export interface TargetImageArgs {
    /** The image as declared in `build.images[]` (name, context, dockerfile, buildArgs, stage). */
    readonly image: ImageConfig;
    /** The resolved hardware target. */
    readonly target: HardwareTarget;
    /** URL of the release repository. */
    readonly repositoryUrl: pulumi.Input<string>;
    /** URL of the cache repository. */
    readonly cacheRepositoryUrl: pulumi.Input<string>;
    /** docker-build registry logins (a secret): `ImageRegistry.registries`. */
    readonly registries: pulumi.Input<RegistryCredentials[]>;
    /**
     * Base images of the build stages and of the runtime stage, already resolved
     * (through the pull-through cache, or the base image's digest in a chain).
     */
    readonly bases: pulumi.Input<BaseImages>;
    /** Build during `pulumi preview` too (`build.buildOnPreview`, default false). */
    readonly buildOnPreview: boolean;
    /** buildx builder to use (`build.builder`); default: the local default builder. */
    readonly builder?: string;
    /**
     * Build secrets (id -> value, a Pulumi secret), mounted only into the RUN steps that
     * ask for them (`RUN --mount=type=secret,id=<id>`); never build args. A changed
     * value does not rebuild the image. Default: none.
     */
    readonly secrets?: pulumi.Input<Record<string, string>>;
    /** Base images the build may use outside the registry (`build.allowedBaseImages`), recorded in a label the policy pack reads. Default: none. */
    readonly allowedBaseImages?: readonly string[];
    /** Directory the context path is relative to. Default: the working directory (where Pulumi.yaml is). */
    readonly projectRoot?: string;
}

/** The base images a target's build starts from. */
export interface BaseImages {
    /** BASE_IMAGE: the chain base's digest, or the target's build base. */
    readonly base: string;
    /** RUNTIME_BASE_IMAGE: the chain base's digest, or the target's runtime base. */
    readonly runtime: string;
    /** BUILD_BASE_IMAGE: the target's build base (compilers, nvcc), also in a chain. Default: `base`. */
    readonly build?: string;
}

/** Label listing the base images allowed outside the registry (read by the policy pack). */
export const ALLOWED_BASES_LABEL = "ml-infra.allowed-bases";

/** The inputs of one image × target that do not depend on where its bases are (known in every preview). */
export interface FixedInputs {
    readonly context: string;
    readonly dockerfile: string;
    readonly stage: string;
    readonly platform: string;
    readonly labels: Readonly<Record<string, string>>;
    readonly secretIds: readonly string[];
}

export function fixedInputs(image: ImageConfig, target: HardwareTarget, allowedBaseImages: readonly string[] = []): FixedInputs {
    const labels: Record<string, string> = { "ml-infra.image": image.name, "ml-infra.target": target.name };
    if (allowedBaseImages.length > 0) labels[ALLOWED_BASES_LABEL] = [...allowedBaseImages].sort().join(",");
    return {
        context: image.context,
        dockerfile: path.posix.join(image.context, image.dockerfile),
        stage: image.stage ?? target.stage,
        platform: target.platform,
        labels,
        secretIds: [...image.secrets].sort(),
    };
}

/**
 * Every input of the docker-build Image of one image × target, as plain data
 * (what the release tag is a hash of). Pure but for reading the context.
 */
export function imageSpec(o: {
    readonly image: ImageConfig;
    readonly target: HardwareTarget;
    readonly repositoryUrl: string;
    readonly cacheRepositoryUrl: string;
    readonly bases: BaseImages;
    readonly buildOnPreview: boolean;
    readonly builder?: string;
    readonly allowedBaseImages?: readonly string[];
    readonly projectRoot?: string;
}): ImageSpec {
    const { image, target } = o;
    const root = o.projectRoot ?? process.cwd();
    const fixed = fixedInputs(image, target, o.allowedBaseImages);
    return {
        ...fixed,
        repository: o.repositoryUrl,
        cacheRef: `${o.cacheRepositoryUrl}:${cacheTag(target.name)}`,
        contextDigest: cachedContextDigest(path.resolve(root, image.context), path.resolve(root, fixed.dockerfile)),
        buildArgs: { ...image.buildArgs, ...targetBuildArgs(target, o.bases.base, o.bases.runtime, o.bases.build ?? o.bases.base) },
        builder: o.builder,
        buildOnPreview: o.buildOnPreview,
    };
}

export class TargetImage extends pulumi.ComponentResource {
    public readonly image: dockerbuild.Image;
    /** `<repo>:<target>.<hash of the build inputs>` */
    public readonly tag: pulumi.Output<string>;
    /** `<repo>@sha256:...`: what environments deploy. */
    public readonly ref: pulumi.Output<string>;
    /** `<cache repo>:cache-<target>` */
    public readonly cacheRef: pulumi.Output<string>;
    /** What the build stack exports for this image × target. */
    public readonly built: pulumi.Output<BuiltTarget>;

    constructor(name: string, args: TargetImageArgs, opts?: pulumi.ComponentResourceOptions) {
        super("ml-infra:build:TargetImage", name, {}, opts);
        const { image, target } = args;
        if (!image.targets.includes(target.name)) {
            throw new pulumi.ResourceError(`image ${image.name} does not declare target ${target.name}`, this);
        }
        // Few Outputs per target: every Output costs the SDK several tracked promises,
        // and a build stack has hundreds of image x target pairs. Only the build args
        // (the bases) and the tag wait for a chain base; everything else is known in preview.
        const spec = pulumi.all([args.repositoryUrl, args.cacheRepositoryUrl, args.bases]).apply(([repositoryUrl, cacheRepositoryUrl, bases]) => {
            const s = imageSpec({ ...args, repositoryUrl, cacheRepositoryUrl, bases });
            return { buildArgs: s.buildArgs, tag: `${repositoryUrl}:${releaseTag(target.name, s)}` };
        });
        this.tag = spec.tag;
        this.cacheRef = pulumi.interpolate`${args.cacheRepositoryUrl}:${cacheTag(target.name)}`;
        const fixed = fixedInputs(image, target, args.allowedBaseImages);
        const timeout = `${target.buildTimeoutMinutes}m`;

        this.image = new dockerbuild.Image(
            `${name}-image`,
            {
                push: true,
                // A list of one (possibly unknown) tag: docker-build checks a push has a tag.
                tags: [this.tag],
                platforms: [fixed.platform as dockerbuild.Platform],
                target: fixed.stage,
                // Relative paths keep the inputs identical on every machine (no perpetual diff).
                context: { location: fixed.context },
                dockerfile: { location: fixed.dockerfile },
                buildArgs: spec.buildArgs,
                labels: { ...fixed.labels },
                cacheFrom: [{ registry: { ref: this.cacheRef } }],
                cacheTo: [
                    {
                        registry: {
                            ref: this.cacheRef,
                            mode: dockerbuild.CacheMode.Max,
                            // ECR only accepts cache exported as an OCI image manifest.
                            imageManifest: true,
                            ociMediaTypes: true,
                        },
                    },
                ],
                buildOnPreview: args.buildOnPreview,
                builder: args.builder ? { name: args.builder } : undefined,
                // A rotated token must not rebuild (and so re-push) a release.
                ignoreSecretsInDiffCalculation: fixed.secretIds.length > 0 ? [...fixed.secretIds] : undefined,
                registries: args.registries,
                secrets: args.secrets,
            },
            // Kept when Pulumi deletes or replaces it (a removed target, a destroyed stack):
            // environments may still run it; the registry's lifecycle rules expire releases.
            { parent: this, retainOnDelete: true, customTimeouts: { create: timeout, update: timeout } },
        );
        this.built = pulumi
            .all([args.repositoryUrl, this.tag, this.cacheRef, this.image.digest])
            .apply(([url, tag, cacheRef, digest]) =>
                untilBuilt(digest, () => ({
                    ref: digestRef(url, digest),
                    digest,
                    tag,
                    cacheRef,
                    platform: target.platform,
                    pool: target.pool,
                })),
            );
        this.ref = this.built.apply((b) => b.ref);

        this.registerOutputs({ tag: this.tag, ref: this.ref, cacheRef: this.cacheRef });
    }
}

export interface MultiArchImageArgs {
    /** `<repo>:multiarch.<hash of the joined release tags>` */
    readonly tag: pulumi.Input<string>;
    /** Digest references of the per-platform images to join. */
    readonly sources: ReadonlyArray<pulumi.Input<string>>;
    readonly repositoryUrl: pulumi.Input<string>;
    /** ECR login (secret): `ImageRegistry.credentials`. Default: none (a local registry without login). */
    readonly credentials?: pulumi.Input<RegistryCredentials>;
}

export class MultiArchImage extends pulumi.ComponentResource {
    public readonly index: dockerbuild.Index;
    /** `<repo>@sha256:...` of the index. */
    public readonly ref: pulumi.Output<string>;

    constructor(name: string, args: MultiArchImageArgs, opts?: pulumi.ComponentResourceOptions) {
        super("ml-infra:build:MultiArchImage", name, {}, opts);
        if (args.sources.length < 2) throw new pulumi.ResourceError("a multi-arch image needs at least two sources", this);
        const credentials = args.credentials === undefined ? undefined : pulumi.output(args.credentials);
        this.index = new dockerbuild.Index(
            `${name}-index`,
            {
                tag: args.tag,
                sources: [...args.sources],
                push: true,
                registry: credentials && {
                    address: credentials.address,
                    username: credentials.username,
                    password: pulumi.secret(credentials.password),
                },
            },
            // Kept when replaced (a new tag) or deleted: the index may still be deployed.
            { parent: this, retainOnDelete: true },
        );
        this.ref = pulumi
            .all([args.repositoryUrl, this.index.ref])
            .apply(([url, ref]) => untilBuilt(ref, () => digestRef(url, ref.slice(ref.indexOf("@") + 1))));
        this.registerOutputs({ ref: this.ref });
    }
}

/**
 * What a build produces, once it is known. When a preview plans to rebuild an
 * image, the docker-build provider reports its digest as "" (not as unknown):
 * then the value is unknown, as it truly is until `pulumi up` builds it. An
 * empty digest after a real build is an error (digestRef says so).
 */
function untilBuilt<T>(digest: string, value: () => T): pulumi.Output<T> {
    if (digest === "" && pulumi.runtime.isDryRun()) return pulumi.output(pulumi.unknown) as unknown as pulumi.Output<T>;
    return pulumi.output(value()) as pulumi.Output<T>;
}
