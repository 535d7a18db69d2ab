/**
 * Promotes what an environment deploys between stack files, so a promotion
 * is a reviewed one-value-per-image change under stacks/: each service's
 * server digest (`ref`) and model prefix (`model.prefix`, from another stack
 * only), and the stack's sidecar images (`serve.sidecarImages.<kind>`; from
 * the build stack's outputs: `images.<kind>.multiArch.ref`). No Pulumi CLI needed.
 *
 *   npm run promote -- --from staging --to prod
 *   npm run promote -- --from-outputs build-outputs.json --to staging
 *       (build-outputs.json = `pulumi stack output --json -s build`)
 *   --service NAME (repeatable) promotes only those services;
 *   --dry-run prints the changes without writing.
 *
 * Services are matched by name; a service whose image or target differs
 * between the two stacks is an error, not a silent copy. The file is edited
 * in place: only the bytes of the values that change are replaced (see
 * lib/yaml-edit), under a lock, atomically, and only after the result passed
 * the program's own config checks and image checks (a placeholder, upper-case
 * or malformed digest, a tag, a foreign registry, another region's, two
 * registries or prefixes in one stack, one digest for two images: refused,
 * nothing written). Targets are only stacks/Pulumi.<name>.yaml (real files,
 * no symlinks).
 *
 * What is promoted is a table (PROMOTED_VALUES) of scalar paths per service
 * (`ref`, `model.prefix`) and of map entries of the serve section
 * (`sidecarImages`); each entry says where a value lives, how it is checked
 * and whether the build stack's outputs have it. A destination without the
 * map gets it written (after `requirePinned`).
 */
import * as fs from "node:fs";
import * as path from "node:path";
import { type Node, type Pair, type Scalar, type YAMLMap, type YAMLSeq, isAlias, isMap, isScalar, isSeq, parse as parseYaml } from "yaml";
import { checkImageSlots, imageSlots, refProblem } from "../components/serve/images";
import { MODEL_FETCH_KIND, SIDECAR_CATALOGUE, SIDECAR_KINDS, type SidecarKind } from "../components/serve/sidecars";
import { builtRef } from "../components/shared/image-refs";
import { formatKeyPath } from "../components/shared/problems";
import { type StackConfig, loadStackConfig } from "../components/stack-config";
import { PROJECT_ROOT, callerCwd, isStackName } from "./lib/cli-paths";
import { withLock, writeFileAtomic } from "./lib/file-lock";
import { cliValues } from "./lib/secure-config";
import { type Edit, applyEdits, decodeUtf8, insertMapPair, insertPair, parseForEdit, replaceScalar, sameData, scalarText } from "./lib/yaml-edit";

// ------------------------------------------------------------ what is promoted

/** The identity of a service: promotion never changes it. */
export interface ServiceIdentity {
    readonly name: string;
    readonly image: string;
    readonly target: string;
}

/** A scalar inside every `serve.services[]` entry (e.g. `ref`, `model.prefix`). */
export interface ServiceValue {
    readonly scope: "service";
    /** How reports name it. */
    readonly label: string;
    /** Keys inside the service entry. */
    readonly path: readonly string[];
    /** A destination without the value gets it after this key of the innermost mapping (default: after its last key). */
    readonly insertAfter?: string;
    /** How a missing destination value is shown in reports. */
    readonly unset?: string;
    /** The problem with a source value, if any. */
    readonly check?: (value: string) => string | undefined;
    /** The error when the source stack's service has no such value. */
    readonly missingInSource?: (service: string, source: string) => string;
    /** The value in the build stack's outputs (undefined: they have none for this service). Omitted: not promoted from outputs. */
    readonly fromOutputs?: (outputs: unknown, service: ServiceIdentity, source: string) => string | undefined;
}

/** Entries of a map inside the serve section (e.g. `serve.sidecarImages.<kind>`). */
export interface ServeMapValue {
    readonly scope: "serve-map";
    /** How reports name it (entries are `<label>.<key>`). */
    readonly label: string;
    /** Keys inside the serve section leading to the map (one key: the map is written directly under the section when the destination lacks it). */
    readonly path: readonly string[];
    /** A destination without the map gets it after the first of these keys of the serve section it has (default: after its last key). */
    readonly insertAfter?: readonly string[];
    readonly check?: (value: string) => string | undefined;
    /**
     * The entries the build stack's outputs have for a destination serve
     * section, and why the others it needs are missing. Omitted: not promoted
     * from outputs.
     */
    readonly fromOutputs?: (outputs: unknown, destServe: Record<string, unknown>, source: string) => { values: Record<string, string>; missing: Record<string, string> };
}

export type PromotedValue = ServiceValue | ServeMapValue;

const record = (v: unknown): Record<string, unknown> | undefined =>
    typeof v === "object" && v !== null && !Array.isArray(v) ? (v as Record<string, unknown>) : undefined;

/** A reference that may be deployed: pinned by a digest a build could have produced (components/serve/images.ts). */
const checkRef = (ref: string) => {
    const problem = refProblem(ref);
    return problem === undefined ? undefined : `${ref} ${/^(is|names|must) /.test(problem) ? problem : `has a bad digest: ${problem}`}`;
};

/** The digest a service deploys. */
export const REF: ServiceValue = {
    scope: "service",
    label: "ref",
    path: ["ref"],
    insertAfter: "target",
    unset: "(followed the build stack)",
    check: checkRef,
    missingInSource: (service, source) =>
        `service ${service} has no pinned ref in ${source} (it follows the build stack); promote from a pinned stack or from the build stack's outputs`,
    fromOutputs: (outputs, s, source) => {
        const images = record(outputs)?.images;
        if (record(record(record(record(images)?.[s.image])?.targets)?.[s.target]) === undefined) return undefined;
        return builtRef(images, s.image, s.target, source);
    },
};

/** The S3 prefix a service's model comes from: promoted from another stack with the images (the build stack's outputs have none). */
export const MODEL_PREFIX: ServiceValue = {
    scope: "service",
    label: "model.prefix",
    path: ["model", "prefix"],
    // Its form is the config schema's (checked when the result is validated, before anything is written).
};

/**
 * The sidecar kinds a serve section (as written in a stack file) runs
 * without an image of their own: model-sync for every model fetch, and the
 * kind of every sidecar that sets no `image`; plus the kinds it pins already.
 */
export function sidecarKindsNeeded(serve: Record<string, unknown>): SidecarKind[] {
    const kinds = new Set<string>(Object.keys(record(serve.sidecarImages) ?? {}));
    const services = Array.isArray(serve.services) ? serve.services : [];
    if (services.length > 0) kinds.add(MODEL_FETCH_KIND);
    for (const s of services) {
        for (const c of Array.isArray(record(s)?.sidecars) ? (record(s)?.sidecars as unknown[]) : []) {
            const sidecar = record(c);
            if (sidecar && sidecar.image === undefined && typeof sidecar.kind === "string") kinds.add(sidecar.kind);
        }
    }
    return SIDECAR_KINDS.filter((k) => kinds.has(k));
}

/** Sidecar images per kind, pinned by digest (`serve.sidecarImages`); from the build stack's outputs: `images.<kind's image>.multiArch.ref`. */
export const SIDECAR_IMAGES: ServeMapValue = {
    scope: "serve-map",
    label: "serve.sidecarImages",
    path: ["sidecarImages"],
    insertAfter: ["requirePinned", "buildStack"],
    check: checkRef,
    fromOutputs: (outputs, destServe) => {
        const images = record(record(outputs)?.images);
        const values: Record<string, string> = {};
        const missing: Record<string, string> = {};
        for (const kind of sidecarKindsNeeded(destServe)) {
            const image = SIDECAR_CATALOGUE[kind].buildImage;
            const ref = record(record(images?.[image])?.multiArch)?.ref;
            if (typeof ref === "string") values[kind] = ref;
            else missing[kind] = `has no images.${image}.multiArch.ref (the build stack builds the ${kind} sidecar image as amd64 + arm64)`;
        }
        return { values, missing };
    },
};

/**
 * What `npm run promote` copies: each service's server digest and model
 * prefix, and the stack's sidecar images (model-sync: also the model fetch).
 * The engine handles any entry of the two shapes above; the result is
 * validated with the program's own config checks, so a value they refuse is
 * never written.
 */
export const PROMOTED_VALUES: readonly PromotedValue[] = [REF, MODEL_PREFIX, SIDECAR_IMAGES];

// ------------------------------------------------------------------ results

export interface Change {
    /** The service (or `<label>.<key>` of a serve map entry). */
    readonly service: string;
    /** Which value (`ref`, `model.prefix`, ...). */
    readonly value: string;
    /** Full key path in the stack file. */
    readonly path: string;
    readonly from: string | undefined;
    readonly to: string;
}

export interface PromoteResult {
    /** The rewritten stack file (the input with only the changed values' bytes replaced). */
    readonly text: string;
    readonly changes: readonly Change[];
    /** Services (and serve map entries) whose promoted values already equal the source's. */
    readonly unchanged: readonly string[];
    /** Services of the destination the source does not have (left as they are). */
    readonly notInSource: readonly string[];
    /** Services of the source the destination does not have (not promoted: adding a service is done by hand). */
    readonly notInDestination: readonly string[];
    /** One line per service or entry: what happened to it. */
    readonly report: readonly string[];
}

/** Where digests come from: another stack file, or the build stack's outputs. */
export type Source =
    | { readonly kind: "stack"; readonly name: string; readonly text: string }
    | { readonly kind: "outputs"; readonly name: string; readonly outputs: unknown };

export interface PromoteOptions {
    /** What to copy. Default PROMOTED_VALUES. */
    readonly values?: readonly PromotedValue[];
    /** Promote only these services (serve map entries are then left alone). */
    readonly only?: readonly string[];
    /** Names the destination in messages. Default "destination". */
    readonly destName?: string;
}

// ------------------------------------------------------------- YAML helpers

/** The pair of `map` whose key is the string `key`. */
function pairOf(map: YAMLMap, key: string): Pair | undefined {
    return map.items.find((p) => isScalar(p.key) && String(p.key.value) === key) as Pair | undefined;
}

function lineOf(text: string, offset: number): number {
    let line = 1;
    for (let i = 0; i < offset && i < text.length; i++) if (text[i] === "\n") line++;
    return line;
}

/** A node on the way to a value, for the alias / anchor refusal. */
interface Step {
    readonly node: Node;
    readonly key: string;
}

function refuseAliasesAndAnchors(steps: readonly Step[], destName: string, what: string): void {
    for (const { node, key } of steps) {
        if (isAlias(node)) {
            throw new Error(`${destName}: ${key} is an alias (*${node.source}); promote edits ${what} where it is written and will not change what an alias points to: write the value out in place of the alias`);
        }
        const anchor = (node as { anchor?: string }).anchor;
        if (anchor) {
            throw new Error(`${destName}: ${key} has an anchor (&${anchor}); changing ${what} there would also change every alias of it: remove the anchor (and write its aliases out)`);
        }
    }
}

/** Every merge key (`<<`) inside `node` (aliases followed), with where it is. */
function mergeKeys(node: unknown, at: string, resolve: (n: unknown) => unknown, seen = new Set<unknown>()): Array<{ at: string; offset: number }> {
    const target = resolve(node);
    if (seen.has(target)) return [];
    seen.add(target);
    const found: Array<{ at: string; offset: number }> = [];
    if (isMap(target)) {
        for (const p of target.items) {
            const key = isScalar(p.key) ? String(p.key.value) : "?";
            if (key === "<<") found.push({ at, offset: (p.key as Scalar).range?.[0] ?? 0 });
            found.push(...mergeKeys(p.value, `${at}.${key}`, resolve, seen));
        }
    } else if (isSeq(target)) {
        target.items.forEach((item, i) => found.push(...mergeKeys(item, `${at}[${i}]`, resolve, seen)));
    }
    return found;
}

function valueAt(root: unknown, keys: readonly string[]): unknown {
    let cur = root;
    for (const k of keys) cur = record(cur)?.[k];
    return cur;
}

function setAt(root: Record<string, unknown>, keys: readonly (string | number)[], value: unknown): void {
    let cur: unknown = root;
    for (const k of keys.slice(0, -1)) cur = (cur as Record<string | number, unknown>)[k];
    (cur as Record<string | number, unknown>)[keys[keys.length - 1]] = value;
}

// ------------------------------------------------------------------ engine

interface SourceServices {
    readonly byName: ReadonlyMap<string, Record<string, unknown>>;
    readonly order: readonly string[];
    readonly serve: Record<string, unknown>;
}

function sourceServices(source: Extract<Source, { kind: "stack" }>, project: string): SourceServices {
    let file: unknown;
    try {
        file = parseYaml(source.text, { merge: true, prettyErrors: true });
    } catch (error) {
        throw new Error(`${source.name} is not valid YAML: ${(error as Error).message}`);
    }
    const serve = record(record(record(file)?.config)?.[`${project}:serve`]);
    const list = serve?.services;
    if (!serve || !Array.isArray(list)) throw new Error(`${source.name} has no ${project}:serve.services`);
    const byName = new Map<string, Record<string, unknown>>();
    const order: string[] = [];
    list.forEach((entry, i) => {
        const s = record(entry);
        if (!s || typeof s.name !== "string") throw new Error(`${source.name}: ${project}:serve.services[${i}] has no name`);
        if (byName.has(s.name)) throw new Error(`${source.name}: service ${s.name} is listed twice`);
        byName.set(s.name, s);
        order.push(s.name);
    });
    return { byName, order, serve };
}

/** The destination's structure down to the services list, refusing merge keys on the way. */
interface Destination {
    readonly doc: ReturnType<typeof parseForEdit>;
    readonly data: Record<string, unknown>;
    readonly serveData: Record<string, unknown>;
    readonly steps: readonly Step[];
    readonly serveNode: YAMLMap;
    readonly servicesNode: YAMLSeq;
    readonly servicesSteps: readonly Step[];
}

function destination(text: string, project: string, destName: string): Destination {
    const doc = parseForEdit(text, destName);
    const data = record(doc.toJS({ maxAliasCount: 1000 }));
    const resolve = (n: unknown): unknown => (isAlias(n) ? n.resolve(doc) : n);
    const root = resolve(doc.contents);
    const configPair = isMap(root) ? pairOf(root, "config") : undefined;
    const config = resolve(configPair?.value);
    const servePair = isMap(config) ? pairOf(config, `${project}:serve`) : undefined;
    const serve = resolve(servePair?.value);
    const servicesPair = isMap(serve) ? pairOf(serve, "services") : undefined;
    const services = resolve(servicesPair?.value);
    const serveData = record(record(data?.config)?.[`${project}:serve`]);
    if (!data || !isMap(config) || !isMap(serve) || !isSeq(services) || !serveData || !Array.isArray(serveData.services)) {
        throw new Error(`${destName} has no ${project}:serve.services list`);
    }
    for (const [node, at] of [
        [root, "the document"],
        [config, "config"],
        [serve, `${project}:serve`],
    ] as const) {
        for (const p of (node as YAMLMap).items) {
            if (isScalar(p.key) && p.key.value === "<<") {
                throw new Error(`${destName}: ${at} uses the merge key "<<" (line ${lineOf(text, p.key.range?.[0] ?? 0)}); promote cannot tell which values it merges in: write them out`);
            }
        }
    }
    const merges = mergeKeys(services, `${project}:serve.services`, resolve);
    if (merges.length > 0) {
        const m = merges[0];
        throw new Error(
            `${destName}: ${m.at} uses the merge key "<<" (line ${lineOf(text, m.offset)}); promote edits values where they are written and cannot tell which come from a merge: write the entry out in full`,
        );
    }
    const steps: Step[] = [
        { node: configPair?.value as Node, key: "config" },
        { node: servePair?.value as Node, key: `${project}:serve` },
    ];
    return {
        doc,
        data,
        serveData,
        steps,
        serveNode: serve,
        servicesNode: services,
        servicesSteps: [...steps, { node: servicesPair?.value as Node, key: `${project}:serve.services` }],
    };
}

/** Where a value is (or would be inserted), and the edit that makes it `value`. */
function editAt(
    text: string,
    container: YAMLMap,
    containerSteps: readonly Step[],
    keys: readonly string[],
    keyPrefix: string,
    value: string,
    what: string,
    destName: string,
    insertAfter?: string,
): Edit {
    const steps: Step[] = [...containerSteps];
    let map: YAMLMap = container;
    let inFlow = container.flow === true;
    for (const [i, key] of keys.entries()) {
        const at = `${keyPrefix}.${keys.slice(0, i + 1).join(".")}`;
        const pair = pairOf(map, key);
        const last = i === keys.length - 1;
        if (!pair) {
            if (!last) throw new Error(`${destName}: ${at} is missing; add it by hand before promoting ${what}`);
            refuseAliasesAndAnchors(steps, destName, what);
            const after = insertAfter !== undefined && i === 0 ? pairOf(map, insertAfter) : undefined;
            return insertPair(text, map, key, value, after, `${destName}: ${at}`);
        }
        const node = pair.value as Node | null;
        if (node === null) throw new Error(`${destName}: ${at} has no value`);
        steps.push({ node, key: at });
        if (last) {
            refuseAliasesAndAnchors(steps, destName, what);
            if (!isScalar(node)) throw new Error(`${destName}: ${at} is not a scalar; promote replaces only scalar values`);
            if (node.value === null && (node.source ?? "") === "" && node.range && node.range[0] === node.range[1]) {
                const pre = text[node.range[0] - 1] === ":" ? " " : "";
                return { start: node.range[0], end: node.range[1], text: `${pre}${scalarText(value, inFlow)}` };
            }
            return replaceScalar(text, node, value, inFlow, `${destName}: ${at}`);
        }
        if (isAlias(node)) refuseAliasesAndAnchors(steps, destName, what);
        if (!isMap(node)) throw new Error(`${destName}: ${at} is not a mapping`);
        map = node;
        inFlow = inFlow || node.flow === true;
    }
    throw new Error(`${destName}: empty value path for ${what}`);
}

/** Rewrites `destText` so each service deploys what `source` has for it (see PromoteOptions). */
export function promote(source: Source, destText: string, project: string, options: PromoteOptions = {}): PromoteResult {
    const values = options.values ?? PROMOTED_VALUES;
    const destName = options.destName ?? "destination";
    const only = options.only ? new Set(options.only) : undefined;
    const src = source.kind === "stack" ? sourceServices(source, project) : undefined;
    if (source.kind === "outputs" && values.some((v) => v.scope === "service" && v.fromOutputs) && !record(record(source.outputs)?.images)) {
        throw new Error(`${source.name} has no "images" output: expected the JSON of \`pulumi stack output --json\` of the build stack`);
    }
    const dest = destination(destText, project, destName);
    const destServices = dest.serveData.services as unknown[];

    const identities: ServiceIdentity[] = destServices.map((entry, i) => {
        const s = record(entry);
        if (!s || typeof s.name !== "string") throw new Error(`${destName}: ${project}:serve.services[${i}] has no name`);
        return { name: s.name, image: String(s.image), target: String(s.target) };
    });
    const names = identities.map((s) => s.name);
    const duplicate = names.find((n, i) => names.indexOf(n) !== i);
    if (duplicate !== undefined) throw new Error(`${destName}: service ${duplicate} is listed twice`);
    if (only) {
        const unknown = [...only].filter((n) => !names.includes(n) && !src?.byName.has(n));
        if (unknown.length > 0) throw new Error(`no service ${unknown.join(", ")} in ${destName}${src ? ` or ${source.name}` : ""}`);
    }

    const edits: Edit[] = [];
    const expected = structuredClone(dest.data);
    const changes: Change[] = [];
    const unchanged: string[] = [];
    const notInSource: string[] = [];
    const notInDestination: string[] = [];
    const report: string[] = [];
    const serviceValues = values.filter((v): v is ServiceValue => v.scope === "service");
    const mapValues = only ? [] : values.filter((v): v is ServeMapValue => v.scope === "serve-map");

    identities.forEach((service, i) => {
        if (only && !only.has(service.name)) return;
        const entry = record(destServices[i]) ?? {};
        const from = src?.byName.get(service.name);
        const wanted = new Map<ServiceValue, string>();
        let missingReason: string | undefined;
        if (src) {
            if (!from) missingReason = `not in ${source.name}`;
            else {
                if (from.image !== service.image || from.target !== service.target) {
                    throw new Error(
                        `service ${service.name} deploys ${String(from.image)}/${String(from.target)} in ${source.name} but ${service.image}/${service.target} in the destination; change that by hand, not by promotion`,
                    );
                }
                for (const v of serviceValues) {
                    const value = valueAt(from, v.path);
                    if (value === undefined) throw new Error(v.missingInSource?.(service.name, source.name) ?? `service ${service.name} has no ${v.label} in ${source.name}`);
                    if (typeof value !== "string") throw new Error(`service ${service.name} in ${source.name}: ${v.label} is not a string`);
                    wanted.set(v, value);
                }
            }
        } else if (source.kind === "outputs") {
            for (const v of serviceValues) {
                if (!v.fromOutputs) continue;
                const value = v.fromOutputs(source.outputs, service, source.name);
                if (value === undefined) {
                    missingReason = `${source.name} has no images.${service.image}.targets.${service.target}`;
                    break;
                }
                wanted.set(v, value);
            }
        }
        if (missingReason !== undefined) {
            notInSource.push(service.name);
            report.push(`${service.name}: ${missingReason}; left as it is`);
            return;
        }
        let changed = false;
        for (const [v, value] of wanted) {
            const problem = v.check?.(value);
            if (problem) throw new Error(`service ${service.name} in ${source.name}: ${problem}`);
            const current = valueAt(entry, v.path);
            const at = `${project}:serve.services[${i}].${v.path.join(".")}`;
            if (current === value) continue;
            const item = dest.servicesNode.items[i] as Node;
            const itemSteps = [...dest.servicesSteps, { node: item, key: `${project}:serve.services[${i}] (${service.name})` }];
            const itemMap = isAlias(item) ? undefined : item;
            if (!isMap(itemMap)) {
                refuseAliasesAndAnchors(itemSteps, destName, `${service.name}'s ${v.label}`);
                throw new Error(`${destName}: ${project}:serve.services[${i}] is not a mapping`);
            }
            edits.push(editAt(destText, itemMap, itemSteps, v.path, `${project}:serve.services[${i}]`, value, `${service.name}'s ${v.label}`, destName, v.insertAfter));
            setAt(expected, ["config", `${project}:serve`, "services", i, ...v.path], value);
            const before = typeof current === "string" ? current : current === undefined ? undefined : JSON.stringify(current);
            changes.push({ service: service.name, value: v.label, path: at, from: before, to: value });
            report.push(`${service.name}: ${v.label} ${before ?? v.unset ?? "(not set)"} -> ${value}`);
            changed = true;
        }
        if (!changed) {
            unchanged.push(service.name);
            report.push(`${service.name}: unchanged (${[...wanted.keys()].map((v) => v.label).join(", ") || "nothing to promote"} already equal)`);
        }
    });
    if (src) {
        for (const name of src.order) {
            if (names.includes(name) || (only && !only.has(name))) continue;
            notInDestination.push(name);
            report.push(`${name}: only in ${source.name}, not in ${destName}; not promoted (add the service to ${destName} by hand)`);
        }
    }

    for (const v of mapValues) {
        const keyPrefix = `${project}:serve.${v.path.join(".")}`;
        let fromMap: Record<string, unknown> | undefined;
        if (src) {
            fromMap = record(valueAt(src.serve, v.path));
        } else if (source.kind === "outputs" && v.fromOutputs) {
            const read = v.fromOutputs(source.outputs, dest.serveData, source.name);
            fromMap = Object.keys(read.values).length > 0 ? read.values : undefined;
            for (const [key, why] of Object.entries(read.missing)) {
                notInSource.push(`${v.label}.${key}`);
                report.push(`${v.label}.${key}: ${source.name} ${why}; left as it is`);
            }
        } else continue;
        const destMapData = record(valueAt(dest.serveData, v.path));
        if (!fromMap && !destMapData) continue;
        if (!fromMap) {
            for (const key of Object.keys(destMapData ?? {})) {
                if (notInSource.includes(`${v.label}.${key}`)) continue;
                notInSource.push(`${v.label}.${key}`);
                report.push(`${v.label}.${key}: not in ${source.name}; left as it is`);
            }
            continue;
        }
        for (const [key, value] of Object.entries(fromMap)) {
            if (typeof value !== "string") throw new Error(`${source.name}: ${keyPrefix}.${key} is not a string`);
            const problem = v.check?.(value);
            if (problem) throw new Error(`${v.label}.${key} in ${source.name}: ${problem}`);
        }
        const entries = Object.entries(fromMap as Record<string, string>);
        if (!destMapData) {
            // The destination has no such map yet: write it, with every entry, where the table says.
            if (v.path.length !== 1) {
                notInDestination.push(v.label);
                report.push(`${v.label}: only in ${source.name}, not in ${destName}; not promoted (add ${keyPrefix} to ${destName} by hand)`);
                continue;
            }
            refuseAliasesAndAnchors(dest.steps, destName, v.label);
            const sorted = [...entries].sort(([a], [b]) => a.localeCompare(b));
            const after = (v.insertAfter ?? []).map((k) => pairOf(dest.serveNode, k)).find((p) => p !== undefined);
            edits.push(insertMapPair(destText, dest.serveNode, v.path[0], sorted, after, `${destName}: ${keyPrefix}`));
            setAt(expected, ["config", `${project}:serve`, ...v.path], Object.fromEntries(sorted));
            for (const [key, value] of sorted) {
                const name = `${v.label}.${key}`;
                changes.push({ service: name, value: v.label, path: `${keyPrefix}.${key}`, from: undefined, to: value });
                report.push(`${name}: (not set) -> ${value}`);
            }
            continue;
        }
        const mapSteps: Step[] = [...dest.steps];
        let mapNode: unknown = dest.serveNode;
        for (const [i, key] of v.path.entries()) {
            const pair = isMap(mapNode) ? pairOf(mapNode, key) : undefined;
            mapNode = pair?.value;
            mapSteps.push({ node: mapNode as Node, key: `${project}:serve.${v.path.slice(0, i + 1).join(".")}` });
        }
        for (const [key, value] of entries) {
            const name = `${v.label}.${key}`;
            const current = destMapData[key];
            if (current === value) {
                unchanged.push(name);
                report.push(`${name}: unchanged (already equal)`);
                continue;
            }
            if (!isMap(mapNode)) {
                refuseAliasesAndAnchors(mapSteps, destName, name);
                throw new Error(`${destName}: ${keyPrefix} is not a mapping`);
            }
            edits.push(editAt(destText, mapNode, mapSteps.slice(0, -1).concat([{ node: mapNode, key: keyPrefix }]), [key], keyPrefix, value, name, destName));
            setAt(expected, ["config", `${project}:serve`, ...v.path, key], value);
            const before = typeof current === "string" ? current : undefined;
            changes.push({ service: name, value: v.label, path: `${keyPrefix}.${key}`, from: before, to: value });
            report.push(`${name}: ${before ?? "(not set)"} -> ${value}`);
        }
        for (const key of Object.keys(destMapData)) {
            if (key in fromMap || notInSource.includes(`${v.label}.${key}`)) continue;
            notInSource.push(`${v.label}.${key}`);
            report.push(`${v.label}.${key}: not in ${source.name}; left as it is`);
        }
    }

    const text = applyEdits(destText, edits);
    // The edit must mean exactly what was intended, and nothing else.
    const readBack = parseForEdit(text, `${destName} (edited)`).toJS({ maxAliasCount: 1000 }) as unknown;
    if (!sameData(readBack, expected)) {
        throw new Error(`${destName}: the edited file does not read back as intended (a YAML construct promote does not handle); nothing written`);
    }
    return { text, changes, unchanged, notInSource, notInDestination, report };
}

/** One summary line: counts, and the services only one side has. */
export function summary(result: PromoteResult, sourceName: string, destName: string): string {
    const changedItems = new Set(result.changes.map((c) => c.service));
    const parts = [`${changedItems.size} changed`, `${result.unchanged.length} unchanged`];
    if (result.notInSource.length) parts.push(`${result.notInSource.length} only in ${destName} (not in ${sourceName}): ${result.notInSource.join(", ")}`);
    if (result.notInDestination.length) parts.push(`${result.notInDestination.length} only in ${sourceName} (not in ${destName}): ${result.notInDestination.join(", ")}`);
    return parts.join(", ");
}

// --------------------------------------------------------------------- files

interface StackFile {
    readonly name: string;
    readonly path: string;
    /** stacks/Pulumi.<name>.yaml */
    readonly display: string;
}

/** `stacks/Pulumi.<name>.yaml` under `root`, a real file in the real stacks/ directory (no symlink anywhere in between). */
export function resolveStackFile(root: string, name: string, flag: string): StackFile {
    if (!isStackName(name)) {
        throw new Error(`${flag} ${JSON.stringify(name)} is not a stack name (letters, digits, "_", ".", "-"; no path separators, no ".."): promote only edits stacks/Pulumi.<stack>.yaml`);
    }
    const dir = path.join(root, "stacks");
    const display = `stacks/Pulumi.${name}.yaml`;
    const lstat = (p: string, what: string) => {
        try {
            return fs.lstatSync(p);
        } catch (error) {
            if ((error as NodeJS.ErrnoException).code === "ENOENT") throw new Error(`${flag} ${name}: ${what} does not exist`);
            throw error;
        }
    };
    const dirStat = lstat(dir, "stacks/");
    if (dirStat.isSymbolicLink()) throw new Error(`stacks/ is a symbolic link; promote reads and writes only the project's own stacks/ directory`);
    if (!dirStat.isDirectory()) throw new Error(`stacks/ is not a directory`);
    const file = path.join(dir, `Pulumi.${name}.yaml`);
    const fileStat = lstat(file, display);
    if (fileStat.isSymbolicLink()) throw new Error(`${display} is a symbolic link; promote reads and writes only real stack files`);
    if (!fileStat.isFile()) throw new Error(`${display} is not a regular file`);
    const real = fs.realpathSync(file);
    if (path.dirname(real) !== path.join(fs.realpathSync(root), "stacks")) throw new Error(`${display} resolves outside the project's stacks/ directory (${real})`);
    return { name, path: file, display };
}

/** A stack file's text, opened without following a symlink and decoded as strict UTF-8 (BOM kept). */
function readStackText(file: StackFile): string {
    const fd = fs.openSync(file.path, fs.constants.O_RDONLY | (fs.constants.O_NOFOLLOW ?? 0));
    try {
        if (!fs.fstatSync(fd).isFile()) throw new Error(`${file.display} is not a regular file`);
        return decodeUtf8(fs.readFileSync(fd), file.display);
    } finally {
        fs.closeSync(fd);
    }
}

/**
 * Never write a file the program would refuse: the result goes through the
 * program's own config loader, then the image checks the program runs before
 * registering anything, with what promote knows (the stack's aws:region; the
 * deploying account and the build stack's digests are checked by the program).
 */
function validate(text: string, project: string, stack: string, root: string, display: string): void {
    const file = record(parseYaml(text, { merge: true }));
    const config = record(file?.config) ?? {};
    const { values } = cliValues(config, project);
    const refuse = (why: string) => new Error(`refusing to write ${display}: the result is not a valid stack config: ${why}`);
    let loaded: StackConfig;
    try {
        loaded = loadStackConfig(values, { project, stack, projectRoot: root, pathExists: fs.existsSync, region: values["aws:region"] });
    } catch (error) {
        throw refuse((error as Error).message);
    }
    const serve = loaded.serve;
    if (!serve) return;
    const problems = checkImageSlots(imageSlots(serve, serve.resolvedTargets).slots, serve.allowedImages, { region: values["aws:region"] });
    if (problems.length > 0) {
        throw refuse(`\n  - ${problems.map((p) => `${formatKeyPath(project, ["serve", ...p.keys])} = ${JSON.stringify(p.value)}: ${p.message}`).join("\n  - ")}`);
    }
}

// ---------------------------------------------------------------------- CLI

interface CliArgs {
    from?: string;
    fromOutputs?: string;
    to?: string;
    services: string[];
    dryRun: boolean;
    lockTimeoutSeconds?: number;
}

const USAGE =
    "usage: promote (--from <stack> | --from-outputs <file.json>) --to <stack> [--service <name>]... [--dry-run] [--lock-timeout <seconds>]";

function parseArgs(argv: readonly string[]): CliArgs {
    const args: CliArgs = { services: [], dryRun: false };
    for (let i = 0; i < argv.length; i++) {
        const flag = argv[i];
        const value = () => {
            const v = argv[++i];
            if (v === undefined || v.startsWith("--")) throw new Error(`${flag} needs a value`);
            return v;
        };
        const once = (current: string | number | undefined) => {
            if (current !== undefined) throw new Error(`${flag} is given twice\n${USAGE}`);
            return value();
        };
        if (flag === "--from") args.from = once(args.from);
        else if (flag === "--from-outputs") args.fromOutputs = once(args.fromOutputs);
        else if (flag === "--to") args.to = once(args.to);
        else if (flag === "--service") args.services.push(value());
        else if (flag === "--dry-run") args.dryRun = true;
        else if (flag === "--lock-timeout") {
            const v = once(args.lockTimeoutSeconds);
            const seconds = Number(v);
            if (!Number.isFinite(seconds) || seconds < 0) throw new Error(`--lock-timeout ${v}: expected a number of seconds`);
            args.lockTimeoutSeconds = seconds;
        } else throw new Error(`unknown argument ${flag}\n${USAGE}`);
    }
    if (!args.to || (args.from === undefined) === (args.fromOutputs === undefined)) throw new Error(USAGE);
    return args;
}

export interface MainOptions {
    /** Directory relative paths (--from-outputs) are resolved against. Default: where the user ran the command. */
    readonly cwd?: string;
    /** How long to wait for another promote of the same file, ms. Default 15000 (--lock-timeout). */
    readonly lockTimeoutMs?: number;
}

function readOutputs(file: string, display: string): unknown {
    let text: string;
    try {
        text = fs.readFileSync(file, "utf8");
    } catch (error) {
        throw new Error(`--from-outputs ${display}: cannot read it (${(error as NodeJS.ErrnoException).code ?? (error as Error).message})`);
    }
    try {
        return JSON.parse(text) as unknown;
    } catch (error) {
        throw new Error(`--from-outputs ${display} is not JSON (${(error as Error).message}); expected \`pulumi stack output --json -s build\``);
    }
}

/** Command-line entry point; returns the process exit code (errors are thrown, nothing is written then). */
export function main(argv: readonly string[], root: string = PROJECT_ROOT, log: (line: string) => void = console.log, options: MainOptions = {}): number {
    const args = parseArgs(argv);
    const project = (parseYaml(fs.readFileSync(path.join(root, "Pulumi.yaml"), "utf8")) as { name: string }).name;
    const dest = resolveStackFile(root, args.to as string, "--to");
    let source: Source;
    if (args.from !== undefined) {
        const file = resolveStackFile(root, args.from, "--from");
        if (file.name === dest.name) throw new Error(`--from and --to are the same stack (${dest.name})`);
        source = { kind: "stack", name: args.from, text: readStackText(file) };
    } else {
        const given = args.fromOutputs as string;
        const file = path.resolve(options.cwd ?? callerCwd("promote"), given);
        source = { kind: "outputs", name: given, outputs: readOutputs(file, given) };
    }
    const run = (): PromoteResult => {
        const result = promote(source, readStackText(dest), project, { destName: dest.name, only: args.services.length ? args.services : undefined });
        try {
            validate(result.text, project, dest.name, root, dest.display);
        } catch (error) {
            // Say first what the source lacked: that is usually why the result is incomplete.
            const lacking = result.report.filter((line) => result.notInSource.some((s) => line.startsWith(`${s}: `)));
            if (lacking.length === 0) throw error;
            throw new Error(`${source.name} lacks what ${dest.name} needs:\n  ${lacking.join("\n  ")}\n${(error as Error).message}`, { cause: error });
        }
        return result;
    };
    const finish = (result: PromoteResult, tail: string) => {
        for (const line of result.report) log(line);
        log(`${summary(result, source.name, dest.name)}${tail}`);
    };

    if (args.dryRun) {
        finish(run(), `; dry run: ${dest.display} not written`);
        return 0;
    }
    // Under the lock: read the file afresh, edit, validate, write, so no concurrent promote is lost.
    const timeoutMs = options.lockTimeoutMs ?? (args.lockTimeoutSeconds !== undefined ? args.lockTimeoutSeconds * 1000 : undefined);
    const result = withLock(
        dest.path,
        () => {
            const r = run();
            if (r.changes.length > 0) writeFileAtomic(dest.path, r.text);
            return r;
        },
        { timeoutMs },
    );
    if (result.changes.length === 0) {
        finish(result, `; ${dest.display} already up to date, not written`);
        return 0;
    }
    finish(result, "");
    const what = result.changes.map((c) => `${c.service} ${c.value}`).join(", ");
    log(`wrote ${dest.display} (${what}): review and open a pull request`);
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
