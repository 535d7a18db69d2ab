/**
 * Composition root. Validates the stack's config before anything else, then
 * builds whichever sections the stack has:
 *   build: ECR registry + caches, one image per image × hardware target;
 *   serve: the digest each service of the environment deploys.
 */
import * as fs from "node:fs";
import * as aws from "@pulumi/aws";
import * as pulumi from "@pulumi/pulumi";
import { buildOrder } from "./components/build/chains";
import { pullThroughPrefixes } from "./components/build/checks";
import { BuildDashboard } from "./components/build/dashboard";
import { cacheRepositoryName, imageRepositoryName, targetImageName } from "./components/build/naming";
import { resolveThroughCache } from "./components/registry/pullthrough";
import { ImageRegistry, type RegistryCredentials } from "./components/build/registry";
import { builderName } from "./components/runners/ci";
import { BuildRunnerPool, multiArchBuilder as multiArchBuilderOf, runnerSummaries } from "./components/runners/pool";
import { type BaseImages, MultiArchImage, TargetImage } from "./components/build/target-image";
import { LocalService } from "./components/local/local-service";
import { PrivateNetwork } from "./components/network/private-network";
import { Environment } from "./components/serve/environment";
import { hardwareKindsOf } from "./components/serve/hardware-kinds";
import { InferenceService } from "./components/serve/inference-service";
import { ServingCluster } from "./components/serve/serving-cluster";
import { type HardwareTarget, POOLS } from "./components/shared/hardware";
import type { BuiltImage } from "./components/shared/image-refs";
import { loadStackConfig } from "./components/stack-config";

const config = loadStackConfig(pulumi.runtime.allConfig(), {
    project: pulumi.getProject(),
    stack: pulumi.getStack(),
    projectRoot: process.cwd(),
    pathExists: fs.existsSync,
    region: aws.config.region,
});

/** Build-time tokens (config `buildSecrets`, set with `pulumi config set --secret`): a Pulumi secret throughout. */
const buildSecrets = new pulumi.Config().getSecretObject<Record<string, string>>("buildSecrets");

const tags: Record<string, string> = {
    project: config.project,
    stack: config.stack,
    "cost-center": config.costCenter,
    "managed-by": "pulumi",
};

const network = config.network
    ? new PrivateNetwork("network", { config: config.network, region: aws.config.requireRegion(), tags })
    : undefined;

interface BuildOutputs {
    readonly images: pulumi.Output<Record<string, BuiltImage>>;
    readonly pools: BuildRunnerPool[];
    /** Per image, per target: the build. */
    readonly built: Readonly<Record<string, Readonly<Record<string, TargetImage>>>>;
}

/** Where images are pushed and their cache kept, and what a target's build starts from. */
interface ImageStore {
    readonly repositoryUrl: (image: string) => pulumi.Input<string>;
    readonly cacheRepositoryUrl: (image: string) => pulumi.Input<string>;
    readonly registries: pulumi.Input<RegistryCredentials[]>;
    readonly credentials?: pulumi.Input<RegistryCredentials>;
    readonly basesOf: (target: HardwareTarget) => pulumi.Input<BaseImages>;
}

/** ECR: the registry with its caches and pull-through rules, runner pools, the dashboard. */
function ecrStore(build: NonNullable<typeof config.build>): { store: ImageStore; pools: BuildRunnerPool[] } {
    const registry = new ImageRegistry("registry", {
        prefix: build.repositoryPrefix,
        images: build.images,
        options: build.registry,
        tags,
        protectData: config.protectData,
    });
    const pools = runnerPools(build, registry);
    new BuildDashboard("dashboard", {
        region: aws.config.requireRegion(),
        pools: pools.map((p) => ({ pool: p.pool, autoScalingGroupName: p.autoScalingGroup.name })),
        repositories: build.images.flatMap((i) => [
            imageRepositoryName(build.repositoryPrefix, i.name),
            cacheRepositoryName(build.repositoryPrefix, i.name),
        ]),
        tags,
    });
    // One Output per distinct target, not per image x target.
    const resolvedBases = new Map<string, pulumi.Output<BaseImages>>();
    const basesOf = (target: HardwareTarget) => {
        let bases = resolvedBases.get(target.name);
        if (!bases) {
            bases = registry.registryHost.apply((host) => ({
                base: resolveThroughCache(target.baseImage, host, registry.pullThroughUpstreams),
                runtime: resolveThroughCache(target.runtimeBaseImage ?? target.baseImage, host, registry.pullThroughUpstreams),
            }));
            resolvedBases.set(target.name, bases);
        }
        return bases;
    };
    const store: ImageStore = {
        repositoryUrl: (image) => registry.repositories[image].repositoryUrl,
        cacheRepositoryUrl: (image) => registry.cacheRepositories[image].repositoryUrl,
        registries: registry.registries,
        credentials: registry.credentials,
        basesOf,
    };
    return { store, pools };
}

/** A registry on this machine's loopback (the local stack): no AWS, no login, bases as declared. */
function localStore(build: NonNullable<typeof config.build>, registry: string): ImageStore {
    return {
        repositoryUrl: (image) => `${registry}/${imageRepositoryName(build.repositoryPrefix, image)}`,
        cacheRepositoryUrl: (image) => `${registry}/${cacheRepositoryName(build.repositoryPrefix, image)}`,
        registries: [],
        basesOf: (target) => ({ base: target.baseImage, runtime: target.runtimeBaseImage ?? target.baseImage }),
    };
}

function buildSection(build: NonNullable<typeof config.build>): BuildOutputs {
    const { store, pools } = build.localRegistry ? { store: localStore(build, build.localRegistry), pools: [] } : ecrStore(build);
    const images: Record<string, pulumi.Output<BuiltImage>> = {};
    const builtByImage: Record<string, Record<string, TargetImage>> = {};
    // Bases first: a dependent image's BASE_IMAGE is its base's digest for the same target.
    for (const image of buildOrder(build.images)) {
        const repositoryUrl = store.repositoryUrl(image.name);
        const cacheRepositoryUrl = store.cacheRepositoryUrl(image.name);
        const built: Record<string, TargetImage> = {};
        for (const targetName of image.targets) {
            const target = build.resolvedTargets[targetName];
            const chained = image.base === undefined ? undefined : builtByImage[image.base][targetName].ref.apply((ref) => ({ base: ref, runtime: ref }));
            built[targetName] = new TargetImage(targetImageName(image.name, targetName), {
                image,
                target,
                version: build.version,
                repositoryUrl,
                cacheRepositoryUrl,
                registries: store.registries,
                bases: chained ?? store.basesOf(target),
                buildOnPreview: build.buildOnPreview,
                // With runner pools, each target builds on the pool its catalog entry names.
                builder: build.runners ? builderName(target.pool) : build.builder,
                secrets: image.secrets.length > 0 ? secretsFor(image.secrets) : undefined,
            });
        }
        builtByImage[image.name] = built;
        const multiArch = image.multiArch
            ? new MultiArchImage(`${image.name}-multiarch`, {
                  tag: pulumi.interpolate`${repositoryUrl}:${build.version}`,
                  sources: [built[image.multiArch.amd64].ref, built[image.multiArch.arm64].ref],
                  repositoryUrl,
                  credentials: store.credentials,
              })
            : undefined;
        const targets = pulumi.all(Object.fromEntries(Object.entries(built).map(([t, b]) => [t, b.built])));
        const multiArchRef = multiArch ? multiArch.ref : pulumi.output(undefined);
        images[image.name] = pulumi
            .all([repositoryUrl, cacheRepositoryUrl, targets, multiArchRef])
            .apply(([repository, cacheRepository, targetOutputs, ref]) => ({
                repository,
                cacheRepository,
                targets: targetOutputs,
                multiArch: ref ? { tag: `${repository}:${build.version}`, ref } : undefined,
            }));
    }
    return { images: pulumi.all(images), pools, built: builtByImage };
}

function localSection(localConfig: NonNullable<typeof config.local>, builds: BuildOutputs) {
    const labels = { "ml-infra.project": config.project, "ml-infra.stack": config.stack };
    return Object.fromEntries(
        localConfig.services.map((service) => {
            const ref = builds.built[service.image][service.target].ref;
            const svc = new LocalService(service.name, { service, image: ref, labels });
            return [service.name, pulumi.all({ url: svc.url, ref })];
        }),
    );
}

/** The build secrets an image asks for (validated to exist), still a secret. */
function secretsFor(ids: readonly string[]): pulumi.Output<Record<string, string>> {
    return pulumi.secret(pulumi.output(buildSecrets ?? {}).apply((all) => Object.fromEntries(ids.map((id) => [id, all[id]]))));
}

/** One BuildKit runner pool per pool kind in `build.runners.pools`. */
function runnerPools(build: NonNullable<typeof config.build>, registry: ImageRegistry): BuildRunnerPool[] {
    const runners = build.runners;
    if (!runners || !network) return [];
    const repositoryArns = build.images.flatMap((i) => [registry.repositories[i.name].arn, registry.cacheRepositories[i.name].arn]);
    return POOLS.filter((pool) => runners.pools[pool] !== undefined).map(
        (pool) =>
            new BuildRunnerPool(`runners-${pool}`, {
                pool,
                runners,
                vpcId: network.vpcId,
                privateSubnetIds: network.privateSubnetIds,
                repositoryArns,
                pullThroughPrefixes: pullThroughPrefixes(build.registry),
                registryHost: registry.registryHost,
                tags,
                protectData: config.protectData,
            }),
    );
}

/** The environment's services on ECS (the config guarantees a serve section comes with a network). */
function serveSection(serve: NonNullable<typeof config.serve>, network: PrivateNetwork) {
    const env = new Environment("env", { serve, targets: serve.resolvedTargets });
    const cluster = new ServingCluster("serving", {
        hardware: hardwareKindsOf(serve.services.map((s) => serve.resolvedTargets[s.target])),
        capacity: serve.capacity,
        vpcId: network.vpcId,
        privateSubnetIds: network.privateSubnetIds,
        tags,
    });
    const region = aws.config.requireRegion();
    const urls: Record<string, pulumi.Output<string>> = {};
    for (const service of serve.services) {
        urls[service.name] = new InferenceService(service.name, {
            cluster,
            service,
            target: serve.resolvedTargets[service.target],
            image: env.deployments[service.name].ref,
            clients: serve.clients,
            loadBalancer: serve.loadBalancer,
            region,
            protectData: config.protectData,
            tags,
        }).url;
    }
    return pulumi.all(
        Object.fromEntries(
            Object.entries(env.deployments).map(([service, d]) => [
                service,
                pulumi.all({ image: d.image, target: d.target, ref: d.ref, source: d.source, platform: d.platform, gpu: d.gpu, url: urls[service] }),
            ]),
        ),
    );
}

const built = config.build ? buildSection(config.build) : undefined;

/** Every stack output the stack has (an output that would be undefined is left out: the engine warns about those). */
const outputs = definedOutputs({
    /** Build stack: per image, its repositories and per target the digest-pinned ref, digest, tag, platform, pool and cache ref. */
    images: built?.images,
    /** Build stack: per runner pool, its endpoint, builder name, CI commands and (secret) client certificate and key. */
    runners: built && built.pools.length > 0 ? runnerSummaries(built.pools) : undefined,
    /** Build stack: the multi-node builder (an amd64 node and an arm64 node) and the commands that create it. */
    multiArchBuilder: built ? multiArchBuilderOf(built.pools) : undefined,
    /** Local stack: per service, its URL on 127.0.0.1 and the digest it runs. */
    local: config.local && built ? localSection(config.local, built) : undefined,
    /** The network runners and services live in. */
    vpc: network ? { vpcId: network.vpcId, privateSubnetIds: network.privateSubnetIds } : undefined,
    /** Environment stacks: per service, the digest it deploys and where that digest came from. */
    deployments: config.serve && network ? serveSection(config.serve, network) : undefined,
});

function definedOutputs(all: Record<string, unknown>): Record<string, unknown> {
    return Object.fromEntries(Object.entries(all).filter(([, value]) => value !== undefined));
}

export = outputs;
