/**
 * Environment: what a serving stack (dev, staging, prod) deploys. Each service
 * resolves to exactly one digest reference: the one pinned in the stack file,
 * or (dev) the build stack's latest output read through a StackReference.
 * A mutable tag can never come out of here.
 */
import * as pulumi from "@pulumi/pulumi";
import type { ServeConfig } from "./schema";
import { builtRef } from "../shared/image-refs";
import { referencedStack } from "../shared/stack-names";
import type { HardwareTarget } from "../shared/hardware";

export interface EnvironmentArgs {
    /** The validated `serve` section. */
    readonly serve: ServeConfig;
    /** Targets known to this stack (catalog plus `serve.targets`). */
    readonly targets: Readonly<Record<string, HardwareTarget>>;
}

/** One service as the environment will deploy it. */
export interface ResolvedDeployment {
    readonly image: string;
    readonly target: string;
    readonly ref: pulumi.Output<string>;
    /** "pinned" (stack file) or "build-stack" (followed through a StackReference). */
    readonly source: "pinned" | "build-stack";
    readonly platform: string;
    readonly gpu: boolean;
}

export class Environment extends pulumi.ComponentResource {
    public readonly deployments: Readonly<Record<string, ResolvedDeployment>>;
    public readonly buildStack?: pulumi.StackReference;

    constructor(name: string, args: EnvironmentArgs, opts?: pulumi.ComponentResourceOptions) {
        super("ml-infra:serve:Environment", name, {}, opts);
        const { serve, targets } = args;
        const follow = serve.services.some((s) => s.ref === undefined);
        const stackName = referencedStack(serve.buildStack, pulumi.getOrganization(), pulumi.getProject(), "build");
        const buildStack = follow ? new pulumi.StackReference(`${name}-build`, { name: stackName }, { parent: this }) : undefined;
        const images = buildStack?.getOutput("images") ?? pulumi.output(undefined);

        const deployments: Record<string, ResolvedDeployment> = {};
        for (const service of serve.services) {
            const target = targets[service.target];
            if (!target) throw new pulumi.ResourceError(`service ${service.name}: unknown target ${service.target}`, this);
            const pinned = service.ref;
            const ref =
                pinned !== undefined
                    ? pulumi.output(pinned)
                    : images.apply((all) => builtRef(all, service.image, service.target, stackName));
            deployments[service.name] = {
                image: service.image,
                target: service.target,
                ref,
                source: service.ref !== undefined ? "pinned" : "build-stack",
                platform: target.platform,
                gpu: target.runtime.gpu,
            };
        }
        this.deployments = deployments;
        this.buildStack = buildStack;
        // The refs are exported by the stack; registering them here too would report a bad build
        // output twice (once per place it is serialised).
        this.registerOutputs({});
    }
}
