/**
 * PullThroughCache: the ECR pull-through cache of the project's registry (the
 * runners stack): one rule per enabled upstream (ECR Public, Quay; Docker Hub
 * and GHCR when a credentials secret is named), and for each a repository
 * creation template for the repositories its first pulls create.
 *
 * The templates make repositories that work on the first pull, with no role
 * unless one is needed: tags are mutable (upstream tags move), cached images
 * expire after a while (ECR re-fetches them), encryption is AES-256 by
 * default. With `registry.kmsKeyArn` they encrypt with that key, and then
 * (as AWS documents) ECR needs a role to create them: the template gets one,
 * trusted by ecr.amazonaws.com, allowed exactly that (./iam). They set no
 * resource tags: tags would need that role too, and AWS documents templates
 * with tags breaking pull-through creation (aws/containers-roadmap#2398).
 */
import * as aws from "@pulumi/aws";
import * as pulumi from "@pulumi/pulumi";
import type { RegistryLocation } from "../shared/image-refs";
import { creationTemplateRolePolicy, creationTemplateTrustPolicy } from "./iam";
import { enabledUpstreams, pullThroughLifecyclePolicy } from "./pullthrough";
import type { RegistrySectionConfig } from "./schema";

export interface PullThroughCacheArgs {
    /** The validated `registry` section. Required. */
    readonly config: RegistrySectionConfig;
    /** The account's ECR registry (account, region, partition). Required. */
    readonly location: pulumi.Input<RegistryLocation>;
    /** Tags of the taggable resources (the role). Required. */
    readonly tags: Readonly<Record<string, string>>;
}

export class PullThroughCache extends pulumi.ComponentResource {
    /** Repository prefixes with a rule (`ecr-public`, `quay`, `docker-hub`, `github`). */
    public readonly prefixes: readonly string[];

    constructor(name: string, args: PullThroughCacheArgs, opts?: pulumi.ComponentResourceOptions) {
        super("ml-infra:registry:PullThroughCache", name, {}, opts);
        const { config } = args;
        const upstreams = enabledUpstreams(config.pullThrough);
        this.prefixes = upstreams.map((u) => u.upstream.prefix);
        const role = config.kmsKeyArn && this.prefixes.length > 0 ? this.templateRole(name, args, config.kmsKeyArn) : undefined;
        const encryptionConfigurations = config.kmsKeyArn ? [{ encryptionType: "KMS", kmsKey: config.kmsKeyArn }] : [{ encryptionType: "AES256" }];
        for (const { upstream, secretName } of upstreams) {
            // The secret is created (with its value) outside this program; only looked up here.
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
                    encryptionConfigurations,
                    lifecyclePolicy: JSON.stringify(pullThroughLifecyclePolicy(config.pullThrough.cachedImageExpireDays)),
                    customRoleArn: role?.arn,
                },
                { parent: this, dependsOn: role ? [role] : [] },
            );
        }
        this.registerOutputs({ prefixes: this.prefixes });
    }

    /** The role ECR assumes to create KMS-encrypted repositories, with exactly what that needs. */
    private templateRole(name: string, args: PullThroughCacheArgs, kmsKeyArn: string): aws.iam.Role {
        const location = pulumi.output(args.location);
        const role = new aws.iam.Role(
            `${name}-template-role`,
            {
                description: "ECR creates the pull-through cache's repositories, encrypted with the project's key",
                assumeRolePolicy: location.apply((l) => JSON.stringify(creationTemplateTrustPolicy(l))),
                tags: args.tags,
            },
            { parent: this },
        );
        new aws.iam.RolePolicy(
            `${name}-template-policy`,
            { role: role.id, policy: location.apply((l) => JSON.stringify(creationTemplateRolePolicy({ location: l, prefixes: this.prefixes, kmsKeyArn }))) },
            { parent: this },
        );
        return role;
    }
}
