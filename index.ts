/**
 * Composition root. Validates the stack's config before anything else, then
 * builds whichever sections the stack has:
 *   build: ECR registry + caches, one image per image × hardware target;
 *   serve: the digest each service of the environment deploys.
 */
import * as fs from "node:fs";
import * as pulumi from "@pulumi/pulumi";
import { buildOrder } from "./components/chains";
import { loadStackConfig } from "./components/config";
import { Environment } from "./components/environment";
import { type BaseImages, MultiArchImage, TargetImage } from "./components/image";
import { targetImageName } from "./components/naming";
import { resolveThroughCache } from "./components/pullthrough";
import type { BuiltImage } from "./components/references";
import { ImageRegistry } from "./components/registry";
import type { HardwareTarget } from "./components/targets";

const config = loadStackConfig(pulumi.runtime.allConfig(), {
    project: pulumi.getProject(),
    stack: pulumi.getStack(),
    projectRoot: process.cwd(),
    pathExists: fs.existsSync,
});

const tags: Record<string, string> = {
    project: config.project,
    stack: config.stack,
    "cost-center": config.costCenter,
    "managed-by": "pulumi",
};

function buildSection(build: NonNullable<typeof config.build>): pulumi.Output<Record<string, BuiltImage>> {
    const registry = new ImageRegistry("registry", {
        prefix: build.repositoryPrefix,
        images: build.images,
        options: build.registry,
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

    const images: Record<string, pulumi.Output<BuiltImage>> = {};
    const builtByImage: Record<string, Record<string, TargetImage>> = {};
    // Bases first: a dependent image's BASE_IMAGE is its base's digest for the same target.
    for (const image of buildOrder(build.images)) {
        const repositoryUrl = registry.repositories[image.name].repositoryUrl;
        const cacheRepositoryUrl = registry.cacheRepositories[image.name].repositoryUrl;
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
                registries: registry.registries,
                bases: chained ?? basesOf(target),
                buildOnPreview: build.buildOnPreview,
                builder: build.builder,
            });
        }
        builtByImage[image.name] = built;
        const multiArch = image.multiArch
            ? new MultiArchImage(`${image.name}-multiarch`, {
                  tag: pulumi.interpolate`${repositoryUrl}:${build.version}`,
                  sources: [built[image.multiArch.amd64].ref, built[image.multiArch.arm64].ref],
                  repositoryUrl,
                  credentials: registry.credentials,
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
    return pulumi.all(images);
}

function serveSection(serve: NonNullable<typeof config.serve>) {
    const env = new Environment("env", { serve, targets: serve.resolvedTargets });
    return pulumi.all(
        Object.fromEntries(
            Object.entries(env.deployments).map(([service, d]) => [
                service,
                pulumi.all({ image: d.image, target: d.target, ref: d.ref, source: d.source, platform: d.platform, gpu: d.gpu }),
            ]),
        ),
    );
}

/** Build stack: per image, its repositories and per target the digest-pinned ref, tag, platform, pool and cache ref. */
export const images = config.build ? buildSection(config.build) : undefined;
/** Environment stacks: per service, the digest it deploys and where that digest came from. */
export const deployments = config.serve ? serveSection(config.serve) : undefined;
