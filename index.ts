/**
 * Composition root. Validates the stack's config before anything else, then
 * builds whichever sections the stack has:
 *   network:           the private VPC runners and services live in;
 *   registry, runners: the runners stack: the pull-through cache and the BuildKit runner pools;
 *   build:             the build stack: repositories and one image per image × hardware target,
 *                      built on the runners stack's pools (read before anything is registered);
 *   serve:             an environment: the digest each service deploys, on ECS;
 *   local:             the local stack: the same images on this machine's BuildKit and Docker.
 */
import * as fs from "node:fs";
import * as aws from "@pulumi/aws";
import * as pulumi from "@pulumi/pulumi";
import { buildOrder } from "./components/build/chains";
import { checkBaseImages, checkTargetsOnPools } from "./components/build/checks";
import { BuildDashboard } from "./components/build/dashboard";
import { cacheRepositoryName, imageRepositoryName, targetImageName } from "./components/build/naming";
import { ImageRegistry, type RegistryCredentials } from "./components/build/registry";
import { type RunnersStackFacts, runnersStackFacts } from "./components/build/runners-stack";
import { multiArchTag } from "./components/build/release";
import { type BaseImages, MultiArchImage, TargetImage } from "./components/build/target-image";
import { LocalService } from "./components/local/local-service";
import { builtSidecarImage } from "./components/local/schema";
import { PrivateNetwork } from "./components/network/private-network";
import { PullThroughCache } from "./components/registry/pull-through-cache";
import { UPSTREAMS, type UpstreamKey, resolveThroughCache } from "./components/registry/pullthrough";
import { builderName } from "./components/runners/ci";
import { BuildRunnerPool, multiArchBuilder, runnerCredentials, runnerSummaries } from "./components/runners/pool";
import { Environment } from "./components/serve/environment";
import { hardwareKindsOf } from "./components/serve/hardware-kinds";
import { type BuildStackImages, type ServiceImages, imageSlots, resolveServeImages } from "./components/serve/images";
import { InferenceService } from "./components/serve/inference-service";
import { ServingCluster } from "./components/serve/serving-cluster";
import { type HardwareTarget, POOLS } from "./components/shared/hardware";
import { type BuiltImage, type RegistryLocation, registryLocationOf } from "./components/shared/image-refs";

type Registry = RegistryLocation & { readonly host: string };
import { ConfigError, formatKeyPath } from "./components/shared/problems";
import { referencedStack } from "./components/shared/stack-names";
import { type StackConfig, configObject, loadStackConfig, problemLine } from "./components/stack-config";

type Tags = Readonly<Record<string, string>>;
/** Upstream base images as config declares them. */
type DeclaredBases = Pick<HardwareTarget, "baseImage" | "runtimeBaseImage">;
type BuildConfig = NonNullable<StackConfig["build"]>;

interface BuildOutputs {
    readonly images: pulumi.Output<Record<string, BuiltImage>>;
    /** Per image, per target: the build. */
    readonly built: Readonly<Record<string, Readonly<Record<string, TargetImage>>>>;
}

/** Where images are pushed and their cache kept, what a target's build starts from, and which builder builds it. */
interface ImageStore {
    readonly repositoryUrl: (image: string) => pulumi.Input<string>;
    readonly cacheRepositoryUrl: (image: string) => pulumi.Input<string>;
    readonly registries: pulumi.Input<RegistryCredentials[]>;
    readonly credentials?: pulumi.Input<RegistryCredentials>;
    /** The references a build starts from, given the upstream bases it declares (a target's, or an image's own `baseImage`). */
    readonly basesOf: (declared: DeclaredBases) => pulumi.Input<BaseImages>;
    readonly builderOf: (target: HardwareTarget) => string | undefined;
}

export = async (): Promise<Record<string, unknown>> => {
    const config = loadStackConfig(pulumi.runtime.allConfig(), {
        project: pulumi.getProject(),
        stack: pulumi.getStack(),
        projectRoot: process.cwd(),
        pathExists: fs.existsSync,
        region: aws.config.region,
        isSecret: isConfigSecret,
    });
    const tags: Tags = { project: config.project, stack: config.stack, "cost-center": config.costCenter, "managed-by": "pulumi" };

    // Read what the build stack builds on before registering anything: a missing or unfit runners stack is a config error.
    const runnersStack = config.build ? await readRunnersStack(config, config.build) : undefined;
    // An environment reads the deploying account and the build stack it follows, and checks every image it will run, before registering anything.
    const serveImages = config.serve ? await readServeImages(config, config.serve) : undefined;
    if (config.build && !config.build.localRegistry) await checkEcrBaseImages(config, config.build, runnersStack);

    const network = config.network ? new PrivateNetwork("network", { config: config.network, region: aws.config.requireRegion(), tags }) : undefined;
    const location = config.registry ? registryLocation() : undefined;
    const pullThrough = config.registry && location ? new PullThroughCache("registry", { config: config.registry, location, tags }) : undefined;
    const pools = config.runners && network && pullThrough && location ? runnerPools(config, network, pullThrough, location, tags) : [];
    const built = config.build ? buildSection(config, config.build, runnersStack, tags) : undefined;

    return definedOutputs({
        /** Runners stack: per pool, its endpoint, builder, tunnel port, CA and the commands CI runs (plain). */
        runners: pools.length > 0 ? runnerSummaries(pools) : undefined,
        /** Runners stack: per pool, CI's client certificate and key (secret: read with --show-secrets). */
        runnerCredentials: pools.length > 0 ? runnerCredentials(pools) : undefined,
        /** Runners stack: the registry host, the project's repository namespace and the pull-through prefixes. */
        registry:
            location && config.registry && pullThrough
                ? pulumi.output(location).apply((l) => ({ host: l.host, repositoryPrefix: config.registry?.repositoryPrefix, pullThroughPrefixes: pullThrough.prefixes }))
                : undefined,
        /** Runners stack: the multi-node builder (the amd64 and the arm64 pool) and the commands that create it. */
        multiArchBuilder: multiArchBuilder(pools),
        /** Build stack: per image, its repositories and per target the digest-pinned ref, digest, tag, platform, pool and cache ref. */
        images: built?.images,
        /** Local stack: per service, its URL on 127.0.0.1 and the digest it runs. */
        local: config.local && built ? localSection(config, config.local, built) : undefined,
        /** The network runners and services live in. */
        vpc: network ? { vpcId: network.vpcId, privateSubnetIds: network.privateSubnetIds } : undefined,
        /** Environment stacks: per service, the digest it deploys and where that digest came from. */
        deployments: config.serve && network && serveImages ? serveSection(config, config.serve, serveImages, network, tags) : undefined,
    });
};

/**
 * Whether the CLI marked a config key secret (`{secure: ...}` in the stack
 * file). The SDK keeps this in its runtime state (PULUMI_CONFIG_SECRET_KEYS)
 * and exports the check without declaring it in its types.
 */
function isConfigSecret(key: string): boolean {
    const check = (pulumi.runtime as unknown as { isConfigSecret?: (k: string) => boolean }).isConfigSecret;
    return check ? check(key) : false;
}

function definedOutputs(all: Record<string, unknown>): Record<string, unknown> {
    return Object.fromEntries(Object.entries(all).filter(([, value]) => value !== undefined));
}

/** This account's ECR registry in the stack's region. */
function registryLocation(): pulumi.Output<Registry> {
    const region = aws.config.requireRegion();
    return aws.getCallerIdentityOutput().accountId.apply((account) => registryLocationOf(account, region));
}

// ---------------------------------------------------------------- runners stack

/** One BuildKit runner pool per pool kind in `runners.pools`. */
function runnerPools(config: StackConfig, network: PrivateNetwork, pullThrough: PullThroughCache, location: pulumi.Output<Registry>, tags: Tags): BuildRunnerPool[] {
    const runners = config.runners;
    const registry = config.registry;
    if (!runners || !registry) return [];
    return POOLS.filter((pool) => runners.pools[pool] !== undefined).map(
        (pool) =>
            new BuildRunnerPool(`runners-${pool}`, {
                pool,
                runners,
                vpcId: network.vpcId,
                privateSubnetIds: network.privateSubnetIds,
                repositoryPrefix: registry.repositoryPrefix,
                pullThroughPrefixes: pullThrough.prefixes,
                registryHost: location.apply((l) => l.host),
                tags,
                protectData: config.protectData,
            }),
    );
}

// ---------------------------------------------------------------- build stack

/**
 * The runners stack this build stack builds on (unless it names its own
 * builder or builds locally), read and checked before anything is registered.
 */
async function readRunnersStack(config: StackConfig, build: BuildConfig): Promise<RunnersStackFacts | undefined> {
    // On a builder of its own, the runners stack is read only when named (for its pull-through cache).
    if (build.localRegistry || (build.builder && !build.runnersStack)) return undefined;
    const onPools = build.builder === undefined;
    const name = referencedStack(build.runnersStack, pulumi.getOrganization(), config.project, "runners");
    const reference = new pulumi.StackReference("runners-stack", { name });
    const [runners, registry] = await Promise.all([reference.getOutputDetails("runners"), reference.getOutputDetails("registry")]);
    const { facts, problems } = runnersStackFacts(name, runners.value ?? runners.secretValue, registry.value, onPools);
    const lines = problems.map((p) => `${formatKeyPath(config.project, ["build", "runnersStack"])} = ${JSON.stringify(name)}: ${p}`);
    if (facts && onPools) {
        if (facts.registry.repositoryPrefix !== build.repositoryPrefix) {
            lines.push(
                `${formatKeyPath(config.project, ["build", "repositoryPrefix"])} = ${JSON.stringify(build.repositoryPrefix)}: the runners of ${name} may push under ${facts.registry.repositoryPrefix}/ only (its registry.repositoryPrefix); use the same prefix`,
            );
        }
        checkTargetsOnPools(build, build.resolvedTargets, facts.pools, name, (keys, message) =>
            lines.push(`${formatKeyPath(config.project, ["build", ...keys])}: ${message}`),
        );
    }
    if (lines.length > 0) throw new ConfigError(lines);
    return facts;
}

/**
 * Every base image of an ECR build is in this account's registry, behind a
 * pull-through rule of the runners stack, or allowed by config; checked
 * before anything is registered.
 */
async function checkEcrBaseImages(config: StackConfig, build: BuildConfig, runners: RunnersStackFacts | undefined): Promise<void> {
    const registryHost = runners?.registry.host ?? registryLocationOf((await aws.getCallerIdentity()).accountId, aws.config.requireRegion()).host;
    const enabled = new Set(runners?.registry.pullThroughPrefixes ?? []);
    const pullThroughHosts = new Set(UPSTREAMS.filter((u) => enabled.has(u.prefix)).flatMap((u) => u.hosts));
    const rulesFrom = runners
        ? `runners stack ${referencedStack(build.runnersStack, pulumi.getOrganization(), config.project, "runners")}`
        : `a runners stack (this stack builds on builder ${build.builder} and names no build.runnersStack whose pull-through cache it could use)`;
    const lines: string[] = [];
    const raw = configObject(config.project, pulumi.runtime.allConfig());
    checkBaseImages(build, build.resolvedTargets, { registryHost, pullThroughHosts, rulesFrom }, (keys, message) =>
        lines.push(problemLine(config.project, raw, ["build", ...keys], message)),
    );
    if (lines.length > 0) throw new ConfigError(lines);
}

/** ECR: the repositories and caches, and the dashboard of the pools and repositories. */
function ecrStore(config: StackConfig, build: BuildConfig, runners: RunnersStackFacts | undefined, tags: Tags): ImageStore {
    const registry = new ImageRegistry("registry", { prefix: build.repositoryPrefix, images: build.images, options: build.registry, tags, protectData: config.protectData });
    new BuildDashboard("dashboard", {
        region: aws.config.requireRegion(),
        pools: (runners?.pools ?? []).map((p) => ({ pool: p.pool, autoScalingGroupName: p.autoScalingGroupName })),
        repositories: build.images.flatMap((i) => [imageRepositoryName(build.repositoryPrefix, i.name), cacheRepositoryName(build.repositoryPrefix, i.name)]),
        tags,
    });
    const upstreams = new Set<UpstreamKey>(UPSTREAMS.filter((u) => runners?.registry.pullThroughPrefixes.includes(u.prefix)).map((u) => u.key));
    // One Output per distinct pair of bases, not per image x target.
    const resolvedBases = new Map<string, pulumi.Output<BaseImages>>();
    const basesOf = (declared: DeclaredBases) => {
        const key = `${declared.baseImage}\0${declared.runtimeBaseImage ?? ""}`;
        let bases = resolvedBases.get(key);
        if (!bases) {
            bases = registry.registryHost.apply((host) => ({
                base: resolveThroughCache(declared.baseImage, host, upstreams),
                runtime: resolveThroughCache(declared.runtimeBaseImage ?? declared.baseImage, host, upstreams),
            }));
            resolvedBases.set(key, bases);
        }
        return bases;
    };
    const builders = new Map((runners?.pools ?? []).map((p) => [p.pool, p.builder]));
    return {
        repositoryUrl: (image) => registry.repositories[image].repositoryUrl,
        cacheRepositoryUrl: (image) => registry.cacheRepositories[image].repositoryUrl,
        registries: registry.registries,
        credentials: registry.credentials,
        basesOf,
        // On the runners stack's pools, each target builds on the pool its catalog entry names.
        builderOf: (target) => build.builder ?? builders.get(target.pool) ?? builderName(target.pool),
    };
}

/** A registry on this machine's loopback (the local stack): no AWS, no login, bases as declared, the local runner. */
function localStore(build: BuildConfig, registry: string): ImageStore {
    return {
        repositoryUrl: (image) => `${registry}/${imageRepositoryName(build.repositoryPrefix, image)}`,
        cacheRepositoryUrl: (image) => `${registry}/${cacheRepositoryName(build.repositoryPrefix, image)}`,
        registries: [],
        basesOf: (declared) => ({ base: declared.baseImage, runtime: declared.runtimeBaseImage ?? declared.baseImage }),
        builderOf: () => build.builder,
    };
}

function buildSection(config: StackConfig, build: BuildConfig, runners: RunnersStackFacts | undefined, tags: Tags): BuildOutputs {
    const store = build.localRegistry ? localStore(build, build.localRegistry) : ecrStore(config, build, runners, tags);
    const buildSecrets = new pulumi.Config().getSecretObject<Record<string, string>>("buildSecrets");
    /** The build secrets an image asks for (validated to exist), still a secret. */
    const secretsFor = (ids: readonly string[]) =>
        pulumi.secret(pulumi.output(buildSecrets ?? {}).apply((all) => Object.fromEntries(ids.map((id) => [id, all[id]]))));
    const images: Record<string, pulumi.Output<BuiltImage>> = {};
    const builtByImage: Record<string, Record<string, TargetImage>> = {};
    // Bases first: a dependent image's BASE_IMAGE is its base's digest for the same target.
    for (const image of buildOrder(build.images)) {
        const repositoryUrl = store.repositoryUrl(image.name);
        const cacheRepositoryUrl = store.cacheRepositoryUrl(image.name);
        const built: Record<string, TargetImage> = {};
        for (const targetName of image.targets) {
            const target = build.resolvedTargets[targetName];
            // An upstream base of the image's own replaces the target's; a chain base is built first.
            const own = store.basesOf(image.baseImage === undefined ? target : { baseImage: image.baseImage });
            const bases =
                image.base === undefined
                    ? own
                    : pulumi.all([builtByImage[image.base][targetName].ref, own]).apply(([ref, b]) => ({ base: ref, runtime: ref, build: b.build ?? b.base }));
            built[targetName] = new TargetImage(targetImageName(image.name, targetName), {
                image,
                target,
                repositoryUrl,
                cacheRepositoryUrl,
                registries: store.registries,
                bases,
                buildOnPreview: build.buildOnPreview,
                builder: store.builderOf(target),
                secrets: image.secrets.length > 0 ? secretsFor(image.secrets) : undefined,
                allowedBaseImages: build.allowedBaseImages,
            });
        }
        builtByImage[image.name] = built;
        const multiArchTagOf = image.multiArch
            ? pulumi.all([built[image.multiArch.amd64].tag, built[image.multiArch.arm64].tag, repositoryUrl]).apply(([a, b, repo]) => `${repo}:${multiArchTag([a, b])}`)
            : undefined;
        const multiArch = image.multiArch && multiArchTagOf
            ? new MultiArchImage(`${image.name}-multiarch`, {
                  tag: multiArchTagOf,
                  sources: [built[image.multiArch.amd64].ref, built[image.multiArch.arm64].ref],
                  repositoryUrl,
                  credentials: store.credentials,
              })
            : undefined;
        const targets = pulumi.all(Object.fromEntries(Object.entries(built).map(([t, b]) => [t, b.built])));
        const multiArchRef = multiArch ? multiArch.ref : pulumi.output(undefined);
        images[image.name] = pulumi
            .all([repositoryUrl, cacheRepositoryUrl, targets, multiArchRef, multiArchTagOf ?? pulumi.output(undefined)])
            .apply(([repository, cacheRepository, targetOutputs, ref, tag]) => ({
                repository,
                cacheRepository,
                targets: targetOutputs,
                multiArch: ref && tag ? { tag, ref } : undefined,
            }));
    }
    return { images: pulumi.all(images), built: builtByImage };
}

// ---------------------------------------------------------------- local stack

/**
 * The local stack's services on this machine's Docker: each server runs this
 * stack's build of its image and target by digest, and so does each sidecar
 * that names one of this stack's images (the config check guarantees the build exists).
 */
function localSection(config: StackConfig, localConfig: NonNullable<StackConfig["local"]>, builds: BuildOutputs) {
    const labels = { "ml-infra.project": config.project, "ml-infra.stack": config.stack };
    return Object.fromEntries(
        localConfig.services.map((service) => {
            const ref = builds.built[service.image][service.target].ref;
            const sidecarImages: Record<string, pulumi.Output<string>> = {};
            for (const sidecar of service.sidecars) {
                const build = builtSidecarImage(sidecar, service);
                if (build) sidecarImages[sidecar.name] = builds.built[build.image][build.target].ref;
            }
            const svc = new LocalService(service.name, { service, image: ref, sidecarImages, labels });
            const sidecars: Record<string, pulumi.Output<string>> = {};
            for (const s of service.sidecars) sidecars[s.name] = sidecarImages[s.name] ?? pulumi.output(s.image);
            return [service.name, pulumi.output({ url: svc.url, ref, sidecars })];
        }),
    );
}

// ---------------------------------------------------------------- environments

type ServeConfig = NonNullable<StackConfig["serve"]>;

/** What an environment deploys from, read and checked before anything is registered. */
interface ServeImages {
    /** The stack's own ECR registry (the deploying account's, in the stack's region) and the allow-listed repositories. */
    readonly registry: { readonly host: string; readonly allowedImages: readonly string[] };
    /** Every image of every service, by service name. */
    readonly images: Readonly<Record<string, ServiceImages>>;
}

/**
 * The deploying account, the region and (when a service or a sidecar kind
 * follows it) the build stack's `images` output, read before anything is
 * registered; then every image every service runs, resolved and checked
 * against them (components/serve/images.ts). A missing or unfit build stack,
 * an image it lacks, a foreign registry, another account's, a digest it did
 * not build: one ConfigError listing each problem with its config key.
 */
async function readServeImages(config: StackConfig, serve: ServeConfig): Promise<ServeImages> {
    const key = (keys: ReadonlyArray<string | number>) => formatKeyPath(config.project, ["serve", ...keys]);
    const region = aws.config.region;
    if (region === undefined) {
        throw new ConfigError([`aws:region = (missing): an environment deploys only from its own registry in the stack's region; set aws:region`]);
    }
    let build: BuildStackImages | undefined;
    if (imageSlots(serve, serve.resolvedTargets).slots.some((slot) => slot.ref === undefined)) {
        const name = referencedStack(serve.buildStack, pulumi.getOrganization(), config.project, "build");
        const unfit = (why: string) =>
            new ConfigError([`${key(["buildStack"])} = ${JSON.stringify(name)}: ${why}; deploy the build stack first (pulumi up -s build), or pin every image in this stack (npm run promote)`]);
        let images: unknown;
        try {
            const details = await new pulumi.StackReference("build-stack", { name }).getOutputDetails("images");
            images = details.value ?? details.secretValue;
        } catch (error) {
            throw unfit(`cannot be read (${(error as Error).message})`);
        }
        if (typeof images !== "object" || images === null || Array.isArray(images)) throw unfit(`has no "images" output`);
        build = { stack: name, images };
    }
    const account = (await aws.getCallerIdentity({})).accountId;
    if (!account) throw new Error("cannot tell the deploying AWS account (aws.getCallerIdentity returned none)");
    const { images, problems } = resolveServeImages(serve, serve.resolvedTargets, { account, region, build });
    if (problems.length > 0) {
        throw new ConfigError(problems.map((p) => `${key(p.keys)} = ${p.value === undefined ? "(missing)" : JSON.stringify(p.value)}: ${p.message}`));
    }
    return { registry: { host: registryLocationOf(account, region).host, allowedImages: serve.allowedImages }, images };
}

/** The environment's services on ECS (the config guarantees a serve section comes with a network). */
function serveSection(config: StackConfig, serve: ServeConfig, images: ServeImages, network: PrivateNetwork, tags: Tags) {
    const env = new Environment("env", { serve, targets: serve.resolvedTargets, images: images.images });
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
        const deployment = env.deployments[service.name];
        urls[service.name] = new InferenceService(service.name, {
            cluster,
            service,
            target: serve.resolvedTargets[service.target],
            image: deployment.ref,
            images: deployment.containerImages,
            registry: images.registry,
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
                pulumi.all({
                    image: d.image,
                    target: d.target,
                    ref: d.ref,
                    source: d.source,
                    platform: d.platform,
                    gpu: d.gpu,
                    url: urls[service],
                    /** Every image the task runs (server, model-fetch, sidecars): CI tags these digests so lifecycle rules keep them. */
                    images: d.images.map((i) => ({ container: i.container, ref: i.ref })),
                }),
            ]),
        ),
    );
}
