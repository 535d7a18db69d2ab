/**
 * TargetImage: one image built for one hardware target with BuildKit
 * (@pulumi/docker-build), pushed to ECR under an immutable release tag, with
 * its layer cache exported to and imported from the image's cache repository.
 *
 * MultiArchImage: joins one amd64 and one arm64 target of an image under one
 * multi-arch tag (a docker-build Index).
 */
import * as dockerbuild from "@pulumi/docker-build";
import * as pulumi from "@pulumi/pulumi";
import * as path from "node:path";
import type { ImageConfig } from "./schema";
import { cacheTag, releaseTag } from "./naming";
import { type BuiltTarget, digestRef } from "../shared/image-refs";
import type { RegistryCredentials } from "./registry";
import { type HardwareTarget, targetBuildArgs } from "../shared/hardware";

export interface TargetImageArgs {
    /** The image as declared in `build.images[]` (name, context, dockerfile, buildArgs). */
    readonly image: ImageConfig;
    /** The resolved hardware target. */
    readonly target: HardwareTarget;
    /** Release version (`build.version`); the tag is `<version>-<target>`. */
    readonly version: string;
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
     * ask for them (`RUN --mount=type=secret,id=<id>`); never build args. Default: none.
     */
    readonly secrets?: pulumi.Input<Record<string, string>>;
}

/** The base images a target's build starts from. */
export interface BaseImages {
    readonly base: string;
    readonly runtime: string;
}

export class TargetImage extends pulumi.ComponentResource {
    public readonly image: dockerbuild.Image;
    /** `<repo>:<version>-<target>` */
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
        // and a build stack has hundreds of image x target pairs.
        this.tag = pulumi.interpolate`${args.repositoryUrl}:${releaseTag(args.version, target.name)}`;
        this.cacheRef = pulumi.interpolate`${args.cacheRepositoryUrl}:${cacheTag(target.name)}`;
        const timeout = `${target.buildTimeoutMinutes}m`;

        this.image = new dockerbuild.Image(
            `${name}-image`,
            {
                push: true,
                tags: [this.tag],
                platforms: [target.platform],
                target: target.stage,
                // Relative paths keep the inputs identical on every machine (no perpetual diff).
                context: { location: image.context },
                dockerfile: { location: path.posix.join(image.context, image.dockerfile) },
                buildArgs: pulumi.output(args.bases).apply((b) => ({ ...image.buildArgs, ...targetBuildArgs(target, b.base, b.runtime) })),
                labels: {
                    "org.opencontainers.image.version": args.version,
                    "ml-infra.image": image.name,
                    "ml-infra.target": target.name,
                },
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
                registries: args.registries,
                secrets: args.secrets,
                buildOnPreview: args.buildOnPreview,
                builder: args.builder ? { name: args.builder } : undefined,
            },
            { parent: this, customTimeouts: { create: timeout, update: timeout } },
        );
        this.built = pulumi
            .all([args.repositoryUrl, args.cacheRepositoryUrl, this.image.digest])
            .apply(([url, cacheUrl, digest]) =>
                untilBuilt(digest, () => ({
                    ref: digestRef(url, digest),
                    digest,
                    tag: `${url}:${releaseTag(args.version, target.name)}`,
                    cacheRef: `${cacheUrl}:${cacheTag(target.name)}`,
                    platform: target.platform,
                    pool: target.pool,
                })),
            );
        this.ref = this.built.apply((b) => b.ref);

        this.registerOutputs({ tag: this.tag, ref: this.ref, cacheRef: this.cacheRef });
    }
}

export interface MultiArchImageArgs {
    /** `<repo>:<version>` */
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
            { parent: this },
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
