/**
 * Byte-preserving edits of YAML text: scalar values are located with the
 * `yaml` package's source ranges (node.range) and new text is spliced into
 * the original string, which is never re-stringified. Everything outside the
 * replaced values (line endings, a BOM, comments, blank lines, quoting,
 * indentation, key order, flow or block style) stays byte for byte.
 *
 *   const doc = parseForEdit(text, "stacks/Pulumi.prod.yaml");
 *   const edit = replaceScalar(text, node, "new value", inFlow);
 *   applyEdits(text, [edit]);
 *
 * A replaced scalar keeps its style: plain stays plain (double-quoted if the
 * new value cannot be written plain), 'single' and "double" keep their
 * quotes, a block scalar keeps its header. Callers re-parse the result and
 * check it means exactly what they intended (`sameData`).
 */
import { isDeepStrictEqual } from "node:util";
import { type Document, type Node, type Pair, Scalar, type YAMLMap, isScalar, parseDocument } from "yaml";

/** One splice: replace `[start, end)` of the source with `text`. */
export interface Edit {
    readonly start: number;
    readonly end: number;
    readonly text: string;
}

/** Applies non-overlapping edits (in any order) to `source`. */
export function applyEdits(source: string, edits: readonly Edit[]): string {
    const sorted = [...edits].sort((a, b) => a.start - b.start || a.end - b.end);
    let out = "";
    let at = 0;
    for (const e of sorted) {
        if (e.start < at || e.end < e.start || e.end > source.length) throw new Error(`overlapping or out-of-range edit at ${e.start}..${e.end}`);
        out += source.slice(at, e.start) + e.text;
        at = e.end;
    }
    return out + source.slice(at);
}

/** Decodes bytes as UTF-8, keeping a byte order mark; refuses invalid UTF-8 (it could not be written back unchanged). */
export function decodeUtf8(bytes: Uint8Array, what: string): string {
    try {
        return new TextDecoder("utf-8", { fatal: true, ignoreBOM: true }).decode(bytes);
    } catch {
        throw new Error(`${what} is not valid UTF-8; refusing to edit it`);
    }
}

/** Parses one YAML document for editing; the first error (with its line) names `what`. */
export function parseForEdit(text: string, what: string): Document.Parsed {
    const doc = parseDocument(text, { prettyErrors: true, uniqueKeys: true });
    if (doc.errors.length > 0) throw new Error(`${what} is not valid YAML: ${doc.errors[0].message}`);
    return doc;
}

/** The line break used at `pos` (the one ending the line before it), else the text's first, else LF. */
export function lineBreakNear(source: string, pos: number): string {
    if (pos >= 1 && source[pos - 1] === "\n") return pos >= 2 && source[pos - 2] === "\r" ? "\r\n" : "\n";
    const next = source.indexOf("\n", pos);
    if (next > 0) return source[next - 1] === "\r" ? "\r\n" : "\n";
    const first = source.indexOf("\n");
    return first > 0 && source[first - 1] === "\r" ? "\r\n" : "\n";
}

/** Column of offset `pos` on its line. */
function columnOf(source: string, pos: number): number {
    return pos - (source.lastIndexOf("\n", pos - 1) + 1);
}

/** Is `value` read back as exactly this string when written as a plain scalar (in flow or block context)? */
export function canBePlain(value: string, inFlow: boolean): boolean {
    if (value === "" || /[\r\n\t]/.test(value) || value.trim() !== value) return false;
    const probe = parseDocument(inFlow ? `[${value}]` : `k: ${value}`);
    if (probe.errors.length > 0 || probe.warnings.length > 0) return false;
    const node = inFlow ? probe.getIn([0], true) : probe.get("k", true);
    return isScalar(node) && node.type === Scalar.PLAIN && node.value === value && isDeepStrictEqual(probe.toJS(), inFlow ? [value] : { k: value });
}

/** `value` as a double-quoted scalar (JSON's escapes are YAML's). */
export function doubleQuoted(value: string): string {
    return JSON.stringify(value);
}

/** `value` as a single-quoted scalar, or undefined when it cannot be one on one line. */
function singleQuoted(value: string): string | undefined {
    return /[\r\n]/.test(value) ? undefined : `'${value.replace(/'/g, "''")}'`;
}

/** `value` as new scalar text: plain when it can be, double-quoted otherwise. */
export function scalarText(value: string, inFlow: boolean): string {
    return canBePlain(value, inFlow) ? value : doubleQuoted(value);
}

/**
 * The edit that makes scalar `node` read `value`, keeping its style. `what`
 * names the value in errors.
 */
export function replaceScalar(source: string, node: Scalar, value: string, inFlow: boolean, what: string): Edit {
    const range = node.range;
    if (!range) throw new Error(`${what}: no source position`);
    const [start, end] = range;
    switch (node.type) {
        case Scalar.PLAIN:
            return { start, end, text: scalarText(value, inFlow) };
        case Scalar.QUOTE_SINGLE:
            return { start, end, text: singleQuoted(value) ?? doubleQuoted(value) };
        case Scalar.QUOTE_DOUBLE:
            return { start, end, text: doubleQuoted(value) };
        case Scalar.BLOCK_LITERAL:
        case Scalar.BLOCK_FOLDED:
            return replaceBlockScalar(source, start, end, value, what);
        default:
            throw new Error(`${what}: unsupported scalar style ${String(node.type)}`);
    }
}

/**
 * A block scalar (`|-` or `>-`) keeps its header and indentation; only its
 * one content line is replaced. Clip and keep chomping (`|`, `>`, `|+`)
 * would add a line break to the value, so they are refused.
 */
function replaceBlockScalar(source: string, start: number, end: number, value: string, what: string): Edit {
    const headerEnd = source.indexOf("\n", start);
    if (headerEnd < 0 || headerEnd >= end) throw new Error(`${what}: block scalar without content`);
    const header = source.slice(start, headerEnd).replace(/\r$/, "");
    if (!/^[|>](?:[1-9]?-|-[1-9]?)(?:\s+#.*)?\s*$/.test(header)) {
        throw new Error(`${what} is a block scalar (${header.trim()}) whose value ends with a line break; write it as a plain or quoted scalar to promote it`);
    }
    if (/[\r\n]/.test(value)) throw new Error(`${what}: a block scalar can only be replaced with a one-line value`);
    const body = source.slice(headerEnd + 1, end);
    const lines = body.split("\n");
    const first = lines.findIndex((l) => l.trim() !== "");
    if (first < 0) throw new Error(`${what}: block scalar without content`);
    let last = lines.length - 1;
    while (last > first && lines[last].replace(/\r$/, "").trim() === "") last--;
    const indent = /^ */.exec(lines[first])?.[0] ?? "";
    const cr = lines[last].endsWith("\r") ? "\r" : "";
    // Lines before `first` (blank) and after `last` (blank, chomped) stay as they are.
    const kept = [...lines.slice(0, first), `${indent}${value}${cr}`, ...lines.slice(last + 1)];
    return { start: headerEnd + 1, end, text: kept.join("\n") };
}

/**
 * The edit that adds `key: value` to `map`, after the pair `after` (default:
 * the last pair), in the map's own style: a new line at the indentation of
 * the map's keys for a block map, `, key: value` for a flow map.
 */
export function insertPair(source: string, map: YAMLMap, key: string, value: string, after: Pair | undefined, what: string): Edit {
    const anchorPair = after ?? map.items[map.items.length - 1];
    if (!anchorPair) throw new Error(`${what}: cannot add a key to an empty mapping`);
    const keyNode = map.items[0]?.key as Node | undefined;
    const keyRange = keyNode?.range;
    const lastNode = (anchorPair.value ?? anchorPair.key) as Node | null;
    const lastRange = lastNode?.range;
    if (!keyRange || !lastRange) throw new Error(`${what}: no source position`);
    const keyText = scalarText(key, map.flow === true);
    if (map.flow) {
        return { start: lastRange[1], end: lastRange[1], text: `, ${keyText}: ${scalarText(value, true)}` };
    }
    const indent = " ".repeat(columnOf(source, keyRange[0]));
    const pos = lastRange[2];
    const eol = lineBreakNear(source, pos);
    const line = `${indent}${keyText}: ${scalarText(value, false)}`;
    const atLineStart = pos > 0 && source[pos - 1] === "\n";
    return atLineStart ? { start: pos, end: pos, text: `${line}${eol}` } : { start: pos, end: pos, text: `${eol}${line}` };
}

/**
 * The edit that adds `key:` holding the mapping `entries` (string values, in
 * the order given) to `map`, after the pair `after` (default: the last pair),
 * in the map's own style: a block mapping indented two spaces under the new
 * key for a block map, `, key: {k: v, ...}` for a flow map.
 */
export function insertMapPair(
    source: string,
    map: YAMLMap,
    key: string,
    entries: ReadonlyArray<readonly [string, string]>,
    after: Pair | undefined,
    what: string,
): Edit {
    if (entries.length === 0) throw new Error(`${what}: cannot add an empty mapping`);
    if (map.flow) {
        const inner = entries.map(([k, v]) => `${scalarText(k, true)}: ${scalarText(v, true)}`).join(", ");
        const anchorPair = after ?? map.items[map.items.length - 1];
        const lastRange = ((anchorPair?.value ?? anchorPair?.key) as Node | null | undefined)?.range;
        if (!lastRange) throw new Error(`${what}: no source position`);
        return { start: lastRange[1], end: lastRange[1], text: `, ${scalarText(key, true)}: {${inner}}` };
    }
    const edit = insertPair(source, map, key, "x", after, what);
    // insertPair wrote `<indent>key: x`; put the nested mapping in place of the value.
    const keyNode = map.items[0]?.key as Node | undefined;
    const indent = " ".repeat(columnOf(source, keyNode?.range?.[0] ?? 0));
    const eol = lineBreakNear(source, edit.start);
    const header = `${indent}${scalarText(key, false)}:`;
    const body = entries.map(([k, v]) => `${indent}  ${scalarText(k, false)}: ${scalarText(v, false)}`).join(eol);
    const line = `${header}${eol}${body}`;
    const atLineStart = edit.text.endsWith(eol) && !edit.text.startsWith(eol);
    return { start: edit.start, end: edit.end, text: atLineStart ? `${line}${eol}` : `${eol}${line}` };
}

/** Do two YAML texts hold the same data (aliases resolved)? */
export function sameData(a: unknown, b: unknown): boolean {
    return isDeepStrictEqual(a, b);
}
