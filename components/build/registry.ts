/**
 * ImageRegistry: the ECR side of the build stack.
 *
 * - one release repository per image (`<prefix>/<image>`): release tags
 *   immutable (only the `deployed-*` markers of what environments run may
 *   move), scan on push, KMS encryption; lifecycle: keep what is deployed,
 *   and the last N releases per target;
 * - one cache repository per image (`<prefix>/cache/<image>`): immutable
 *   except tags matching `cache-*`, so `cache-<target>` can be overwritten by
 *   every build while nothing else can; superseded cache manifests expire;
 * - registry credentials for docker-build (a Pulumi secret).
 *
 * The pull-through cache belongs to the account's registry and is made
 * before anything is built: the runners stack's PullThroughCache
 * (components/registry/).
 */
import * as aws from "@pulumi/aws";
import * as pulumi from "@pulumi/pulumi";
import type { RegistryConfig } from "./schema";
import { cacheLifecyclePolicy, releaseLifecyclePolicy } from "./lifecycle";
import { CACHE_TAG_PATTERN, DEPLOYED_TAG_PATTERN, cacheRepositoryName, imageRepositoryName } from "./naming";
import { dataResourceOptions } from "../shared/protection";

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
                    // Release tags never move; only the deployment markers CI moves (deployed-*) may.
                    imageTagMutability: "IMMUTABLE_WITH_EXCLUSION",
                    imageTagMutabilityExclusionFilters: [{ filter: DEPLOYED_TAG_PATTERN, filterType: "WILDCARD" }],
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

        this.registerOutputs({
            registryHost: this.registryHost,
            repositories: Object.fromEntries(Object.entries(repositories).map(([k, r]) => [k, r.repositoryUrl])),
            cacheRepositories: Object.fromEntries(Object.entries(cacheRepositories).map(([k, r]) => [k, r.repositoryUrl])),
        });
    }
}
