/**
 * The stack config: one schema composed of the sections' schemas, and its
 * validation. Pure: it takes Pulumi's config map and a way to ask whether a
 * path exists, and returns typed config with every target resolved, or throws
 * one ConfigError that names every bad key, its value and what is allowed.
 * It runs once, before any resource is registered; components trust what it
 * returns.
 */
import { z } from "zod";
import { checkBuild } from "./build/checks";
import { type BuildConfig, buildSchema } from "./build/schema";
import { checkLocal } from "./local/checks";
import { type LocalConfig, localSchema } from "./local/schema";
import { checkNetwork } from "./network/checks";
import { type NetworkConfig, networkSchema } from "./network/schema";
import { pullThroughPrefixes } from "./registry/pullthrough";
import { type RegistrySectionConfig, registrySectionSchema } from "./registry/schema";
import { checkRunners } from "./runners/checks";
import { type RunnersConfig, runnersSchema } from "./runners/schema";
import { checkServe } from "./serve/checks";
import { regionProblem } from "./shared/region";
import { type ServeConfig, serveSchema } from "./serve/schema";
import type { HardwareTarget } from "./shared/hardware";
import { credentialProblem, credentialValueProblem } from "./shared/credentials";
import { ConfigError, editDistance, type KeyPath, type Report, type ReportOptions, formatKeyPath, keyPathText, within, zodProblems } from "./shared/problems";
import { strict } from "./shared/schema";

export { ConfigError };

export const stackConfigSchema = strict({
    costCenter: z
        .string()
        .regex(/^[\p{L}\p{Z}\p{N}_.:/=+\-@]{1,256}$/u, "must be 1 to 256 letters, digits, spaces and _ . : / = + - @ (an AWS tag value)")
        .default("ml-platform"),
    protectData: z.boolean().default(true),
    buildSecrets: z
        .record(z.string().regex(/^[a-z][a-z0-9_]{0,63}$/, "build secret ids are lower-case letters, digits and _"), z.string().min(1, "must not be empty"))
        .default({}),
    network: networkSchema.optional(),
    registry: registrySectionSchema.optional(),
    runners: runnersSchema.optional(),
    build: buildSchema.optional(),
    serve: serveSchema.optional(),
    local: localSchema.optional(),
});

export type RawStackConfig = z.infer<typeof stackConfigSchema>;

/** Validated config with every target resolved. */
export interface StackConfig {
    readonly project: string;
    readonly stack: string;
    readonly costCenter: string;
    /** Resources that hold data (image repositories, log groups) are protected and retained on delete. */
    readonly protectData: boolean;
    readonly network?: NetworkConfig;
    /** The account's registry (pull-through cache), made by the runners stack; defaults when the stack has runners but no `registry` section. */
    readonly registry?: RegistrySectionConfig;
    readonly runners?: RunnersConfig;
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
    /** The stack's AWS region (`aws:region`), when known: network zones must be in it. */
    readonly region?: string;
    /** Is this full config key (`ml-infra:buildSecrets`) a secret? When known, build secrets must be. */
    readonly isSecret?: (key: string) => boolean;
}

/** Config namespaces the program reads besides its own: the providers it uses and Pulumi's. */
export const OTHER_NAMESPACES: readonly string[] = ["aws", "pulumi", "docker", "docker-build", "tls"];

/**
 * Keys outside the project's namespace that the program would not read: a
 * key without a namespace, or a namespace it does not know (a typo such as
 * `ml_infra:`). Each is a problem line, never silently ignored.
 */
export function namespaceProblems(all: Readonly<Record<string, string>>, project: string): string[] {
    const known = [project, ...OTHER_NAMESPACES];
    const lines: string[] = [];
    for (const key of Object.keys(all).sort()) {
        const colon = key.indexOf(":");
        const namespace = colon < 0 ? "" : key.slice(0, colon);
        if (known.includes(namespace)) continue;
        const name = colon < 0 ? key : key.slice(colon + 1);
        const value = show(all[key]);
        if (colon < 0) {
            lines.push(`${key} = ${value}: a config key needs a namespace; did you mean ${project}:${name}? (namespaces read: ${known.join(", ")})`);
            continue;
        }
        const near = known.find((k) => editDistance(k, namespace) <= 2);
        lines.push(`${key} = ${value}: unknown config namespace "${namespace}"${near ? `; did you mean ${near}:${name}?` : ""} (namespaces read: ${known.join(", ")})`);
    }
    return lines;
}

/** Where a credential found at a key belongs instead. */
function credentialAdvice(keys: KeyPath): string {
    const text = keyPathText(keys);
    if (/(^|\.)buildArgs\./.test(text) || text.includes("].buildArgs")) {
        return "build args stay in the image history: pass it as a build secret (pulumi config set --secret --path 'ml-infra:buildSecrets.<id>' …, images[].secrets, RUN --mount=type=secret,id=<id>)";
    }
    if (text.startsWith("serve.") && text.includes(".environment.")) {
        return "the environment is plain text in the task definition: put the value in Secrets Manager or SSM Parameter Store and name its ARN under secrets: (services[].secrets or sidecars[].secrets)";
    }
    if (text.startsWith("local.")) return "the local stack's environment is plain text in the stack file: keep credentials out of it";
    return "stack files are plain text in git and in Pulumi's state: keep credentials out of them (build-time tokens go in ml-infra:buildSecrets, set with pulumi config set --secret)";
}

/**
 * Credentials in plain config: a value shaped like one anywhere, and under
 * `environment` and `buildArgs` maps also a name that says it holds one.
 * The values are never shown.
 */
function credentialProblems(value: unknown, keys: KeyPath, report: Report): void {
    if (typeof value === "string") {
        const parent = keys.length >= 2 ? String(keys[keys.length - 2]) : "";
        const name = String(keys[keys.length - 1]);
        const problem = parent === "environment" || parent === "buildArgs" ? credentialProblem(name, value) : credentialValueProblem(value);
        if (problem) report(keys, `${problem}: ${credentialAdvice(keys)}`, { redact: true });
        return;
    }
    if (Array.isArray(value)) value.forEach((v, i) => credentialProblems(v, [...keys, i], report));
    else if (value !== null && typeof value === "object") for (const [k, v] of Object.entries(value)) credentialProblems(v, [...keys, k], report);
}

// ------------------------------------------------------------ error format

function valueAt(root: unknown, keys: KeyPath): unknown {
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

/** One problem line: the full key, the value found there (in the config object `raw`, see configObject) and the message. */
export function problemLine(project: string, raw: unknown, keys: KeyPath, message: string, options: ReportOptions = {}): string {
    const value = SECRET_SECTIONS.includes(String(keys[0])) ? "[secret]" : options.redact ? "[redacted]" : show(valueAt(raw, keys));
    return `${formatKeyPath(project, keys)} = ${value}: ${message}`;
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
    const outside = namespaceProblems(all, project);
    // aws:region: one problem here; the checks that compare with it then do not run on a name that is no region.
    const badRegion = options.region === undefined ? undefined : regionProblem(options.region);
    if (badRegion) outside.push(`aws:region = ${JSON.stringify(options.region)}: ${badRegion}`);
    const region = badRegion ? undefined : options.region;
    const parsed = stackConfigSchema.safeParse(raw);
    if (!parsed.success) {
        throw new ConfigError([...outside, ...zodProblems(parsed.error).map((p) => problemLine(project, raw, p.keys, p.message))]);
    }
    const cfg = parsed.data;
    const problems: string[] = [...outside];
    const report: Report = (keys, message, opts) => problems.push(problemLine(project, raw, keys, message, opts));

    // Credentials: never in plain config; build secrets only as secrets.
    for (const [section, value] of Object.entries(raw)) {
        if (section === "buildSecrets") continue;
        if (options.isSecret?.(`${project}:${section}`)) continue;
        credentialProblems(value, [section], report);
    }
    if (Object.keys(cfg.buildSecrets).length > 0 && options.isSecret && !options.isSecret(`${project}:buildSecrets`)) {
        report(["buildSecrets"], "is plain text in the stack file: set each value with pulumi config set --secret --path 'ml-infra:buildSecrets.<id>' <value> (it is then stored encrypted)");
    }

    checkSections(cfg, report);
    if (cfg.network) checkNetwork(cfg.network, within(report, ["network"]), region, cfg.runners !== undefined);
    const registry = cfg.registry ?? (cfg.runners ? registrySectionSchema.parse({}) : undefined);
    if (cfg.runners && registry) checkRunners(cfg.runners, pullThroughPrefixes(registry.pullThrough), within(report, ["runners"]));
    const context = { buildSecrets: cfg.buildSecrets, protectData: cfg.protectData, projectRoot: options.projectRoot, pathExists: options.pathExists };
    const buildTargets = cfg.build ? checkBuild(cfg.build, context, within(report, ["build"])) : undefined;
    const serveTargets = cfg.serve ? checkServe(cfg.serve, within(report, ["serve"]), { region }) : undefined;
    if (cfg.local) {
        const built = new Set((cfg.build?.images ?? []).flatMap((i) => i.targets.map((t) => `${i.name}/${t}`)));
        checkLocal(cfg.local, built, within(report, ["local"]));
    }
    if (problems.length > 0) throw new ConfigError(problems);
    return {
        project,
        stack: options.stack,
        costCenter: cfg.costCenter,
        protectData: cfg.protectData,
        network: cfg.network,
        registry,
        runners: cfg.runners,
        build: cfg.build && buildTargets ? { ...cfg.build, resolvedTargets: buildTargets } : undefined,
        serve: cfg.serve && serveTargets ? { ...cfg.serve, resolvedTargets: serveTargets } : undefined,
        local: cfg.local,
    };
}

/** Which sections a stack may combine, and what each needs from the others. */
function checkSections(cfg: RawStackConfig, report: Report): void {
    if (!cfg.build && !cfg.serve && !cfg.local && !cfg.runners && !cfg.registry) {
        report(["build"], "a stack needs a section to deploy: runners (with network and registry), build, serve (with network) or local");
    }
    if (cfg.local) {
        if (!cfg.build?.localRegistry) report(["build", "localRegistry"], "the local section serves this stack's own builds: set build.localRegistry (e.g. 127.0.0.1:5000)");
        if (cfg.serve) report(["serve"], "a local stack serves with Docker (the local section), not ECS; remove one of them");
        if (cfg.network) report(["network"], "a local stack creates no AWS network; remove it");
    }
    if (cfg.serve && !cfg.network) {
        report(["network"], "the serve section needs a network section: services run in its private subnets");
    }
    const net = cfg.network;
    if (cfg.serve && net?.mode === "create" && net.natGateways === "none") {
        const missing = (["ecs", "ecs-agent", "ecs-telemetry"] as const).filter((e) => !net.interfaceEndpoints.includes(e));
        if (missing.length) report(["network", "interfaceEndpoints"], `without NAT, ECS container instances need the ${missing.join(", ")} endpoints; add them or set natGateways`);
    }
    if (cfg.runners && !cfg.network) {
        report(["network"], "the runners section needs a network section: runners live in private subnets");
    }
    if (cfg.runners && cfg.build) {
        report(["build"], "runners and build are separate stacks: the runner pools (and the builders CI makes for them) must exist before anything is built; move the build section to the build stack, which reads this one (build.runnersStack)");
    }
    // A security group can be referenced only from a rule in its own VPC (or a peered one).
    // A VPC this stack creates has no groups of callers in it.
    if (net?.mode === "create") {
        const instead = "a VPC this stack creates has no other security groups; name the callers' CIDRs (peered networks) instead, or reach the pools through the SSM tunnel (README, Build runners)";
        cfg.runners?.ciSources.securityGroupIds.forEach((_, i) => report(["runners", "ciSources", "securityGroupIds", i], `can only reference a group in an existing VPC (network.mode: existing): ${instead}`));
        cfg.serve?.clients.securityGroupIds.forEach((_, i) => report(["serve", "clients", "securityGroupIds", i], "can only reference a group in an existing VPC (network.mode: existing): a VPC this stack creates has no other security groups; name the clients' CIDRs (this VPC or peered networks) instead"));
    }
}
