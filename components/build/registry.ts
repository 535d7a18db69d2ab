/**
 * ImageRegistry: the ECR side of the build stack.
 *
 * - one release repository per image (`<prefix>/<image>`): tags immutable,
 *   scan on push, KMS encryption, keep the last N releases per target;
 * - one cache repository per image (`<prefix>/cache/<image>`): immutable
 *   except tags matching `cache-*`, so `cache-<target>` can be overwritten by
 *   every build while nothing else can; superseded cache manifests expire;
 * - pull-through cache rules for ECR Public and Quay, and for Docker Hub and
 *   GHCR when a credentials secret (`ecr-pullthroughcache/...`) is named, with
 *   a repository creation template for the repositories they create;
 * - registry credentials for docker-build (a Pulumi secret).
 */
import * as aws from "@pulumi/aws";
import * as pulumi from "@pulumi/pulumi";
import type { RegistryConfig } from "./schema";
import { cacheLifecyclePolicy, pullThroughLifecyclePolicy, releaseLifecyclePolicy } from "./lifecycle";
import { CACHE_TAG_PATTERN, cacheRepositoryName, imageRepositoryName } from "./naming";
import { dataResourceOptions } from "../shared/protection";
import { type UpstreamKey, enabledUpstreams } from "../registry/pullthrough";

export interface ImageRegistryArgs {
    /** Repository namespace, e.g. `ml` (config `build.repositoryPrefix`, default `ml`). */
    readonly prefix: string;
    /** Every image and the names of its targets. */
    readonly images: ReadonlyArray<{ readonly name: string; readonly targets: readonly string[] }>;
    /** Registry options (config `build.registry`; every field has a default). */
    readonly options: RegistryConfig;
    /** Tags put on every taggable resource (cost allocation). */
    readonly tags: Readonly<Record<string, string>>;
    /** Protect and retain the repositories (config `protectData`, default true). */
    readonly protectData: boolean;
}

/** Credentials docker-build uses to push to and pull from ECR. */
export interface RegistryCredentials {
    readonly address: string;
    readonly username: string;
    readonly password: string;
}

export class ImageRegistry extends pulumi.ComponentResource {
    /** Release repository per image name. */
    public readonly repositories: Readonly<Record<string, aws.ecr.Repository>>;
    /** Cache repository per image name. */
    public readonly cacheRepositories: Readonly<Record<string, aws.ecr.Repository>>;
    /** `<account>.dkr.ecr.<region>.amazonaws.com` */
    public readonly registryHost: pulumi.Output<string>;
    /** Upstream registries whose pull-through rule exists. */
    public readonly pullThroughUpstreams: ReadonlySet<UpstreamKey>;
    /** ECR login for docker-build (a secret). */
    public readonly credentials: pulumi.Output<RegistryCredentials>;
    /** The same login as a docker-build `registries` list, shared by every image (a secret). */
    public readonly registries: pulumi.Output<RegistryCredentials[]>;

    constructor(name: string, args: ImageRegistryArgs, opts?: pulumi.ComponentResourceOptions) {
        super("ml-infra:build:ImageRegistry", name, {}, opts);
        if (args.images.length === 0) throw new pulumi.ResourceError("needs at least one image", this);
        const { options, tags } = args;
        const encryptionConfigurations = [{ encryptionType: "KMS", kmsKey: options.kmsKeyArn }];

        const repositories: Record<string, aws.ecr.Repository> = {};
        const cacheRepositories: Record<string, aws.ecr.Repository> = {};
        for (const image of args.images) {
            const repo = new aws.ecr.Repository(
                `${name}-${image.name}`,
                {
                    name: imageRepositoryName(args.prefix, image.name),
                    imageTagMutability: "IMMUTABLE",
                    imageScanningConfiguration: { scanOnPush: true },
                    encryptionConfigurations,
                    forceDelete: options.forceDelete,
                    tags: { ...tags, "ml-infra:image": image.name, "ml-infra:purpose": "release" },
                },
                { parent: this, ...dataResourceOptions(args.protectData) },
            );
            new aws.ecr.LifecyclePolicy(
                `${name}-${image.name}-lifecycle`,
                {
                    repository: repo.name,
                    policy: JSON.stringify(releaseLifecyclePolicy(image.targets, options.keepReleasesPerTarget)),
                },
                { parent: this },
            );
            const cache = new aws.ecr.Repository(
                `${name}-${image.name}-cache`,
                {
                    name: cacheRepositoryName(args.prefix, image.name),
                    imageTagMutability: "IMMUTABLE_WITH_EXCLUSION",
                    imageTagMutabilityExclusionFilters: [{ filter: CACHE_TAG_PATTERN, filterType: "WILDCARD" }],
                    imageScanningConfiguration: { scanOnPush: false },
                    encryptionConfigurations,
                    forceDelete: options.forceDelete,
                    tags: { ...tags, "ml-infra:image": image.name, "ml-infra:purpose": "build-cache" },
                },
                { parent: this, ...dataResourceOptions(args.protectData) },
            );
            new aws.ecr.LifecyclePolicy(
                `${name}-${image.name}-cache-lifecycle`,
                { repository: cache.name, policy: JSON.stringify(cacheLifecyclePolicy(options.cacheUntaggedExpireDays)) },
                { parent: this },
            );
            repositories[image.name] = repo;
            cacheRepositories[image.name] = cache;
        }
        this.repositories = repositories;
        this.cacheRepositories = cacheRepositories;

        const first = repositories[args.images[0].name];
        this.registryHost = first.repositoryUrl.apply((url) => url.split("/")[0]);
        const token = aws.ecr.getAuthorizationTokenOutput({ registryId: first.registryId }, { parent: this });
        this.credentials = pulumi.secret(
            pulumi.all([this.registryHost, token.userName, token.password]).apply(([address, username, password]) => ({
                address,
                username,
                password,
            })),
        );

        this.registries = this.credentials.apply((c) => [c]);

        this.pullThroughUpstreams = this.createPullThroughCache(name, options, tags, encryptionConfigurations);

        this.registerOutputs({
            registryHost: this.registryHost,
            repositories: Object.fromEntries(Object.entries(repositories).map(([k, r]) => [k, r.repositoryUrl])),
            cacheRepositories: Object.fromEntries(Object.entries(cacheRepositories).map(([k, r]) => [k, r.repositoryUrl])),
        });
    }

    private createPullThroughCache(
        name: string,
        options: RegistryConfig,
        tags: Readonly<Record<string, string>>,
        encryptionConfigurations: ReadonlyArray<{ encryptionType: string; kmsKey: string | undefined }>,
    ): ReadonlySet<UpstreamKey> {
        const enabled = new Set<UpstreamKey>();
        for (const { upstream, secretName } of enabledUpstreams(options.pullThrough)) {
            // The secret is created (with its value) outside this program; we only look it up.
            const credentialArn = secretName ? aws.secretsmanager.getSecretOutput({ name: secretName }, { parent: this }).arn : undefined;
            new aws.ecr.PullThroughCacheRule(
                `${name}-ptc-${upstream.prefix}`,
                { ecrRepositoryPrefix: upstream.prefix, upstreamRegistryUrl: upstream.upstreamRegistryUrl, credentialArn },
                { parent: this },
            );
            new aws.ecr.RepositoryCreationTemplate(
                `${name}-ptc-${upstream.prefix}-template`,
                {
                    prefix: upstream.prefix,
                    description: `repositories created by the ${upstream.upstreamRegistryUrl} pull-through cache`,
                    appliedFors: ["PULL_THROUGH_CACHE"],
                    // Upstream tags move (e.g. a re-published CUDA patch tag), so cached tags must be updatable.
                    imageTagMutability: "MUTABLE",
                    encryptionConfigurations: [...encryptionConfigurations],
                    lifecyclePolicy: JSON.stringify(pullThroughLifecyclePolicy(options.pullThrough.cachedImageExpireDays)),
                    resourceTags: { ...tags, "ml-infra:purpose": "pull-through-cache" },
                },
                { parent: this },
            );
            enabled.add(upstream.key);
        }
        return enabled;
    }
}
