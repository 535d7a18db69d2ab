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
 *   npm run plan -- --stack dev --build-outputs build-outputs.json
 *       (build-outputs.json = `pulumi stack output --json -s build`)
 *   npm run plan -- --stack staging --build-outputs build-outputs.json
 *       (a pinned-only stack: planned as `npm run promote -- --from-outputs`
 *        would leave it, in memory; the plan says what promotion changed)
 *
 * IDs, ARNs and digests in the plan are the mocks' placeholders
 * (account 123456789012); inputs are exactly what the program would send.
 * A stack that follows a build stack (services without `ref`) is planned
 * against the outputs of serve.buildStack's own stack file (or of
 * --build-outputs); no other stack file is read. A stack that deploys pinned
 * values only (serve.requirePinned) reads no build stack; with
 * --build-outputs it is planned as promoted from them. Secrets (`{secure: ...}`
 * config, secret inputs, secret outputs) never reach the printed plan or the
 * JSON: they are "[secret]". Paths given on the command line are relative to
 * where it was run; the program is evaluated in the project root, as the
 * Pulumi CLI does.
 */
import * as fs from "node:fs";
import * as path from "node:path";
import { parseDocument } from "yaml";
import { z } from "zod";
import { type PolicyResource, type Violation, runPolicies } from "../policy/policies";
import { PROJECT_ROOT, callerCwd, displayPath, isStackName } from "./lib/cli-paths";
import type { Change } from "./promote";
import {
    type Evaluation,
    type ProgramLoader,
    type Registered,
    STACKS_DIR,
    evaluate,
    policyResourceOf,
    promotedFromOutputs,
    referencedStackOutputs,
    requiresPinned,
    stackReferencesOf,
    requireProgram,
} from "./lib/mock-runtime";
import { SECRET_STAND_IN } from "./lib/secure-config";
import { cliDivergences } from "./lib/yaml-divergence";

const SECRET = SECRET_STAND_IN;

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
    /** A requirePinned stack planned with --build-outputs: what promotion from them changed (in memory; the stack file is not written). */
    readonly promoted?: { readonly changes: readonly Change[]; readonly report: readonly string[] };
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

function redact(r: Registered): Record<string, unknown> {
    return Object.fromEntries(Object.entries(r.inputs).map(([k, v]) => [k, r.secretInputs.includes(k) ? SECRET : v]));
}

const isRecord = (v: unknown): v is Record<string, unknown> => typeof v === "object" && v !== null && !Array.isArray(v);

/** The outputs with every secret (top-level or nested) replaced by "[secret]", as `pulumi stack output` shows them. */
export function redactOutputs(outputs: Record<string, unknown>, secretPaths: ReadonlyArray<readonly string[]>): Record<string, unknown> {
    const copy = structuredClone(outputs);
    for (const p of [...secretPaths].sort((a, b) => a.length - b.length)) {
        let cur: unknown = copy;
        for (const key of p.slice(0, -1)) cur = isRecord(cur) || Array.isArray(cur) ? (cur as Record<string, unknown>)[key] : undefined;
        const last = p[p.length - 1];
        if ((isRecord(cur) || Array.isArray(cur)) && last !== undefined && last in cur) (cur as Record<string, unknown>)[last] = SECRET;
    }
    return copy;
}

/** Every string inside a value. */
function strings(value: unknown, out: string[] = []): string[] {
    if (typeof value === "string") out.push(value);
    else if (Array.isArray(value)) for (const v of value) strings(v, out);
    else if (isRecord(value)) for (const v of Object.values(value)) strings(v, out);
    return out;
}

function valueAtPath(root: unknown, p: readonly string[]): unknown {
    let cur = root;
    for (const key of p) cur = isRecord(cur) || Array.isArray(cur) ? (cur as Record<string, unknown>)[key] : undefined;
    return cur;
}

/**
 * Replaces, in text made from unredacted values (policy messages), every
 * secret string that is not also public in the plan. Short strings are left
 * alone: they cannot be told apart from ordinary words.
 */
function scrubber(ev: Evaluation, publicJson: string): (text: string) => string {
    const secret = new Set<string>();
    for (const r of ev.resources) for (const k of r.secretInputs) strings(r.inputs[k], []).forEach((s) => secret.add(s));
    for (const p of ev.secretOutputPaths) strings(valueAtPath(ev.outputs, p)).forEach((s) => secret.add(s));
    const hidden = [...secret].filter((s) => s.length >= 8 && s !== SECRET && !publicJson.includes(JSON.stringify(s).slice(1, -1))).sort((a, b) => b.length - a.length);
    return (text) => hidden.reduce((t, s) => t.split(s).join(SECRET), text);
}

export interface PlanOptions {
    /** Where stack files are (default: the project's stacks/). */
    readonly stacksDir?: string;
    /**
     * The build stack's outputs (`pulumi stack output --json`), instead of
     * planning serve.buildStack's stack file. A stack that deploys pinned
     * values only (serve.requirePinned) is planned as promotion from them
     * would leave it (in memory: the file is not written).
     */
    readonly buildOutputs?: Record<string, unknown>;
    /** How the outputs are named in messages (the --build-outputs file). Default "build outputs". */
    readonly buildOutputsName?: string;
}

/** Largest stack file the plan reads: config is small; anything bigger is a mistake or an attack on the parser. */
export const MAX_STACK_FILE_BYTES = 1024 * 1024;

/** Reads a stack file's `config:`; every error names the file. */
export function readStackFileConfig(file: string): Record<string, unknown> {
    const shown = displayPath(file);
    let text: string;
    try {
        const size = fs.statSync(file).size;
        if (size > MAX_STACK_FILE_BYTES) throw new Error(`${shown} is ${size} bytes; a stack file is at most ${MAX_STACK_FILE_BYTES / 1024} KiB`);
        text = fs.readFileSync(file, "utf8");
    } catch (error) {
        const code = (error as NodeJS.ErrnoException).code;
        if (code === undefined && error instanceof Error) throw error;
        throw new Error(code === "ENOENT" ? `${shown}: no such stack file` : `${shown}: cannot read it (${code ?? (error as Error).message})`);
    }
    const doc = parseDocument(text, { merge: true, prettyErrors: true });
    if (doc.errors.length > 0) throw new Error(`${shown} is not valid YAML: ${doc.errors[0].message}`);
    const diverging = cliDivergences(doc);
    if (diverging.length > 0) {
        const lines = diverging.map((d) => `  ${d.path} = ${d.source}: ${d.problem}`);
        throw new Error(`${shown}: the Pulumi CLI would read ${diverging.length === 1 ? "this value" : "these values"} differently from this plan:\n${lines.join("\n")}`);
    }
    const file_ = doc.toJS({ maxAliasCount: 1000 }) as unknown;
    if (file_ === null || file_ === undefined) return {};
    if (!isRecord(file_)) throw new Error(`${shown} is not a stack file: expected a mapping with a config: section`);
    const config = file_.config ?? {};
    if (!isRecord(config)) throw new Error(`${shown}: config is not a mapping`);
    return config;
}

/** The stack name of the build stack a serve section follows (`serve.buildStack`, default `build`): what --build-outputs stands for. */
function buildStackOf(config: Record<string, unknown>): string {
    return stackReferencesOf(config).find((r) => r.key === "serve.buildStack")?.stack ?? "build";
}

/** Runs `fn` in the project root (as the Pulumi CLI runs a program), then returns to where it was. */
async function inProjectRoot<T>(fn: () => Promise<T>): Promise<T> {
    const before = process.cwd();
    process.chdir(PROJECT_ROOT);
    try {
        return await fn();
    } finally {
        process.chdir(before);
    }
}

/** Adds which stack file an evaluation failed for. */
async function naming<T>(what: string, fn: () => Promise<T>): Promise<T> {
    try {
        return await fn();
    } catch (error) {
        const e = error as Error;
        throw new Error(`${what}: ${e.message}`, { cause: error });
    }
}

/**
 * Evaluates a stack (and, if it follows a build stack, that stack's own file
 * first, unless its outputs are given) and checks it against the policy pack.
 * `configFile` replaces stacks/Pulumi.<stack>.yaml.
 */
export async function plan(stack: string, configFile?: string, load: ProgramLoader = requireProgram, options: PlanOptions = {}): Promise<Plan> {
    const stacksDir = options.stacksDir ?? STACKS_DIR;
    if (!configFile && !isStackName(stack)) throw new Error(`--stack ${JSON.stringify(stack)} is not a stack name (letters, digits, "_", ".", "-")`);
    const file = configFile ? path.resolve(configFile) : path.join(stacksDir, `Pulumi.${stack}.yaml`);
    let config = readStackFileConfig(file);
    // A pinned-only stack (staging, prod) with the build stack's outputs: plan it as promotion would leave it.
    let promoted: Plan["promoted"];
    if (options.buildOutputs && requiresPinned(config)) {
        const p = await naming(`stack ${stack} (${displayPath(file)}) promoted from ${options.buildOutputsName ?? "build outputs"}`, async () =>
            promotedFromOutputs(fs.readFileSync(file, "utf8"), options.buildOutputs as Record<string, unknown>, displayPath(file), options.buildOutputsName),
        );
        config = p.config;
        promoted = { changes: p.result.changes, report: p.result.report };
    }
    // The stacks it reads (runners, build), each from its own stack file (and only those), unless outputs are given.
    const given = options.buildOutputs ? { [buildStackOf(config)]: { outputs: options.buildOutputs } } : undefined;
    const stackOutputs = await naming(`stack ${stack} (${displayPath(file)})`, () =>
        inProjectRoot(() => referencedStackOutputs(stack, config, load, { stacksDir, given, readConfig: readStackFileConfig })),
    );
    const ev: Evaluation = await naming(`stack ${stack} (${displayPath(file)})`, () =>
        inProjectRoot(() => evaluate(stack, { config, stackOutputs }, load)),
    );
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
    const outputs = redactOutputs(ev.outputs, ev.secretOutputPaths);
    const scrub = scrubber(ev, stableJson({ resources, outputs }));
    const policyInput: PolicyResource[] = ev.resources.map(policyResourceOf);
    const violations = runPolicies(policyInput).map((v) => ({ ...v, message: scrub(v.message), resource: scrub(v.resource) }));
    return { stack, resources, outputs, violations, promoted };
}

/** What a plan "as promoted" says about the promotion it assumed. */
export function renderPromotion(p: Plan, outputsName: string, file: string): string | undefined {
    if (!p.promoted) return undefined;
    return [
        `planned as promoted: ${p.promoted.changes.length} value(s) as \`npm run promote -- --from-outputs ${outputsName} --to ${p.stack}\` would write them (in memory; ${file} is not written)`,
        ...p.promoted.report.map((line) => `  ${line}`),
    ].join("\n");
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
    const deployments = isRecord(outputs) ? outputs.deployments : undefined;
    if (!isRecord(deployments)) return new Map();
    return new Map(Object.entries(deployments).map(([service, d]) => [service, String(isRecord(d) ? d.ref : d)]));
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

// ------------------------------------------------------------- plan files

/** What --diff reads: a file written by --json (`violations` and `stack` are optional). */
const planFileSchema = z.object({
    stack: z.string().optional(),
    resources: z.array(
        z.object({
            urn: z.string().min(1),
            type: z.string(),
            name: z.string(),
            parent: z.string(),
            inputs: z.record(z.string(), z.unknown()),
            protect: z.boolean(),
            retainOnDelete: z.boolean(),
            customTimeouts: z.object({ create: z.string(), update: z.string(), delete: z.string() }),
        }),
    ),
    outputs: z
        .record(z.string(), z.unknown())
        .refine((o) => o.deployments === undefined || o.deployments === SECRET || isRecord(o.deployments), "deployments must be an object")
        .default({}),
});

/** Reads and checks a plan file (--diff); one error names the file and what is wrong. */
export function readPlanFile(file: string, shown: string = file): Pick<Plan, "resources" | "outputs"> {
    const what = `--diff ${shown}`;
    let text: string;
    try {
        text = fs.readFileSync(file, "utf8");
    } catch (error) {
        throw new Error(`${what}: cannot read it (${(error as NodeJS.ErrnoException).code ?? (error as Error).message})`);
    }
    let json: unknown;
    try {
        json = JSON.parse(text);
    } catch (error) {
        throw new Error(`${what} is not JSON (${(error as Error).message}); expected a plan written by --json`);
    }
    const parsed = planFileSchema.safeParse(json);
    if (!parsed.success) {
        const issues = parsed.error.issues.slice(0, 3).map((i) => `${i.path.length ? i.path.map((k) => (typeof k === "number" ? `[${k}]` : `.${String(k)}`)).join("").replace(/^\./, "") : "(the file)"}: ${i.message}`);
        const more = parsed.error.issues.length > 3 ? ` (and ${parsed.error.issues.length - 3} more)` : "";
        throw new Error(`${what} is not a plan written by --json: ${issues.join("; ")}${more}`);
    }
    return parsed.data;
}

/** Reads `pulumi stack output --json` of the build stack (--build-outputs). */
export function readBuildOutputs(file: string, shown: string = file): Record<string, unknown> {
    const what = `--build-outputs ${shown}`;
    let json: unknown;
    try {
        json = JSON.parse(fs.readFileSync(file, "utf8"));
    } catch (error) {
        const e = error as NodeJS.ErrnoException;
        throw new Error(e instanceof SyntaxError ? `${what} is not JSON (${e.message})` : `${what}: cannot read it (${e.code ?? e.message})`);
    }
    if (!isRecord(json)) throw new Error(`${what} is not an object of stack outputs (expected \`pulumi stack output --json -s <build stack>\`)`);
    if (json.images !== undefined && !isRecord(json.images)) throw new Error(`${what}: "images" is not an object`);
    return json;
}

// --------------------------------------------------------------------- CLI

interface Args {
    stack?: string;
    json?: string;
    diff?: string;
    config?: string;
    "build-outputs"?: string;
}

const FLAGS = ["--stack", "--json", "--diff", "--config", "--build-outputs"];
const USAGE = "usage: plan --stack <name> [--config FILE] [--build-outputs FILE] [--json FILE] [--diff OLD.json]";

function parseArgs(argv: readonly string[]): Args {
    const args: Args = {};
    for (let i = 0; i < argv.length; i++) {
        const flag = argv[i];
        const value = argv[i + 1];
        if (!FLAGS.includes(flag)) throw new Error(`unknown argument ${flag}\n${USAGE}`);
        if (value === undefined || value.startsWith("--")) throw new Error(`${flag} needs a value`);
        if (args[flag.slice(2) as keyof Args] !== undefined) throw new Error(`${flag} is given twice\n${USAGE}`);
        args[flag.slice(2) as keyof Args] = value;
        i++;
    }
    if (!args.stack) throw new Error(USAGE);
    return args;
}

/** Refuses, before the (slow) evaluation, an output file whose directory does not exist or that is a directory. */
function writableFile(file: string, what: string): void {
    const dir = path.dirname(file);
    if (!fs.existsSync(dir) || !fs.statSync(dir).isDirectory()) throw new Error(`${what}: no directory ${displayPath(dir)} to write it in`);
    if (fs.existsSync(file) && fs.statSync(file).isDirectory()) throw new Error(`${what} is a directory; give a file name`);
}

/**
 * Command-line entry point; returns the exit code (1 on a mandatory
 * violation). Relative paths are resolved against `cwd` (default: where the
 * user ran the command). Bad input throws; `cli` turns that into exit code 2.
 */
export async function main(
    argv: readonly string[],
    log: (s: string) => void = console.log,
    load: ProgramLoader = requireProgram,
    cwd: string = callerCwd("plan"),
): Promise<number> {
    const args = parseArgs(argv);
    const resolve = (p: string) => path.resolve(cwd, p);
    // Inputs are checked before the (slow) evaluation.
    const before = args.diff ? readPlanFile(resolve(args.diff), args.diff) : undefined;
    const buildOutputs = args["build-outputs"] ? readBuildOutputs(resolve(args["build-outputs"]), args["build-outputs"]) : undefined;
    if (args.json) writableFile(resolve(args.json), `--json ${args.json}`);
    const p = await plan(args.stack as string, args.config ? resolve(args.config) : undefined, load, { buildOutputs, buildOutputsName: args["build-outputs"] });
    const promotion = renderPromotion(p, args["build-outputs"] ?? "", args.config ?? `stacks/Pulumi.${p.stack}.yaml`);
    if (promotion) {
        log(promotion);
        log("");
    }
    log(renderTree(p));
    log("");
    log(renderViolations(p.violations));
    if (args.json) {
        try {
            fs.writeFileSync(resolve(args.json), `${stableJson({ stack: p.stack, resources: p.resources, outputs: p.outputs })}\n`);
        } catch (error) {
            throw new Error(`--json ${args.json}: cannot write it (${(error as NodeJS.ErrnoException).code ?? (error as Error).message})`);
        }
    }
    if (before) {
        log("");
        log(renderDiff(diffPlans(before, p)));
    }
    return p.violations.length > 0 ? 1 : 0;
}

/** `main` with errors reported as one line on `error` and exit code 2. */
export async function cli(
    argv: readonly string[],
    io: { log?: (s: string) => void; error?: (s: string) => void; load?: ProgramLoader; cwd?: string } = {},
): Promise<number> {
    try {
        return await main(argv, io.log ?? console.log, io.load ?? requireProgram, io.cwd ?? callerCwd("plan"));
    } catch (error) {
        (io.error ?? console.error)(`plan: ${(error as Error).message}`);
        return 2;
    }
}

if (require.main === module) {
    cli(process.argv.slice(2)).then((code) => process.exit(code));
}
