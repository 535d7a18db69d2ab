/**
 * Environment: what a serving stack (dev, staging, prod) deploys. Each
 * service runs exactly the images the program resolved before registering
 * anything (./images resolveServeImages): its server's digest (pinned in the
 * stack file, or the build stack's latest output in dev), its model-fetch
 * image and one image per sidecar, every one a digest from the stack's own
 * registry or an allow-listed repository. A mutable tag can never come out of
 * here.
 */
import * as pulumi from "@pulumi/pulumi";
import type { HardwareTarget } from "../shared/hardware";
import type { ContainerImage, ImageSource, ServiceImages } from "./images";
import type { ServeConfig } from "./schema";

export interface EnvironmentArgs {
    /** The validated `serve` section. */
    readonly serve: ServeConfig;
    /** Targets known to this stack (catalog plus `serve.targets`). */
    readonly targets: Readonly<Record<string, HardwareTarget>>;
    /** Every image of every service by service name, resolved and checked before anything was registered. */
    readonly images: Readonly<Record<string, ServiceImages>>;
}

/** One service as the environment will deploy it. */
export interface ResolvedDeployment {
    readonly image: string;
    readonly target: string;
    /** The server's digest reference. */
    readonly ref: string;
    /** "pinned" (stack file) or "build-stack" (the build stack's output). */
    readonly source: ImageSource;
    readonly platform: string;
    readonly gpu: boolean;
    /** Every image the service's task runs: server, model-fetch, sidecars by name. */
    readonly images: readonly ContainerImage[];
    /** The model-fetch and sidecar images, for InferenceService. */
    readonly containerImages: { readonly modelFetch: string; readonly sidecars: Readonly<Record<string, string>> };
}

export class Environment extends pulumi.ComponentResource {
    public readonly deployments: Readonly<Record<string, ResolvedDeployment>>;

    constructor(name: string, args: EnvironmentArgs, opts?: pulumi.ComponentResourceOptions) {
        super("ml-infra:serve:Environment", name, {}, opts);
        const { serve, targets, images } = args;
        const deployments: Record<string, ResolvedDeployment> = {};
        for (const service of serve.services) {
            const target = targets[service.target];
            if (!target) throw new pulumi.ResourceError(`service ${service.name}: unknown target ${service.target}`, this);
            const resolved = images[service.name];
            if (!resolved) throw new pulumi.ResourceError(`service ${service.name}: no images were resolved for it`, this);
            deployments[service.name] = {
                image: service.image,
                target: service.target,
                ref: resolved.server,
                source: resolved.serverSource,
                platform: target.platform,
                gpu: target.runtime.gpu,
                images: resolved.all,
                containerImages: { modelFetch: resolved.modelFetch, sidecars: resolved.sidecars },
            };
        }
        this.deployments = deployments;
        this.registerOutputs({});
    }
}
