/**
 * Promotes digests between stack files, so a promotion is a reviewed
 * one-line-per-image change under stacks/. No Pulumi CLI needed.
 *
 *   npm run promote -- --from staging --to prod
 *   npm run promote -- --from-outputs build-outputs.json --to staging
 *       (build-outputs.json = `pulumi stack output --json -s build`)
 *   add --dry-run to print the changes without writing.
 *
 * Services are matched by name; a service whose image or target differs
 * between the two stacks is an error, not a silent copy. The rewritten file
 * is validated with the program's own config schema before it is written.
 */
import * as fs from "node:fs";
import * as path from "node:path";
import { isMap, isSeq, parse as parseYaml, parseDocument, type YAMLMap } from "yaml";
import { loadStackConfig } from "../components/stack-config";
import { builtRef, isDigestRef } from "../components/shared/image-refs";

export interface Change {
    readonly service: string;
    readonly from: string | undefined;
    readonly to: string;
}

export interface PromoteResult {
    /** The rewritten stack file. */
    readonly text: string;
    readonly changes: readonly Change[];
    readonly unchanged: readonly string[];
    /** Services of the destination the source does not have (left as they are). */
    readonly notInSource: readonly string[];
}

interface ServiceEntry {
    readonly name: string;
    readonly image: string;
    readonly target: string;
    readonly ref?: string;
}

/** Where digests come from: another stack file, or the build stack's outputs. */
export type Source =
    | { readonly kind: "stack"; readonly name: string; readonly text: string }
    | { readonly kind: "outputs"; readonly name: string; readonly outputs: unknown };

function servicesOf(text: string, project: string, what: string): ServiceEntry[] {
    const file = parseYaml(text) as { config?: Record<string, unknown> } | null;
    const serve = file?.config?.[`${project}:serve`] as { services?: ServiceEntry[] } | undefined;
    if (!serve || !Array.isArray(serve.services)) throw new Error(`${what} has no ${project}:serve.services`);
    return serve.services;
}

/** The digest `source` has for a service of the destination, or undefined. */
function sourceRef(source: Source, sourceServices: Map<string, ServiceEntry>, wanted: ServiceEntry): string | undefined {
    if (source.kind === "outputs") {
        const outputs = source.outputs as { images?: unknown } | null;
        return builtRef(outputs?.images, wanted.image, wanted.target, source.name);
    }
    const from = sourceServices.get(wanted.name);
    if (!from) return undefined;
    if (from.image !== wanted.image || from.target !== wanted.target) {
        throw new Error(
            `service ${wanted.name} deploys ${from.image}/${from.target} in ${source.name} but ${wanted.image}/${wanted.target} in the destination; change that by hand, not by promotion`,
        );
    }
    if (from.ref === undefined) {
        throw new Error(`service ${wanted.name} has no pinned ref in ${source.name} (it follows the build stack); promote from a pinned stack or from the build stack's outputs`);
    }
    if (!isDigestRef(from.ref)) throw new Error(`service ${wanted.name} in ${source.name}: ${from.ref} is not pinned by digest`);
    return from.ref;
}

/** Rewrites `destText` so each service deploys the digest `source` has for it. */
export function promote(source: Source, destText: string, project: string): PromoteResult {
    const sourceServices = new Map<string, ServiceEntry>(
        source.kind === "stack" ? servicesOf(source.text, project, source.name).map((s) => [s.name, s]) : [],
    );
    const doc = parseDocument(destText);
    const services = doc.getIn(["config", `${project}:serve`, "services"]);
    if (!isSeq(services)) throw new Error(`destination has no ${project}:serve.services list`);

    const changes: Change[] = [];
    const unchanged: string[] = [];
    const notInSource: string[] = [];
    for (const item of services.items) {
        if (!isMap(item)) throw new Error("every entry of serve.services must be a mapping");
        const node = item as YAMLMap<unknown, unknown>;
        const entry: ServiceEntry = {
            name: String(node.get("name")),
            image: String(node.get("image")),
            target: String(node.get("target")),
            ref: node.has("ref") ? String(node.get("ref")) : undefined,
        };
        const ref = sourceRef(source, sourceServices, entry);
        if (ref === undefined) notInSource.push(entry.name);
        else if (ref === entry.ref) unchanged.push(entry.name);
        else {
            node.set("ref", ref);
            changes.push({ service: entry.name, from: entry.ref, to: ref });
        }
    }
    return { text: doc.toString({ lineWidth: 0 }), changes, unchanged, notInSource };
}

interface CliArgs {
    from?: string;
    fromOutputs?: string;
    to?: string;
    dir: string;
    dryRun: boolean;
}

function parseArgs(argv: readonly string[]): CliArgs {
    const args: CliArgs = { dir: "stacks", dryRun: false };
    for (let i = 0; i < argv.length; i++) {
        const flag = argv[i];
        const value = () => {
            const v = argv[++i];
            if (v === undefined || v.startsWith("--")) throw new Error(`${flag} needs a value`);
            return v;
        };
        if (flag === "--from") args.from = value();
        else if (flag === "--from-outputs") args.fromOutputs = value();
        else if (flag === "--to") args.to = value();
        else if (flag === "--dir") args.dir = value();
        else if (flag === "--dry-run") args.dryRun = true;
        else throw new Error(`unknown argument ${flag}`);
    }
    if (!args.to || (args.from === undefined) === (args.fromOutputs === undefined)) {
        throw new Error("usage: promote (--from <stack> | --from-outputs <file.json>) --to <stack> [--dir stacks] [--dry-run]");
    }
    return args;
}

const stackFile = (dir: string, stack: string) => path.join(dir, `Pulumi.${stack}.yaml`);

/** Command-line entry point; returns the process exit code. */
export function main(argv: readonly string[], root: string = process.cwd(), log: (line: string) => void = console.log): number {
    const args = parseArgs(argv);
    const project = (parseYaml(fs.readFileSync(path.join(root, "Pulumi.yaml"), "utf8")) as { name: string }).name;
    const dir = path.resolve(root, args.dir);
    const to = args.to as string;
    const source: Source = args.from
        ? { kind: "stack", name: args.from, text: fs.readFileSync(stackFile(dir, args.from), "utf8") }
        : { kind: "outputs", name: String(args.fromOutputs), outputs: JSON.parse(fs.readFileSync(path.resolve(root, String(args.fromOutputs)), "utf8")) };
    const destPath = stackFile(dir, to);
    const result = promote(source, fs.readFileSync(destPath, "utf8"), project);

    // Never write a file the program would refuse.
    const config = (parseYaml(result.text) as { config: Record<string, unknown> }).config;
    const flat = Object.fromEntries(Object.entries(config).map(([k, v]) => [k, typeof v === "string" ? v : JSON.stringify(v)]));
    loadStackConfig(flat, { project, stack: to, projectRoot: root, pathExists: fs.existsSync });

    for (const c of result.changes) log(`${c.service}: ${c.from ?? "(followed build stack)"} -> ${c.to}`);
    log(`${result.changes.length} changed, ${result.unchanged.length} unchanged${result.notInSource.length ? `, not in ${source.name}: ${result.notInSource.join(", ")}` : ""}`);
    if (!args.dryRun && result.changes.length > 0) {
        fs.writeFileSync(destPath, result.text);
        log(`wrote ${path.relative(root, destPath)}: review and open a pull request`);
    }
    return 0;
}

if (require.main === module) {
    try {
        process.exitCode = main(process.argv.slice(2));
    } catch (error) {
        console.error(`promote: ${(error as Error).message}`);
        process.exitCode = 1;
    }
}
