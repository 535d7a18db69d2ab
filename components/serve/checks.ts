/**
 * Cross-field checks of the `serve` section (pure): what one field cannot say
 * alone (a service on its target, sidecars in a task, capacity per hardware
 * kind, clients). Run once, when the stack config is loaded; key paths are
 * relative to what is checked.
 */
import { ingressRangeProblem } from "../shared/cidr";
import type { HardwareTarget } from "../shared/hardware";
import { describeInstanceType, NVIDIA_GPU_FAMILIES } from "../shared/instance-types";
import { type Report, within } from "../shared/problems";
import { resolveTargets } from "../shared/target-config";
import { type HardwareKind, HARDWARE_KINDS, hardwareKindOf } from "./hardware-kinds";
import { checkServeImages } from "./images";
import { type CapacityConfig, type CapacityGroupConfig, type ClientsConfig, type LoadBalancerConfig, type ServeConfig, type ServiceFields, gpusFor } from "./schema";
import {
    MODEL_FETCH_CPU,
    MODEL_FETCH_MEMORY_MIB,
    RESERVED_CONTAINER_NAMES,
    SERVER_RESERVED_ENVIRONMENT,
    SIDECAR_CATALOGUE,
    resolveSidecar,
} from "./sidecars";

// ---------------------------------------------------------------- instance types

const capabilityParts = (c: string): [number, number] => {
    const [major, minor] = c.split(".").map(Number);
    return [major, minor ?? 0];
};

/**
 * Can code built for `archList` run on a GPU of `capability`? Binary code for
 * X.Y runs on X.Z with Z >= Y; PTX ("+PTX") for X.Y is JIT-compiled for any
 * newer capability.
 */
export function cudaRunsOn(archList: readonly string[], capability: string): boolean {
    const [cMajor, cMinor] = capabilityParts(capability);
    return archList.some((entry) => {
        const ptx = entry.endsWith("+PTX");
        const [major, minor] = capabilityParts(entry.replace(/\+PTX$/, ""));
        if (major === cMajor && minor <= cMinor) return true;
        return ptx && (major < cMajor || (major === cMajor && minor <= cMinor));
    });
}

// ---------------------------------------------------------------- checks

/**
 * Cross-field checks of one service on its target. Keys are relative to the
 * service (e.g. ["sidecars", 1, "port"]).
 */
export function checkService(service: ServiceFields, target: HardwareTarget, report: Report): void {
    const gpus = gpusFor(service, target);
    if (target.runtime.gpu && gpus < 1) {
        report(["gpus"], `target "${target.name}" needs a GPU: set gpus to 1 or more (or leave it unset)`);
    }
    if (!target.runtime.gpu && gpus > 0) {
        report(["gpus"], `target "${target.name}" is not a GPU target; remove gpus or pick a CUDA target`);
    }
    if (target.runtime.gpu && target.runtime.cpuArchitecture !== "X86_64") {
        report([], `target "${target.name}" is a GPU target on ${target.platform}; GPU capacity runs the x86_64 ECS GPU AMI, so GPU targets must be linux/amd64`);
    }

    const reservedEnv = SERVER_RESERVED_ENVIRONMENT.filter((n) => n !== "MODEL_PATH" || service.model.file !== undefined);
    for (const key of Object.keys(service.environment)) {
        if (reservedEnv.includes(key)) {
            report(["environment", key], `is set from the service's fields (PORT from port, MODEL_DIR from model.path, MODEL_PATH from model.file); set those instead`);
        }
    }
    if (service.sharedMemoryMiB >= service.memory) {
        report(["sharedMemoryMiB"], `must be less than the task's memory (${service.memory} MiB)`);
    }
    if (service.healthGracePeriodSeconds < service.healthStartPeriodSeconds) {
        report(["healthGracePeriodSeconds"], `must be at least healthStartPeriodSeconds (${service.healthStartPeriodSeconds}): the load balancer would kill tasks the container check still forgives`);
    }

    const names = new Map<string, number>();
    const portOwners = new Map<number, string>([[service.port, "the server's port"]]);
    let logRouters = 0;
    let memory = MODEL_FETCH_MEMORY_MIB;
    let cpu = MODEL_FETCH_CPU;
    service.sidecars.forEach((config, i) => {
        const sidecar = resolveSidecar(config);
        const entry = SIDECAR_CATALOGUE[sidecar.kind];
        const at = ["sidecars", i];
        memory += sidecar.memory;
        cpu += sidecar.cpu;

        const first = names.get(sidecar.name);
        if (first !== undefined) report([...at, "name"], `duplicate sidecar name "${sidecar.name}" (also sidecars[${first}]); give one a name`);
        else names.set(sidecar.name, i);
        if (RESERVED_CONTAINER_NAMES.includes(sidecar.name)) {
            report([...at, "name"], `"${sidecar.name}" is reserved; reserved: ${RESERVED_CONTAINER_NAMES.join(", ")}`);
        }

        if (config.port !== undefined && !entry.portConfigurable) {
            report([...at, "port"], entry.defaultPort === undefined ? `${sidecar.kind} binds no port; remove port` : `${sidecar.kind} always binds ${entry.defaultPort}; remove port`);
        }
        for (const port of sidecar.ports) {
            const owner = portOwners.get(port);
            if (owner !== undefined) {
                report([...at, "port"], `${sidecar.kind} "${sidecar.name}" binds ${port}, which is ${owner}; sidecar ports must differ from the server's port and from each other`);
            } else {
                portOwners.set(port, `bound by sidecar "${sidecar.name}"`);
            }
        }
        for (const key of Object.keys(config.environment)) {
            if (entry.reservedEnvironment.includes(key)) report([...at, "environment", key], `is set by the ${sidecar.kind} sidecar itself`);
        }
        for (const secret of entry.requiredSecrets) {
            if (!(secret in config.secrets)) report([...at, "secrets", secret], `${sidecar.kind} needs this secret (a Secrets Manager or SSM parameter ARN)`);
        }
        if (sidecar.kind === "log-router" && ++logRouters > 1) report(at, "a task has at most one log-router (FireLens)");
    });

    if (memory >= service.memory) {
        report(["memory"], `the model fetcher and sidecars take ${memory} MiB; the task's memory (${service.memory} MiB) must leave room for the server`);
    }
    if (cpu > service.cpu) {
        report(["cpu"], `the model fetcher and sidecars take ${cpu} CPU units; the task has ${service.cpu}`);
    }
}

/** A service as `checkServing` sees it. */
export interface ServingNeed {
    readonly name: string;
    readonly target: HardwareTarget;
}

/**
 * Checks of the serve-level sizing and access against the services. Keys are
 * relative to the `serve` section (e.g. ["capacity", "gpu", "instanceTypes", 0]).
 */
export function checkServing(
    serve: { readonly capacity: CapacityConfig; readonly clients: ClientsConfig },
    services: readonly ServingNeed[],
    report: Report,
): void {
    const { capacity, clients } = serve;
    const used = new Set(services.map((s) => hardwareKindOf(s.target)));

    for (const kind of HARDWARE_KINDS) {
        const at = ["capacity", kind];
        checkCapacityGroup(kind, capacity[kind], (keys, message) => report([...at, ...keys], message));
        if (used.has(kind) && capacity[kind].maxSize < 1) {
            const names = services.filter((s) => hardwareKindOf(s.target) === kind).map((s) => s.name);
            report([...at, "maxSize"], `services ${names.join(", ")} run on ${kind} capacity; maxSize must be at least 1`);
        }
    }

    // Every GPU instance type the group may launch must run every GPU service's code.
    for (const service of services) {
        const cuda = service.target.cuda;
        if (hardwareKindOf(service.target) !== "gpu" || !cuda) continue;
        capacity.gpu.instanceTypes.forEach((type, i) => {
            const capability = describeInstanceType(type).gpuCapability;
            if (capability !== undefined && !cudaRunsOn(cuda.archList, capability)) {
                report(
                    ["capacity", "gpu", "instanceTypes", i],
                    `${type} has compute capability ${capability}, which target "${service.target.name}" of service ${service.name} is not built for (${cuda.archList.join(", ")})`,
                );
            }
        });
    }

    if (services.length > 0) checkClients(clients, (keys, message) => report(["clients", ...keys], message));
}

/** Checks one Auto Scaling group's sizing and instance types. Keys are relative to the group. */
export function checkCapacityGroup(kind: HardwareKind, group: CapacityGroupConfig, report: Report): void {
    if (group.minSize > group.maxSize) report(["minSize"], `must not exceed maxSize (${group.maxSize})`);
    if (group.onDemandBaseCapacity > group.maxSize) report(["onDemandBaseCapacity"], `must not exceed maxSize (${group.maxSize})`);
    const seen = new Set<string>();
    group.instanceTypes.forEach((type, i) => {
        if (seen.has(type)) report(["instanceTypes", i], "listed twice");
        seen.add(type);
        const problem = instanceTypeProblem(kind, type);
        if (problem) report(["instanceTypes", i], problem);
    });
}

/** Checks who may reach the load balancers. Keys are relative to `serve.clients`. */
export function checkClients(clients: ClientsConfig, report: Report): void {
    if (clients.securityGroupIds.length === 0 && clients.cidrs.length === 0) {
        report([], "no one could reach the services: list client security groups (securityGroupIds) or CIDRs (cidrs)");
    }
    clients.cidrs.forEach((block, i) => {
        const problem = ingressRangeProblem(block);
        if (problem) report(["cidrs", i], `${problem}; the load balancers are internal and admit named clients only`);
    });
    const sgs = new Set<string>();
    clients.securityGroupIds.forEach((id, i) => {
        if (sgs.has(id)) report(["securityGroupIds", i], "listed twice");
        sgs.add(id);
    });
    const blocks = new Set<string>();
    clients.cidrs.forEach((block, i) => {
        if (blocks.has(block)) report(["cidrs", i], "listed twice");
        blocks.add(block);
    });
}

/**
 * Checks the listener settings. Keys are relative to `serve.loadBalancer`.
 * HTTPS (the default) needs a certificate; plain HTTP must be asked for
 * (protocol: http) and then takes neither a certificate nor a TLS policy.
 */
export function checkLoadBalancer(lb: LoadBalancerConfig, report: Report): void {
    if (lb.protocol === "https" && lb.certificateArn === undefined) {
        report(
            ["certificateArn"],
            "the listeners are HTTPS unless the stack says otherwise, and HTTPS needs an ACM certificate: set serve.loadBalancer.certificateArn, or set serve.loadBalancer.protocol: http to serve plain HTTP on port 80 on purpose",
        );
    }
    if (lb.protocol === "http" && lb.certificateArn !== undefined) {
        report(["protocol"], "a certificate is configured (certificateArn), so the listeners must be HTTPS: remove protocol: http (or the certificate)");
    }
    if (lb.protocol === "http" && lb.sslPolicy !== undefined) {
        report(["sslPolicy"], "is the TLS policy of an HTTPS listener; protocol is http: remove it (or serve HTTPS with a certificate)");
    }
}

/** Why an instance type does not belong to a kind's group; undefined when it does. */
export function instanceTypeProblem(kind: HardwareKind, type: string): string | undefined {
    const info = describeInstanceType(type);
    const known = Object.keys(NVIDIA_GPU_FAMILIES).filter((f) => NVIDIA_GPU_FAMILIES[f].architecture === "x86_64").join(", ");
    switch (kind) {
        case "gpu":
            if (info.gpuCapability === undefined) return `${type} has no NVIDIA GPU; known x86_64 GPU families: ${known}`;
            if (info.architecture !== "x86_64") return `${type} is Graviton; the GPU group runs the x86_64 ECS GPU AMI (known families: ${known})`;
            return undefined;
        case "arm64":
            if (info.gpuCapability !== undefined) return `${type} has a GPU; GPU services run on capacity.gpu`;
            if (info.architecture !== "arm64") return `${type} is not Graviton (arm64); use a family with a "g" after the generation, e.g. c7g, m7g, c8g`;
            return undefined;
        case "cpu":
            if (info.gpuCapability !== undefined) return `${type} has a GPU; GPU services run on capacity.gpu`;
            if (info.architecture !== "x86_64") return `${type} is Graviton (arm64); arm64 services run on capacity.arm64`;
            return undefined;
    }
}

/**
 * The whole `serve` section: its targets merged onto the catalog, each
 * service on its target, every image it runs (./images), then sizing and
 * access. Keys are relative to the section. Returns the resolved targets.
 */
export function checkServe(serve: ServeConfig, report: Report): Record<string, HardwareTarget> {
    const targets = resolveTargets(serve.targets, within(report, ["targets"]));
    const allowedTargets = Object.keys(targets).sort().join(", ");
    const seen = new Map<string, number>();
    serve.services.forEach((service, i) => {
        const at = within(report, ["services", i]);
        const first = seen.get(service.name);
        if (first !== undefined) at(["name"], `duplicate service name (also serve.services[${first}]); service names must be unique`);
        else seen.set(service.name, i);
        const target = targets[service.target];
        if (!target) at(["target"], `unknown target; allowed: ${allowedTargets}`);
        else checkService(service, target, at);
    });
    // Every image the services run: its form and digest, the stack's registry, pinned values.
    checkServeImages(serve, targets, report);
    const needs = serve.services.flatMap((s) => (targets[s.target] ? [{ name: s.name, target: targets[s.target] }] : []));
    checkServing(serve, needs, report);
    checkLoadBalancer(serve.loadBalancer, within(report, ["loadBalancer"]));
    return targets;
}
