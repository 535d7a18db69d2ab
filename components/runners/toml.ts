/**
 * A small TOML writer (pure) for buildkitd.toml: strings, safe integers,
 * booleans, string arrays, tables and arrays of tables. Its output is checked
 * by a TOML parser in the tests.
 */
/** A TOML value this writer supports (no floats, no dates: buildkitd needs neither). */
export type TomlValue = string | number | boolean | readonly string[] | TomlTable | readonly TomlTable[] | undefined;
export type TomlTable = { readonly [key: string]: TomlValue };

const BARE_KEY = /^[A-Za-z0-9_-]+$/;

function tomlKey(key: string): string {
    return BARE_KEY.test(key) ? key : tomlString(key, key);
}

function isTable(v: TomlValue): v is TomlTable {
    return typeof v === "object" && v !== null && !Array.isArray(v);
}

function isTableArray(v: TomlValue): v is readonly TomlTable[] {
    return Array.isArray(v) && v.length > 0 && v.every((e) => typeof e === "object" && e !== null);
}

const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;

/** A TOML basic string: JSON's escapes are TOML's, plus DEL, which TOML also requires escaped. */
function tomlString(s: string, at: string): string {
    if (LONE_SURROGATE.test(s)) throw new Error(`TOML: ${at} is not well-formed Unicode`);
    return JSON.stringify(s).replace(/\u007f/g, "\\u007f");
}

function tomlScalar(v: string | number | boolean | readonly string[], at: string): string {
    if (typeof v === "string") return tomlString(v, at);
    if (typeof v === "boolean") return String(v);
    if (typeof v === "number") {
        if (!Number.isSafeInteger(v)) throw new Error(`TOML: ${at} must be a safe integer, got ${v}`);
        return String(v);
    }
    return `[${v.map((s) => tomlString(s, at)).join(", ")}]`;
}

/**
 * Serialises a table to TOML: scalars first, then sub-tables, then arrays of
 * tables, each in insertion order. JSON string escapes are valid TOML basic strings.
 */
export function toToml(table: TomlTable, path: readonly string[] = []): string {
    const lines: string[] = [];
    const tables: Array<[string, TomlTable]> = [];
    const arrays: Array<[string, readonly TomlTable[]]> = [];
    for (const [key, value] of Object.entries(table)) {
        if (value === undefined) continue;
        if (isTable(value)) tables.push([key, value]);
        else if (isTableArray(value)) arrays.push([key, value]);
        else lines.push(`${tomlKey(key)} = ${tomlScalar(value as string | number | boolean | readonly string[], [...path, key].join("."))}`);
    }
    const blocks: string[] = [];
    if (lines.length > 0) blocks.push(lines.join("\n"));
    for (const [key, sub] of tables) {
        const subPath = [...path, key];
        const header = `[${subPath.map(tomlKey).join(".")}]`;
        const body = toToml(sub, subPath);
        const hasScalars = Object.values(sub).some((v) => v !== undefined && !isTable(v) && !isTableArray(v));
        // A table holding only sub-tables needs no header of its own (its children's headers define it).
        if (hasScalars || body.length === 0) blocks.push(body.length > 0 ? `${header}\n${body}` : header);
        else blocks.push(body);
    }
    for (const [key, items] of arrays) {
        const subPath = [...path, key];
        for (const item of items) {
            const body = toToml(item, subPath);
            blocks.push(`[[${subPath.map(tomlKey).join(".")}]]${body.length > 0 ? `\n${body}` : ""}`);
        }
    }
    return blocks.join("\n\n");
}
