/**
 * The one stack-config schema (zod) and its validation. Pure: it takes the raw
 * config map and a way to ask whether a path exists, and returns typed config
 * or throws one ConfigError that names every bad key, its value and what is
 * allowed. It runs before any resource is registered.
 */
import * as path from "node:path";
import { z } from "zod";
import {
    CATALOG,
    DERIVED_BUILD_ARGS,
    PLATFORMS,
    POOLS,
    type HardwareTarget,
    type TargetSpec,
    cudaArchProblems,
    poolMatchesPlatform,
    resolveTarget,
} from "./targets";
import { chainProblems } from "./chains";
import { buildkitImageProblem } from "./buildkit";
import { enabledUpstreams } from "./pullthrough";
import { parseDigestRef, repositoryNameMatchesImage } from "./references";
import { checkNetwork, checkRunners, networkSchema, runnersSchema } from "./runners-config";
import { imageRef, name, strict, stringMap } from "./schema";
import { capacitySchema, checkService, checkServing, clientsSchema, loadBalancerSchema, serviceShape } from "./serve-config";

/** Thrown for bad stack config. Pulumi prints a RunError's message without a stack trace. */
export class ConfigError extends Error {
    /** Lets Pulumi's RunError.isInstance() recognise it without importing the SDK here. */
    public readonly __pulumiRunError = true;
    constructor(public readonly problems: readonly string[]) {
        super(`Invalid stack configuration:\n  - ${problems.join("\n  - ")}`);
        this.name = "ConfigError";
    }
}

// ------------------------------------------------------------------- targets

const cudaSchema = strict({
    version: z.string().regex(/^\d+\.\d+(\.\d+)?$/, "CUDA version is major.minor[.patch]"),
    archList: z.array(z.string()).min(1, "needs at least one compute capability"),
});

/** Every field of a target; used for catalog entries and for stack targets after merging. */
export const targetSpecSchema = strict({
    description: z.string().min(1),
    platform: z.enum(PLATFORMS),
    baseImage: imageRef,
    runtimeBaseImage: imageRef.optional(),
    stage: z.string().regex(/^[A-Za-z][A-Za-z0-9_.-]*$/, "must be a Dockerfile stage name"),
    pool: z.enum(POOLS),
    buildArgs: stringMap,
    cpuFeatures: z.array(z.string().regex(/^[a-z0-9_]+$/, "CPU feature flags are as in /proc/cpuinfo")),
    cuda: cudaSchema.optional(),
    buildTimeoutMinutes: z.number().int().min(5).max(24 * 60),
});

/** A stack's target: a patch of a catalog entry (same name or `extends`) or a whole new target. */
const targetPatchSchema = strict({
    extends: z.string().optional(),
    description: z.string().optional(),
    platform: z.unknown().optional(),
    baseImage: z.unknown().optional(),
    runtimeBaseImage: z.unknown().optional(),
    stage: z.unknown().optional(),
    pool: z.unknown().optional(),
    buildArgs: z.record(z.string(), z.unknown()).optional(),
    cpuFeatures: z.unknown().optional(),
    cuda: z.unknown().optional(),
    buildTimeoutMinutes: z.unknown().optional(),
});
type TargetPatch = z.infer<typeof targetPatchSchema>;

const targetsSchema = z.record(name("target name"), targetPatchSchema).prefault({});

// --------------------------------------------------------------------- build

const pullThroughSecret = strict({
    secretName: z
        .string()
        .regex(/^ecr-pullthroughcache\/[A-Za-z0-9/_+=.@-]+$/, "must name a Secrets Manager secret whose name starts with ecr-pullthroughcache/"),
});

const registrySchema = strict({
    kmsKeyArn: z.string().regex(/^arn:aws[a-z-]*:kms:[a-z0-9-]+:\d{12}:(key|alias)\/.+$/, "must be a KMS key or alias ARN").optional(),
    forceDelete: z.boolean().default(false),
    keepReleasesPerTarget: z.number().int().min(1).max(1000).default(20),
    cacheUntaggedExpireDays: z.number().int().min(1).max(365).default(7),
    pullThrough: strict({
        enabled: z.boolean().default(true),
        ecrPublic: z.boolean().default(true),
        quay: z.boolean().default(true),
        dockerHub: pullThroughSecret.optional(),
        github: pullThroughSecret.optional(),
        cachedImageExpireDays: z.number().int().min(1).max(3650).default(90),
    }).prefault({}),
}).prefault({});

const imageSchema = strict({
    name: name("image name"),
    context: z.string().min(1, "must name the build context directory"),
    dockerfile: z.string().min(1).default("Dockerfile"),
    targets: z.array(z.string()).min(1, "an image needs at least one target"),
    buildArgs: stringMap.default({}),
    base: name("base image name").optional(),
    secrets: z.array(z.string()).default([]),
    multiArch: strict({
        amd64: z.string(),
        arm64: z.string(),
    }).optional(),
});

/** A registry on this machine's loopback (the `local` stack): 127.0.0.1:<port> or localhost:<port>. */
const LOCAL_REGISTRY_RE = /^(127\.0\.0\.1|localhost):\d{2,5}$/;

export const buildSchema = strict({
    localRegistry: z.string().regex(LOCAL_REGISTRY_RE, "must be a registry on loopback, e.g. 127.0.0.1:5000").optional(),
    version: z.string().regex(/^[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}$/, "must be a valid image tag of at most 64 characters"),
    repositoryPrefix: z.string().regex(/^[a-z0-9]+(?:[._-][a-z0-9]+)*$/, "must be a lower-case ECR repository namespace").default("ml"),
    buildOnPreview: z.boolean().default(false),
    builder: z.string().min(1).optional(),
    registry: registrySchema,
    runners: runnersSchema.optional(),
    targets: targetsSchema,
    images: z.array(imageSchema).min(1, "the build section needs at least one image"),
});

// --------------------------------------------------------------------- serve

const serviceSchema = strict({
    name: name("service name"),
    image: name("image name"),
    target: z.string(),
    ref: z.string().optional(),
    ...serviceShape,
});

const serveSchema = strict({
    buildStack: z
        .string()
        .regex(/^([A-Za-z0-9_.-]+\/){0,2}[A-Za-z0-9_.-]+$/, "must be a stack name: [org/][project/]stack")
        .optional(),
    requirePinned: z.boolean().default(false),
    targets: targetsSchema,
    services: z.array(serviceSchema).min(1, "the serve section needs at least one service"),
    capacity: capacitySchema,
    clients: clientsSchema,
    loadBalancer: loadBalancerSchema,
});

/** Build args whose names say they carry a credential: those belong in build secrets. */
export const CREDENTIAL_ARG_RE = /(TOKEN|PASSWORD|PASSWD|SECRET|CREDENTIAL|API_?KEY|ACCESS_?KEY)/i;

// --------------------------------------------------------------------- local

const localSidecarSchema = strict({
    name: name("sidecar name"),
    image: z.string().regex(/^(127\.0\.0\.1|localhost):\d{2,5}\/[a-z0-9._/-]+(:[A-Za-z0-9_.-]+)?(@sha256:[a-f0-9]{64})?$/, "must be an image in the local registry (127.0.0.1:<port>/...)"),
    port: z.number().int().min(1).max(65535),
    command: z.array(z.string()).default([]),
});

const localServiceSchema = strict({
    name: name("service name"),
    image: name("image name"),
    target: z.string(),
    port: z.number().int().min(1).max(65535).default(8080),
    hostPort: z.number().int().min(1024).max(65535),
    environment: stringMap.default({}),
    sidecars: z.array(localSidecarSchema).default([]),
});

/** The serve section of a stack on local Docker: services run from this stack's own builds. */
const localSchema = strict({
    services: z.array(localServiceSchema).min(1, "the local section needs at least one service"),
});

export const stackConfigSchema = strict({
    costCenter: z.string().min(1).default("ml-platform"),
    protectData: z.boolean().default(true),
    buildSecrets: z
        .record(z.string().regex(/^[a-z][a-z0-9_]{0,63}$/, "build secret ids are lower-case letters, digits and _"), z.string().min(1, "must not be empty"))
        .default({}),
    network: networkSchema.optional(),
    build: buildSchema.optional(),
    serve: serveSchema.optional(),
    local: localSchema.optional(),
});

export type RawStackConfig = z.infer<typeof stackConfigSchema>;
export type BuildConfig = NonNullable<RawStackConfig["build"]>;
export type ImageConfig = BuildConfig["images"][number];
export type RegistryConfig = BuildConfig["registry"];
export type ServeConfig = NonNullable<RawStackConfig["serve"]>;
export type ServiceConfig = ServeConfig["services"][number];
export type LocalConfig = NonNullable<RawStackConfig["local"]>;
export type LocalServiceConfig = LocalConfig["services"][number];
export type { NetworkConfig, RunnersConfig } from "./runners-config";

/** Validated config with every target resolved. */
export interface StackConfig {
    readonly project: string;
    readonly stack: string;
    readonly costCenter: string;
    /** Resources that hold data (image repositories, log groups) are protected and retained on delete. */
    readonly protectData: boolean;
    readonly network?: RawStackConfig["network"];
    readonly build?: BuildConfig & { readonly resolvedTargets: Readonly<Record<string, HardwareTarget>> };
    readonly serve?: ServeConfig & { readonly resolvedTargets: Readonly<Record<string, HardwareTarget>> };
    /** Docker on this machine: services run from this stack's own builds. */
    readonly local?: LocalConfig;
}

export interface LoadOptions {
    /** Pulumi project name: config keys are `<project>:<key>`. */
    readonly project: string;
    readonly stack: string;
    /** Directory that build contexts are relative to (where Pulumi.yaml is). */
    readonly projectRoot: string;
    /** Is there a file or directory at this absolute path? */
    readonly pathExists: (absolutePath: string) => boolean;
}

// ------------------------------------------------------------ error format

type PathKey = PropertyKey;

function formatPath(project: string, keys: readonly PathKey[]): string {
    let out = `${project}:`;
    keys.forEach((k, i) => {
        if (typeof k === "number") out += `[${k}]`;
        else out += i === 0 ? String(k) : `.${String(k)}`;
    });
    return out;
}

function valueAt(root: unknown, keys: readonly PathKey[]): unknown {
    let cur: unknown = root;
    for (const k of keys) {
        if (cur === null || typeof cur !== "object") return undefined;
        cur = (cur as Record<PropertyKey, unknown>)[k];
    }
    return cur;
}

function show(value: unknown): string {
    if (value === undefined) return "(missing)";
    const text = JSON.stringify(value);
    return text.length > 80 ? `${text.slice(0, 77)}...` : text;
}

/** Config keys whose values are secrets: errors name them but never show their values. */
const SECRET_SECTIONS: readonly string[] = ["buildSecrets"];

function problem(project: string, raw: unknown, keys: readonly PathKey[], message: string): string {
    const value = SECRET_SECTIONS.includes(String(keys[0])) ? "[secret]" : show(valueAt(raw, keys));
    return `${formatPath(project, keys)} = ${value}: ${message}`;
}

function zodProblems(project: string, raw: unknown, error: z.ZodError, prefix: readonly PathKey[] = []): string[] {
    return error.issues.flatMap((issue) => {
        const keys = [...prefix, ...issue.path];
        if (issue.code === "unrecognized_keys") {
            return issue.keys.map((k) => problem(project, raw, [...keys, k], issue.message));
        }
        return [problem(project, raw, keys, issue.message)];
    });
}

// ------------------------------------------------------------------ loading

/**
 * Turns Pulumi's flat config map (`{"ml-infra:build": "<json>"}`) into the
 * object the schema checks. Structured values arrive as JSON text.
 */
export function configObject(project: string, all: Readonly<Record<string, string>>): Record<string, unknown> {
    const out: Record<string, unknown> = {};
    for (const [key, text] of Object.entries(all)) {
        if (!key.startsWith(`${project}:`)) continue;
        out[key.slice(project.length + 1)] = parseConfigValue(text);
    }
    return out;
}

/** Objects arrive as JSON and booleans as "true"/"false" (as Config.getBoolean reads them); the rest stays text. */
function parseConfigValue(text: string): unknown {
    if (text === "true" || text === "false") return text === "true";
    try {
        const parsed: unknown = JSON.parse(text);
        return typeof parsed === "object" && parsed !== null ? parsed : text;
    } catch {
        return text;
    }
}

/** Validates the stack config; throws one ConfigError listing every problem. */
export function loadStackConfig(all: Readonly<Record<string, string>>, options: LoadOptions): StackConfig {
    const { project } = options;
    const raw = configObject(project, all);
    const parsed = stackConfigSchema.safeParse(raw);
    if (!parsed.success) throw new ConfigError(zodProblems(project, raw, parsed.error));
    const cfg = parsed.data;
    const problems: string[] = [];
    const report = (keys: readonly PathKey[], message: string) => problems.push(problem(project, raw, keys, message));

    if (!cfg.build && !cfg.serve && !cfg.local) {
        report(["build"], "a stack needs a build section, a serve section or both");
    }
    if (cfg.local) checkLocal(cfg.local, cfg, report);
    if (cfg.network) checkNetwork(cfg.network, (keys, message) => report(["network", ...keys], message));
    const build = cfg.build ? checkBuild(cfg.build, cfg.buildSecrets, raw, options, report, problems) : undefined;
    const serve = cfg.serve ? checkServe(cfg.serve, raw, options, report, problems) : undefined;
    if (cfg.build?.registry.forceDelete && cfg.protectData) {
        report(["build", "registry", "forceDelete"], "would let pulumi delete repositories that still hold images; allowed only with ml-infra:protectData: false (dev)");
    }
    if (cfg.serve && !cfg.network) {
        report(["network"], "the serve section needs a network section: services run in its private subnets");
    }
    const net = cfg.network;
    if (cfg.serve && net?.mode === "create" && net.natGateways === "none") {
        const missing = (["ecs", "ecs-agent", "ecs-telemetry"] as const).filter((e) => !net.interfaceEndpoints.includes(e));
        if (missing.length) report(["network", "interfaceEndpoints"], `without NAT, ECS container instances need the ${missing.join(", ")} endpoints; add them or set natGateways`);
    }
    if (cfg.build?.runners && !cfg.network) {
        report(["network"], "build.runners needs a network section: runners live in private subnets");
    }
    if (problems.length > 0) throw new ConfigError(problems);
    return { project, stack: options.stack, costCenter: cfg.costCenter, protectData: cfg.protectData, network: cfg.network, build, serve, local: cfg.local };
}

type Report = (keys: readonly PathKey[], message: string) => void;

/** Merges a section's targets onto the catalog and checks each merged target. */
function resolveTargets(
    section: "build" | "serve",
    patches: Readonly<Record<string, TargetPatch>>,
    raw: unknown,
    options: LoadOptions,
    report: Report,
    problems: string[],
): Record<string, HardwareTarget> {
    const resolved: Record<string, HardwareTarget> = {};
    for (const [targetName, spec] of Object.entries(CATALOG)) resolved[targetName] = resolveTarget(targetName, spec);
    for (const [targetName, patch] of Object.entries(patches)) {
        const at = [section, "targets", targetName];
        const baseName = patch.extends ?? (targetName in CATALOG ? targetName : undefined);
        if (patch.extends !== undefined && !(patch.extends in CATALOG)) {
            report([...at, "extends"], `unknown catalog target; allowed: ${Object.keys(CATALOG).sort().join(", ")}`);
            continue;
        }
        const base: Partial<TargetSpec> = baseName ? CATALOG[baseName] : {};
        const { extends: _ignored, ...fields } = patch;
        const merged: Record<string, unknown> = { ...base };
        for (const [k, v] of Object.entries(fields)) if (v !== undefined) merged[k] = v;
        if (base.buildArgs && fields.buildArgs) merged.buildArgs = { ...base.buildArgs, ...fields.buildArgs };
        if (!baseName && merged.description === undefined) merged.description = `stack target ${targetName}`;
        const checked = targetSpecSchema.safeParse(merged);
        if (!checked.success) {
            problems.push(...zodProblems(options.project, raw, checked.error, at));
            continue;
        }
        const target = checked.data;
        if (!poolMatchesPlatform(target.pool, target.platform)) {
            report([...at, "pool"], `pool "${target.pool}" cannot build ${target.platform} natively; allowed: ${target.platform === "linux/arm64" ? "arm64" : "amd64, gpu"}`);
        }
        if (target.cuda) {
            for (const p of cudaArchProblems(target.cuda)) report([...at, "cuda"], p);
        }
        for (const arg of Object.keys(target.buildArgs)) {
            if (CREDENTIAL_ARG_RE.test(arg)) report([...at, "buildArgs", arg], "looks like a credential: pass it as a build secret (images[].secrets), never a build arg");
        }
        for (const derived of DERIVED_BUILD_ARGS) {
            if (derived in (fields.buildArgs ?? {})) {
                report([...at, "buildArgs", derived], "is derived from the target's structured fields (baseImage, cuda, cpuFeatures); set those instead");
            }
        }
        resolved[targetName] = resolveTarget(targetName, target);
    }
    return resolved;
}

function checkBuild(
    build: BuildConfig,
    buildSecrets: Readonly<Record<string, string>>,
    raw: unknown,
    options: LoadOptions,
    report: Report,
    problems: string[],
): StackConfig["build"] {
    const targets = resolveTargets("build", build.targets, raw, options, report, problems);
    const allowedTargets = Object.keys(targets).sort().join(", ");
    const seen = new Map<string, number>();
    build.images.forEach((image, i) => {
        const at = ["build", "images", i];
        const first = seen.get(image.name);
        if (first !== undefined) report([...at, "name"], `duplicate image name (also build.images[${first}]); image names must be unique`);
        else seen.set(image.name, i);

        const context = path.resolve(options.projectRoot, image.context);
        if (!options.pathExists(context)) {
            report([...at, "context"], `build context directory not found (looked in ${context})`);
        } else if (!options.pathExists(path.resolve(context, image.dockerfile))) {
            report([...at, "dockerfile"], `Dockerfile not found in the build context (looked for ${path.resolve(context, image.dockerfile)})`);
        }

        const used = new Set<string>();
        image.targets.forEach((t, j) => {
            if (!(t in targets)) report([...at, "targets", j], `unknown target; allowed: ${allowedTargets}`);
            else if (used.has(t)) report([...at, "targets", j], "target listed twice for this image");
            used.add(t);
        });
        // Release tags are "<version>-<target>" and lifecycle rules match "*-<target>":
        // a target whose name ends in "-<other target>" would be counted under both.
        for (const a of used) {
            for (const b of used) {
                if (a !== b && a.endsWith(`-${b}`)) {
                    report([...at, "targets"], `targets "${a}" and "${b}" overlap: release tag "<version>-${a}" also matches "*-${b}"; rename one`);
                }
            }
        }

        image.secrets.forEach((id, j) => {
            if (!(id in buildSecrets)) {
                const known = Object.keys(buildSecrets).sort();
                report([...at, "secrets", j], `unknown build secret; set it with pulumi config set --secret --path 'ml-infra:buildSecrets.${id}' (defined: ${known.join(", ") || "none"})`);
            }
        });
        for (const arg of Object.keys(image.buildArgs)) {
            if (CREDENTIAL_ARG_RE.test(arg)) {
                report([...at, "buildArgs", arg], "looks like a credential: build args stay in the image history; pass it as a build secret (images[].secrets, RUN --mount=type=secret)");
                continue;
            }
            const owners = image.targets.filter((t) => targets[t] && arg in targets[t].buildArgs);
            if ((DERIVED_BUILD_ARGS as readonly string[]).includes(arg)) {
                report([...at, "buildArgs", arg], "is derived from the target; set it on the target (build.targets.<name>)");
            } else if (owners.length > 0) {
                report([...at, "buildArgs", arg], `is set by target ${owners.join(", ")}; override it in build.targets.<name>.buildArgs instead`);
            }
        }

        if (image.multiArch) {
            for (const arch of ["amd64", "arm64"] as const) {
                const t = image.multiArch[arch];
                const want = `linux/${arch}`;
                if (!used.has(t)) report([...at, "multiArch", arch], `must be one of this image's targets: ${image.targets.join(", ")}`);
                else if (targets[t]?.platform !== want) report([...at, "multiArch", arch], `target "${t}" builds ${targets[t]?.platform}, not ${want}`);
            }
        }
    });
    for (const p of chainProblems(build.images)) report(["build", "images", p.index, p.key], p.message);
    if (build.localRegistry && build.runners) {
        report(["build", "runners"], "a build to a local registry runs on this machine's Docker, not on runner pools; remove one of them");
    }
    if (build.runners) {
        const used = [...new Set(build.images.flatMap((i) => i.targets))].filter((t) => t in targets).map((t) => targets[t]);
        checkRunners(build.runners, used, (keys, message) => report(["build", "runners", ...keys], message));
        const problem = buildkitImageProblem(build.runners.buildkitImage, pullThroughPrefixes(build.registry));
        if (problem) report(["build", "runners", "buildkitImage"], problem);
        if (build.builder) report(["build", "builder"], "is set by the runner pools when build.runners is configured; remove one of them");
    }
    return { ...build, resolvedTargets: targets };
}

/** The `local` section: Docker on this machine, no AWS, serving what this stack builds. */
function checkLocal(local: LocalConfig, cfg: RawStackConfig, report: Report): void {
    if (!cfg.build?.localRegistry) report(["build", "localRegistry"], "the local section serves this stack's own builds: set build.localRegistry (e.g. 127.0.0.1:5000)");
    if (cfg.serve) report(["serve"], "a local stack serves with Docker (the local section), not ECS; remove one of them");
    if (cfg.network) report(["network"], "a local stack creates no AWS network; remove it");
    const built = new Set((cfg.build?.images ?? []).flatMap((i) => i.targets.map((t) => `${i.name}/${t}`)));
    const names = new Map<string, string>();
    const hostPorts = new Map<number, number>();
    local.services.forEach((service, i) => {
        const at = ["local", "services", i];
        if (!built.has(`${service.image}/${service.target}`)) {
            report([...at, "target"], `image ${service.image} is not built for target ${service.target} by this stack; built: ${[...built].sort().join(", ") || "nothing"}`);
        }
        const firstPort = hostPorts.get(service.hostPort);
        if (firstPort !== undefined) report([...at, "hostPort"], `also used by local.services[${firstPort}]`);
        else hostPorts.set(service.hostPort, i);
        const claim = (container: string, keys: readonly PathKey[]) => {
            const other = names.get(container);
            if (other !== undefined) report(keys, `container name also used by ${other}; names are unique`);
            else names.set(container, formatPath("ml-infra", keys));
        };
        claim(service.name, [...at, "name"]);
        service.sidecars.forEach((sidecar, j) => claim(sidecar.name, [...at, "sidecars", j, "name"]));
        service.sidecars.forEach((sidecar, j) => {
            if (sidecar.port === service.port) report([...at, "sidecars", j, "port"], `is the server's port; a sidecar listens on its own port`);
        });
    });
}

/** Prefixes of the pull-through rules the registry config creates. */
export function pullThroughPrefixes(registry: RegistryConfig): string[] {
    return enabledUpstreams(registry.pullThrough).map((u) => u.upstream.prefix);
}

function checkServe(
    serve: ServeConfig,
    raw: unknown,
    options: LoadOptions,
    report: Report,
    problems: string[],
): StackConfig["serve"] {
    const targets = resolveTargets("serve", serve.targets, raw, options, report, problems);
    const allowedTargets = Object.keys(targets).sort().join(", ");
    const seen = new Map<string, number>();
    serve.services.forEach((service, i) => {
        const at = ["serve", "services", i];
        const first = seen.get(service.name);
        if (first !== undefined) report([...at, "name"], `duplicate service name (also serve.services[${first}]); service names must be unique`);
        else seen.set(service.name, i);
        const target = targets[service.target];
        if (!target) report([...at, "target"], `unknown target; allowed: ${allowedTargets}`);
        else checkService(service, target, (keys, message) => report([...at, ...keys], message));
        if (service.ref === undefined) {
            if (serve.requirePinned) {
                report([...at, "ref"], "this stack deploys pinned digests only (serve.requirePinned): set ref to <registry>/<repository>@sha256:<digest>");
            } else if (serve.buildStack === undefined) {
                report([...at, "ref"], "set ref to a digest, or set serve.buildStack to follow the build stack's outputs");
            }
        } else {
            const ref = parseDigestRef(service.ref);
            if (!ref) {
                report([...at, "ref"], "must be pinned by digest: <registry>/<repository>@sha256:<64 hex digits>, never a tag");
            } else if (!repositoryNameMatchesImage(ref.repository, service.image)) {
                report([...at, "ref"], `repository "${ref.repository}" is not image "${service.image}"`);
            }
        }
    });
    const needs = serve.services.flatMap((s) => (targets[s.target] ? [{ name: s.name, target: targets[s.target] }] : []));
    checkServing(serve, needs, (keys, message) => report(["serve", ...keys], message));
    return { ...serve, resolvedTargets: targets };
}
