/**
 * Offline plan: evaluates the real program for a stack under Pulumi's mock
 * runtime (no Pulumi CLI, no cloud, no credentials), prints the resources as
 * a tree by component with counts per type, runs the policy pack over them
 * and exits non-zero on a mandatory violation.
 *
 *   npm run plan -- --stack dev
 *   npm run plan -- --stack prod --json plan-prod.json
 *   npm run plan -- --stack prod --json new.json --diff old.json
 *   npm run plan -- --stack custom --config my-stack.yaml   (a stack file outside stacks/)
 *
 * IDs, ARNs and digests in the plan are the mocks' placeholders
 * (account 123456789012); inputs are exactly what the program would send.
 */
import * as fs from "node:fs";
import * as path from "node:path";
import { parse as parseYaml } from "yaml";
import { type PolicyResource, type Violation, runPolicies } from "../policy/policies";
import {
    type Evaluation,
    type ProgramLoader,
    type Registered,
    evaluate,
    policyResourceOf,
    requireProgram,
    stackFileConfig,
    stackNames,
} from "./lib/mock-runtime";

const PROJECT_KEY_BUILD = "ml-infra:build";
const PROJECT_KEY_SERVE = "ml-infra:serve";
const SECRET = "[secret]";

export interface PlanResource {
    readonly urn: string;
    readonly type: string;
    readonly name: string;
    readonly parent: string;
    readonly inputs: unknown;
    readonly protect: boolean;
    readonly retainOnDelete: boolean;
    readonly customTimeouts: Registered["customTimeouts"];
}

export interface Plan {
    readonly stack: string;
    readonly resources: readonly PlanResource[];
    readonly outputs: unknown;
    readonly violations: readonly Violation[];
}

/** JSON with object keys sorted at every level, so equal plans are equal text. */
export function stableJson(value: unknown): string {
    return JSON.stringify(sortKeys(value), null, 2);
}

function sortKeys(value: unknown): unknown {
    if (Array.isArray(value)) return value.map(sortKeys);
    if (value !== null && typeof value === "object") {
        return Object.fromEntries(
            Object.keys(value)
                .sort()
                .map((k) => [k, sortKeys((value as Record<string, unknown>)[k])]),
        );
    }
    return value;
}

function redact(r: Registered): unknown {
    return Object.fromEntries(Object.entries(r.inputs).map(([k, v]) => [k, r.secretInputs.includes(k) ? SECRET : v]));
}

/** The config of a stack file: under stacks/, or any path given with --config. */
function configOf(stack: string, file?: string): Record<string, unknown> {
    if (!file) return stackFileConfig(stack);
    return (parseYaml(fs.readFileSync(file, "utf8")) as { config?: Record<string, unknown> }).config ?? {};
}

/** Evaluates a stack (and, if it follows a build stack, that stack first) and checks it against the policy pack. */
export async function plan(stack: string, configFile?: string, load: ProgramLoader = requireProgram): Promise<Plan> {
    const config = configOf(stack, configFile);
    const serve = config[PROJECT_KEY_SERVE] as { services?: Array<{ ref?: string }> } | undefined;
    let buildOutputs: Record<string, unknown> | undefined;
    if (serve?.services?.some((s) => s.ref === undefined)) {
        const buildStack = stackNames().find((s) => PROJECT_KEY_BUILD in stackFileConfig(s));
        if (buildStack && buildStack !== stack) buildOutputs = (await evaluate(buildStack, {}, load)).outputs;
    }
    const ev: Evaluation = await evaluate(stack, { config, buildOutputs }, load);
    const resources = ev.resources.map((r) => ({
        urn: r.urn,
        type: r.type,
        name: r.name,
        parent: r.parent,
        inputs: redact(r),
        protect: r.protect,
        retainOnDelete: r.retainOnDelete,
        customTimeouts: r.customTimeouts,
    }));
    const policyInput: PolicyResource[] = ev.resources.map(policyResourceOf);
    return { stack, resources, outputs: ev.outputs, violations: runPolicies(policyInput) };
}

/** The resources as an indented tree (children under their component), then counts per type. */
export function renderTree(p: Plan): string {
    const children = new Map<string, PlanResource[]>();
    const urns = new Set(p.resources.map((r) => r.urn));
    for (const r of p.resources) {
        const parent = urns.has(r.parent) ? r.parent : "";
        children.set(parent, [...(children.get(parent) ?? []), r]);
    }
    const lines: string[] = [`stack ${p.stack}: ${p.resources.length} resources`];
    const walk = (parent: string, depth: number) => {
        for (const r of children.get(parent) ?? []) {
            lines.push(`${"  ".repeat(depth + 1)}${r.name}  (${r.type})${r.protect ? " [protected]" : ""}`);
            walk(r.urn, depth + 1);
        }
    };
    walk("", 0);
    const counts = new Map<string, number>();
    for (const r of p.resources) counts.set(r.type, (counts.get(r.type) ?? 0) + 1);
    lines.push("", "count  type");
    for (const [type, n] of [...counts].sort(([a], [b]) => a.localeCompare(b))) lines.push(`${String(n).padStart(5)}  ${type}`);
    return lines.join("\n");
}

export interface DigestChange {
    readonly service: string;
    readonly from: string | undefined;
    readonly to: string | undefined;
}

export interface PlanDiff {
    /** Services whose deployed digest changes (what a promotion PR changes). */
    readonly digests: readonly DigestChange[];
    readonly added: readonly string[];
    readonly removed: readonly string[];
    /** URN -> the top-level inputs (or options) that differ. */
    readonly changed: ReadonlyArray<{ urn: string; keys: string[] }>;
}

function deployedRefs(outputs: unknown): Map<string, string> {
    const deployments = (outputs as { deployments?: Record<string, { ref?: string }> } | undefined)?.deployments ?? {};
    return new Map(Object.entries(deployments).map(([service, d]) => [service, String(d.ref)]));
}

/** What changed between two plans: deployed digests by service, resources by URN. */
export function diffPlans(before: Pick<Plan, "resources" | "outputs">, after: Pick<Plan, "resources" | "outputs">): PlanDiff {
    const oldRefs = deployedRefs(before.outputs);
    const newRefs = deployedRefs(after.outputs);
    const digests = [...new Set([...oldRefs.keys(), ...newRefs.keys()])]
        .sort()
        .filter((service) => oldRefs.get(service) !== newRefs.get(service))
        .map((service) => ({ service, from: oldRefs.get(service), to: newRefs.get(service) }));
    const old = new Map(before.resources.map((r) => [r.urn, r]));
    const now = new Map(after.resources.map((r) => [r.urn, r]));
    const changed: Array<{ urn: string; keys: string[] }> = [];
    for (const [urn, r] of now) {
        const o = old.get(urn);
        if (!o) continue;
        const a = sortKeys(o) as Record<string, unknown>;
        const b = sortKeys(r) as Record<string, unknown>;
        const inputsA = (a.inputs ?? {}) as Record<string, unknown>;
        const inputsB = (b.inputs ?? {}) as Record<string, unknown>;
        const keys = [...new Set([...Object.keys(inputsA), ...Object.keys(inputsB)])]
            .filter((k) => JSON.stringify(inputsA[k]) !== JSON.stringify(inputsB[k]))
            .sort();
        for (const opt of ["protect", "retainOnDelete", "customTimeouts", "parent"]) {
            if (JSON.stringify(a[opt]) !== JSON.stringify(b[opt])) keys.push(`(${opt})`);
        }
        if (keys.length) changed.push({ urn, keys });
    }
    return {
        digests,
        added: [...now.keys()].filter((u) => !old.has(u)).sort(),
        removed: [...old.keys()].filter((u) => !now.has(u)).sort(),
        changed: changed.sort((x, y) => x.urn.localeCompare(y.urn)),
    };
}

export function renderDiff(d: PlanDiff): string {
    const short = (urn: string) => urn.split("::").slice(-2).join("::");
    const digest = (ref: string | undefined) => (ref ? ref.slice(ref.indexOf("@") + 1) : "(none)");
    const lines = [`deployed digests: ${d.digests.length} service(s) change`];
    for (const c of d.digests) lines.push(`  ${c.service}: ${digest(c.from)} -> ${digest(c.to)}`);
    lines.push(`diff: ${d.added.length} added, ${d.removed.length} removed, ${d.changed.length} changed`);
    for (const u of d.added) lines.push(`  + ${short(u)}`);
    for (const u of d.removed) lines.push(`  - ${short(u)}`);
    for (const c of d.changed) lines.push(`  ~ ${short(c.urn)}: ${c.keys.join(", ")}`);
    return lines.join("\n");
}

export function renderViolations(violations: readonly Violation[]): string {
    if (violations.length === 0) return "policy pack: no violations";
    return [
        `policy pack: ${violations.length} mandatory violation(s)`,
        ...violations.map((v) => `  [${v.policy}] ${v.resource}: ${v.message}`),
    ].join("\n");
}

interface Args {
    stack?: string;
    json?: string;
    diff?: string;
    config?: string;
}

function parseArgs(argv: readonly string[]): Args {
    const args: Args = {};
    for (let i = 0; i < argv.length; i++) {
        const flag = argv[i];
        const value = argv[i + 1];
        if (!["--stack", "--json", "--diff", "--config"].includes(flag)) throw new Error(`unknown argument ${flag}`);
        if (value === undefined || value.startsWith("--")) throw new Error(`${flag} needs a value`);
        args[flag.slice(2) as keyof Args] = value;
        i++;
    }
    if (!args.stack) throw new Error("usage: plan --stack <name> [--config FILE] [--json FILE] [--diff OLD.json]");
    return args;
}

/** Command-line entry point; returns the exit code (1 on a mandatory violation). */
export async function main(argv: readonly string[], log: (s: string) => void = console.log, load: ProgramLoader = requireProgram): Promise<number> {
    const args = parseArgs(argv);
    const p = await plan(args.stack as string, args.config, load);
    log(renderTree(p));
    log("");
    log(renderViolations(p.violations));
    if (args.json) fs.writeFileSync(path.resolve(args.json), `${stableJson({ stack: p.stack, resources: p.resources, outputs: p.outputs })}\n`);
    if (args.diff) {
        const before = JSON.parse(fs.readFileSync(path.resolve(args.diff), "utf8")) as Pick<Plan, "resources" | "outputs">;
        log("");
        log(renderDiff(diffPlans(before, p)));
    }
    return p.violations.length > 0 ? 1 : 0;
}

if (require.main === module) {
    main(process.argv.slice(2)).then(
        (code) => process.exit(code),
        (error: Error) => {
            console.error(`plan: ${error.message}`);
            process.exit(2);
        },
    );
}
