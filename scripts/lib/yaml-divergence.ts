/**
 * Values the Pulumi CLI reads differently from this plan.
 *
 * The CLI reads stack files with Go's gopkg.in/yaml.v3, which keeps some YAML
 * 1.1 habits; the plan reads them with the `yaml` package (YAML 1.2 core). For
 * most values the two agree. Where they do not, the plan would evaluate one
 * stack and `pulumi up` would deploy another, so the plan refuses the value
 * and says how to write it so both read the same:
 *
 * - a number with a leading zero and only octal digits (`01024`, `010`):
 *   octal for the CLI (532, 8), decimal for the plan;
 * - a number with `_` (`1_024`): a number for the CLI, text for the plan;
 * - a plain date or timestamp (`2026-11-01`): a timestamp for the CLI, which
 *   passes the program a reformatted time; text for the plan;
 * - an explicit tag other than `!!str` (`!!set`, `!!binary`, `!custom`): each
 *   parser has its own idea of it.
 *
 * Quoting a value makes it text for both.
 */
import { type Document, isAlias, isMap, isScalar, isSeq } from "yaml";

/** One value the CLI would read differently: its key path in the file (`config.` dropped), its text, why and what to write. */
export interface Divergence {
    readonly path: string;
    readonly source: string;
    readonly problem: string;
}

const STR_TAG = "tag:yaml.org,2002:str";
const OCTAL = /^([-+]?)0([0-7]+)$/;
const UNDERSCORE_NUMBER = /^[-+]?(?:0[box])?[\d_a-fA-F]*\d[\d_a-fA-F]*(?:\.[\d_]*)?(?:[eE][-+]?\d+)?$/;
const TIMESTAMP = /^\d{4}-\d{1,2}-\d{1,2}(?:(?:[Tt]|[ \t]+)\d{1,2}:\d{2}:\d{2}(?:\.\d*)?(?:[ \t]*(?:Z|[-+]\d{1,2}(?::?\d{2})?))?)?$/;

function shownTag(tag: string): string {
    return tag.startsWith("tag:yaml.org,2002:") ? `!!${tag.slice("tag:yaml.org,2002:".length)}` : tag;
}

function keyPath(path: ReadonlyArray<string | number>): string {
    const segments = path[0] === "config" ? path.slice(1) : path;
    return segments.reduce<string>((out, s) => (typeof s === "number" ? `${out}[${s}]` : out ? `${out}.${s}` : s), "") || "(top level)";
}

function scalarProblem(source: string): string | undefined {
    const octal = OCTAL.exec(source);
    if (octal && parseInt(octal[2], 8) !== parseInt(octal[2], 10)) {
        const [cli, plan] = [`${octal[1]}${parseInt(octal[2], 8)}`, `${octal[1]}${parseInt(octal[2], 10)}`];
        return `a number with a leading zero, which the Pulumi CLI reads as octal (${cli}) and this plan as ${plan}; write ${plan} (or ${cli}), or quote it for text`;
    }
    if (source.includes("_") && UNDERSCORE_NUMBER.test(source)) {
        return `a number with "_", which the Pulumi CLI reads as a number and this plan as text; write it without "_", or quote it for text`;
    }
    if (TIMESTAMP.test(source)) {
        return "a date, which the Pulumi CLI reads as a timestamp (the program then gets a reformatted time, not this text) and this plan as text; quote it";
    }
    return undefined;
}

/** Every value in `doc` that the Pulumi CLI would read differently from this plan, in file order. */
export function cliDivergences(doc: Document): Divergence[] {
    const out: Divergence[] = [];
    const visit = (node: unknown, path: ReadonlyArray<string | number>): void => {
        if (node === null || node === undefined || isAlias(node)) return;
        if (isMap(node) || isSeq(node) || isScalar(node)) {
            if (node.tag === STR_TAG) return; // text for both
            if (node.tag) {
                out.push({ path: keyPath(path), source: shownTag(node.tag), problem: `has the explicit YAML tag ${shownTag(node.tag)}, which the Pulumi CLI and this plan read differently; write the value without a tag` });
                return;
            }
        }
        if (isMap(node)) {
            for (const pair of node.items) {
                const key = isScalar(pair.key) ? String(pair.key.value) : "?";
                visit(pair.value, [...path, key]);
            }
        } else if (isSeq(node)) {
            node.items.forEach((item, i) => visit(item, [...path, i]));
        } else if (isScalar(node) && node.type === "PLAIN" && typeof node.source === "string") {
            const problem = scalarProblem(node.source);
            if (problem) out.push({ path: keyPath(path), source: node.source, problem });
        }
    };
    visit(doc.contents, []);
    return out;
}
