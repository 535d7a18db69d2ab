/**
 * Cross-field checks of the `serve` section (pure): what one field cannot say
 * alone (a service on its target, sidecars in a task, capacity per hardware
 * kind, clients). Run once, when the stack config is loaded; key paths are
 * relative to what is checked.
 */
import { ingressRangeProblem } from "../shared/cidr";
import type { HardwareTarget } from "../shared/hardware";
import { describeInstanceType, instanceTypeProblem as instanceTypeExistsProblem, missingCpuFeatures, NVIDIA_GPU_FAMILIES } from "../shared/instance-types";
import { type Report, keyPathText, within } from "../shared/problems";
import { resolveTargets } from "../shared/target-config";
import { type HardwareKind, HARDWARE_KINDS, hardwareKindOf } from "./hardware-kinds";
import { checkServeImages } from "./images";
import { type InstanceSize, instanceSize } from "./instance-sizes";
import { certificateProblem } from "./listener";
import { type CapacityConfig, type CapacityGroupConfig, type ClientsConfig, type LoadBalancerConfig, type ServeConfig, type ServiceFields, DEFAULT_SHARED_MEMORY_MIB, gpusFor } from "./schema";
import {
    MODEL_FETCH_CPU,
    MODEL_FETCH_MEMORY_MIB,
    RESERVED_CONTAINER_NAMES,
    SERVER_CONTAINER,
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
    for (const map of ["environment", "secrets"] as const) {
        for (const key of Object.keys(service[map] ?? {})) {
            if (reservedEnv.includes(key)) {
                report([map, key], `is set from the service's fields (PORT from port, MODEL_DIR from model.path, MODEL_PATH from model.file); set those instead`);
            }
        }
    }
    checkEnvironmentAndSecrets(SERVER_CONTAINER, service.environment, service.secrets ?? {}, serverDerivedEnvironment(service), [], report);
    if (service.healthGracePeriodSeconds < service.healthStartPeriodSeconds) {
        report(["healthGracePeriodSeconds"], `must be at least healthStartPeriodSeconds (${service.healthStartPeriodSeconds}): the load balancer would kill tasks the container check still forgives`);
    }

    const names = new Map<string, number>();
    /** Who binds each port, and the key that sets it ("port" for the server; a sidecar's port key, written or not). */
    const portOwners = new Map<number, string>([[service.port, "the server's port (the service's port)"]]);
    let logRouter: number | undefined;
    let memory = MODEL_FETCH_MEMORY_MIB;
    let cpu = MODEL_FETCH_CPU;
    service.sidecars.forEach((config, i) => {
        const sidecar = resolveSidecar(config);
        const entry = SIDECAR_CATALOGUE[sidecar.kind];
        const at = ["sidecars", i];

        // A second log-router is one problem: it is not also a duplicate name, a moved port or a port taken twice.
        if (sidecar.kind === "log-router") {
            if (logRouter !== undefined) {
                report(at, `a task has at most one log-router (FireLens), and sidecars[${logRouter}] is one; remove this one`);
                return;
            }
            logRouter = i;
        }
        memory += sidecar.memory;
        cpu += sidecar.cpu;

        const first = names.get(sidecar.name);
        if (first !== undefined) report([...at, "name"], `duplicate sidecar name "${sidecar.name}" (also sidecars[${first}]); give one a name`);
        else names.set(sidecar.name, i);
        if (RESERVED_CONTAINER_NAMES.includes(sidecar.name)) {
            report([...at, "name"], `"${sidecar.name}" is reserved; reserved: ${RESERVED_CONTAINER_NAMES.join(", ")}`);
        }

        const movedPortIgnored = config.port !== undefined && !entry.portConfigurable;
        if (movedPortIgnored) {
            report([...at, "port"], entry.defaultPort === undefined ? `${sidecar.kind} binds no port; remove port` : `${sidecar.kind} always binds ${entry.defaultPort}; remove port`);
        }
        const written = config.port !== undefined && entry.portConfigurable;
        const taken: string[] = [];
        for (const port of sidecar.ports) {
            const owner = portOwners.get(port);
            if (owner !== undefined) taken.push(`${port}, which is ${owner}`);
            else portOwners.set(port, `bound by sidecar "${sidecar.name}" (sidecars[${i}])`);
        }
        // One message per sidecar, however many of its ports collide; a port the user did not write is named as the catalogue's default.
        if (taken.length > 0) {
            const binds = written || !entry.portConfigurable ? `binds ${taken.join(" and ")}` : `binds ${taken.join(" and ")}; its port is unset, so it binds the ${sidecar.kind} default ${entry.defaultPort}`;
            const fix = entry.portConfigurable ? `set sidecars[${i}].port to a free port${written ? "" : " or move the server's port"}` : `move the server's or the other sidecar's port`;
            report([...at, "port"], `${sidecar.kind} "${sidecar.name}" ${binds}; sidecar ports must differ from the server's port and from each other: ${fix}`);
        }
        for (const map of ["environment", "secrets"] as const) {
            for (const key of Object.keys(config[map])) {
                if (entry.reservedEnvironment.includes(key)) report([...at, map, key], `is set by the ${sidecar.kind} sidecar itself`);
            }
        }
        for (const secret of entry.requiredSecrets) {
            if (!(secret in config.secrets)) report([...at, "secrets", secret], `${sidecar.kind} needs this secret (a Secrets Manager or SSM parameter ARN)`);
        }
        checkEnvironmentAndSecrets(`sidecar "${sidecar.name}"`, config.environment, config.secrets, {}, at, report);
    });

    // Memory: one message per problem, on the key to change. A task below the
    // default /dev/shm size is a memory problem (sharedMemoryMiB is most likely
    // unset); otherwise sharedMemoryMiB was raised to the task's memory or past it.
    const shm = service.sharedMemoryMiB;
    const memoryReasons: string[] = [];
    if (memory >= service.memory) memoryReasons.push(`the model fetcher and sidecars take ${memory} MiB; the task's memory (${service.memory} MiB) must leave room for the server`);
    if (shm >= service.memory && service.memory < DEFAULT_SHARED_MEMORY_MIB) {
        memoryReasons.push(
            `the server's /dev/shm is ${shm} MiB${shm === DEFAULT_SHARED_MEMORY_MIB ? " (sharedMemoryMiB, 1024 MiB by default)" : " (sharedMemoryMiB)"} and must be less than the task's memory: give the task more memory or set a smaller sharedMemoryMiB`,
        );
    } else if (shm >= service.memory) {
        const byDefault = shm === DEFAULT_SHARED_MEMORY_MIB ? ` (${DEFAULT_SHARED_MEMORY_MIB} MiB is also the default when sharedMemoryMiB is unset)` : "";
        report(["sharedMemoryMiB"], `must be less than the task's memory (${service.memory} MiB)${byDefault}: set a smaller sharedMemoryMiB or give the task more memory`);
    }
    if (memoryReasons.length > 0) report(["memory"], memoryReasons.join("; and "));
    if (cpu > service.cpu) {
        report(["cpu"], `the model fetcher and sidecars take ${cpu} CPU units; the task has ${service.cpu}`);
    }
}

/** Environment the server gets from the service's fields (PORT, MODEL_DIR, MODEL_PATH), as buildContainerDefinitions sets it. */
function serverDerivedEnvironment(service: ServiceFields): Record<string, string> {
    const derived: Record<string, string> = { PORT: String(service.port), MODEL_DIR: service.model.path };
    if (service.model.file !== undefined) derived.MODEL_PATH = `${service.model.path}/${service.model.file}`;
    return derived;
}

/**
 * Most bytes of one container's environment and secrets (names, values and
 * ARNs): an ECS task definition holds at most 64 KiB, every container included.
 */
export const MAX_CONTAINER_ENVIRONMENT_BYTES = 32 * 1024;

/** Bytes a set of NAME=value pairs takes in the task definition (UTF-8). */
export function environmentBytes(...maps: ReadonlyArray<Readonly<Record<string, string>>>): number {
    let bytes = 0;
    for (const map of maps) for (const [name, value] of Object.entries(map)) bytes += Buffer.byteLength(name) + Buffer.byteLength(value);
    return bytes;
}

/**
 * One container's environment and secrets: no name in both (which would win is
 * ECS's choice, not the config's), and at most MAX_CONTAINER_ENVIRONMENT_BYTES
 * in all. Keys are relative to `at` (the service, or a sidecar of it).
 */
function checkEnvironmentAndSecrets(
    container: string,
    environment: Readonly<Record<string, string>>,
    secrets: Readonly<Record<string, string>>,
    derived: Readonly<Record<string, string>>,
    at: readonly (string | number)[],
    report: Report,
): void {
    for (const key of Object.keys(secrets)) {
        if (key in environment) report([...at, "secrets", key], `is also in environment (${keyPathText([...at, "environment", key])}); a variable comes from one of them: remove one`);
    }
    const bytes = environmentBytes(environment, secrets, derived);
    if (bytes > MAX_CONTAINER_ENVIRONMENT_BYTES) {
        report(
            [...at, "environment"],
            `container ${container}'s environment and secrets take ${bytes} bytes (names, values and ARNs); at most ${MAX_CONTAINER_ENVIRONMENT_BYTES} (an ECS task definition holds 64 KiB in all): move large values into the image, the model or a secret`,
        );
    }
}

/** A service as `checkServing` sees it. */
export interface ServingNeed {
    readonly name: string;
    readonly target: HardwareTarget;
    /**
     * Its index in serve.services: a target no instance type of its group can
     * run is then one problem on `services[<index>].target` (without it: one
     * on each instance type).
     */
    readonly index?: number;
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
    const gpuTypes = capacity.gpu.instanceTypes;
    const unfit = new Map<number, string[]>();
    for (const service of services) {
        const cuda = service.target.cuda;
        if (hardwareKindOf(service.target) !== "gpu" || !cuda) continue;
        const capabilities = gpuTypes.map((type) => describeInstanceType(type).gpuCapability);
        const cannot = gpuTypes.flatMap((_type, i) => (capabilities[i] !== undefined && !cudaRunsOn(cuda.archList, capabilities[i] ?? "") ? [i] : []));
        if (cannot.length === 0) continue;
        const targetKey = service.index === undefined ? `of service ${service.name}` : `of service ${service.name} (serve.services[${service.index}].target)`;
        if (service.index !== undefined && cannot.length === capabilities.filter((c) => c !== undefined).length) {
            // The target (or its cuda.archList) is what changed: one problem, on the service's target.
            const list = cannot.map((i) => `${gpuTypes[i]} ${capabilities[i]}`).join(", ");
            report(
                ["services", service.index, "target"],
                `target "${service.target.name}" is built for compute capability ${cuda.archList.join(", ")}, which no GPU of capacity.gpu.instanceTypes can run (${list}); pick a target built for them (cuda12 covers 6.0 to 12.0) or list instance types whose GPUs it runs on`,
            );
            continue;
        }
        for (const i of cannot) {
            const list = unfit.get(i) ?? [];
            list.push(`target "${service.target.name}" ${targetKey} is not built for (${cuda.archList.join(", ")})`);
            unfit.set(i, list);
        }
    }
    for (const [i, reasons] of [...unfit].sort((a, b) => a[0] - b[0])) {
        const type = gpuTypes[i];
        report(["capacity", "gpu", "instanceTypes", i], `${type} has compute capability ${describeInstanceType(type).gpuCapability ?? "?"}, which ${reasons.join(", nor ")}; remove it, or change the target`);
    }

    if (services.length > 0) checkClients(clients, (keys, message) => report(["clients", ...keys], message));
}

/**
 * A task must fit on at least one instance type of its capacity group: CPU
 * units (1024 per vCPU), memory and GPUs. A group holding a type whose size
 * is unknown (./instance-sizes) is not judged. Each dimension no type
 * offers enough of is one problem on its key; a task whose dimensions each
 * fit some type but no type fits them all is one problem on memory.
 * Keys are relative to the service.
 */
export function checkTaskFits(
    service: Pick<ServiceFields, "cpu" | "memory" | "gpus">,
    target: HardwareTarget,
    group: Pick<CapacityGroupConfig, "instanceTypes">,
    report: Report,
): void {
    const kind = hardwareKindOf(target);
    const sizes = group.instanceTypes.map((type) => ({ type, size: instanceSize(type) }));
    const known = sizes.flatMap((s) => (s.size ? [{ type: s.type, size: s.size }] : []));
    if (known.length === 0 || known.length < sizes.length) return;
    // GPUs on a target that is not a GPU target are checkService's problem, reported once there.
    const gpus = target.runtime.gpu ? gpusFor(service, target) : 0;
    const fits = (size: InstanceSize) => service.cpu <= size.vcpus * 1024 && service.memory <= size.memoryMiB && gpus <= size.gpus;
    if (known.some((k) => fits(k.size))) return;
    const types = `capacity.${kind}.instanceTypes`;
    const largest = (pick: (size: InstanceSize) => number) => known.reduce((best, k) => (pick(k.size) > pick(best.size) ? k : best));
    let reported = false;
    const cpuMax = largest((z) => z.vcpus);
    if (service.cpu > cpuMax.size.vcpus * 1024) {
        report(["cpu"], `no instance type of ${types} has that many CPU units: the largest, ${cpuMax.type}, has ${cpuMax.size.vcpus} vCPUs (${cpuMax.size.vcpus * 1024} units); the task could never be placed`);
        reported = true;
    }
    const memoryMax = largest((z) => z.memoryMiB);
    if (service.memory > memoryMax.size.memoryMiB) {
        report(["memory"], `no instance type of ${types} has that much memory: the largest, ${memoryMax.type}, has ${memoryMax.size.memoryMiB} MiB (ECS registers a little less); the task could never be placed`);
        reported = true;
    }
    const gpuMax = largest((z) => z.gpus);
    if (gpus > gpuMax.size.gpus) {
        report(["gpus"], `no instance type of ${types} has ${gpus} GPUs: the most is ${gpuMax.size.gpus} (${gpuMax.type}); the task could never be placed`);
        reported = true;
    }
    if (!reported) {
        const offers = known.map((k) => `${k.type} ${k.size.vcpus * 1024} units / ${k.size.memoryMiB} MiB / ${k.size.gpus} GPUs`).join(", ");
        report(["memory"], `the task (cpu ${service.cpu}, memory ${service.memory} MiB, ${gpus} GPUs) fits on no instance type of ${types} (${offers}); the task could never be placed`);
    }
}

/**
 * The target's CPU features on every instance type its capacity group may
 * launch: a server compiled for AVX-512 dies with an illegal instruction on
 * an AMD host before Zen 4 (c5a, m5a, c6a). Types the feature table does not
 * know are not judged. One problem on the service's target. Keys are relative
 * to the service.
 */
export function checkCpuFeatures(target: HardwareTarget, group: Pick<CapacityGroupConfig, "instanceTypes">, report: Report): void {
    if (target.cpuFeatures.length === 0) return;
    const kind = hardwareKindOf(target);
    const lacking = group.instanceTypes.flatMap((type) => {
        // A type that does not exist or does not belong to the group is reported as such (checkCapacityGroup), once.
        if (instanceTypeExistsProblem(type) ?? instanceTypeProblem(kind, type)) return [];
        const missing = missingCpuFeatures(type, target.cpuFeatures);
        return missing && missing.length > 0 ? [`${type} lacks ${missing.join(" ")}`] : [];
    });
    if (lacking.length === 0) return;
    report(
        ["target"],
        `${target.name} needs the CPU features ${target.cpuFeatures.join(" ")}, and capacity.${kind}.instanceTypes may launch hosts without them (${lacking.join("; ")}): the server would stop with an illegal instruction there; remove those types, or use a target they run`,
    );
}

/** Checks one Auto Scaling group's sizing and instance types. Keys are relative to the group. */
export function checkCapacityGroup(kind: HardwareKind, group: CapacityGroupConfig, report: Report): void {
    if (group.minSize > group.maxSize) report(["minSize"], `must not exceed maxSize (${group.maxSize})`);
    if (group.onDemandBaseCapacity > group.maxSize) report(["onDemandBaseCapacity"], `must not exceed maxSize (${group.maxSize})`);
    const seen = new Set<string>();
    group.instanceTypes.forEach((type, i) => {
        if (seen.has(type)) report(["instanceTypes", i], "listed twice");
        seen.add(type);
        const problem = instanceTypeExistsProblem(type) ?? instanceTypeProblem(kind, type);
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
export function checkLoadBalancer(lb: LoadBalancerConfig, report: Report, facts: StackFacts = {}): void {
    if (lb.certificateArn !== undefined) {
        const problem = certificateProblem(lb.certificateArn, facts);
        if (problem) report(["certificateArn"], problem);
    }
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

/** What the stack knows besides its config, when it knows it: `aws:region`. */
export interface StackFacts {
    readonly region?: string;
}

/**
 * The whole `serve` section: its targets merged onto the catalog, each
 * service on its target, every image it runs (./images), then sizing and
 * access. Keys are relative to the section. Returns the resolved targets.
 */
export function checkServe(serve: ServeConfig, report: Report, facts: StackFacts = {}): Record<string, HardwareTarget> {
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
        else {
            checkService(service, target, at);
            checkTaskFits(service, target, serve.capacity[hardwareKindOf(target)], at);
            checkCpuFeatures(target, serve.capacity[hardwareKindOf(target)], at);
        }
    });
    // Every image the services run: its form and digest, the stack's registry, pinned values.
    checkServeImages(serve, targets, report);
    const needs = serve.services.flatMap((s, index) => (targets[s.target] ? [{ name: s.name, target: targets[s.target], index }] : []));
    checkServing(serve, needs, report);
    checkLoadBalancer(serve.loadBalancer, within(report, ["loadBalancer"]), facts);
    return targets;
}
