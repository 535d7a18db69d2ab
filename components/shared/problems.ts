/**
 * The one problem format of the stack config. Every check reports a problem as
 * a key path plus a message; `loadStackConfig` turns it into one line:
 *
 *   ml-infra:build.images[0].context = "..": <what is wrong and what is allowed>
 *
 * Sections check with key paths relative to themselves and `within` prefixes
 * them, so every message names the full key the same way.
 */
import type { z } from "zod";

/** One step of a key path: an object key or a list index. */
export type Key = string | number;
export type KeyPath = readonly Key[];

/** Reports one problem at a key path (relative to what is being checked). */
/** How a problem is shown: `redact` hides the value at the key (it may be a secret). */
export interface ReportOptions {
    readonly redact?: boolean;
}

export type Report = (keys: KeyPath, message: string, options?: ReportOptions) => void;

/** A reporter whose key paths are relative to `prefix`. */
export function within(report: Report, prefix: KeyPath): Report {
    return (keys, message, options) => report([...prefix, ...keys], message, options);
}

/** `build.images[0].context`: a key path as a user writes it, without the namespace. */
export function keyPathText(keys: KeyPath): string {
    let out = "";
    keys.forEach((k, i) => {
        if (typeof k === "number") out += `[${k}]`;
        else if (k === "") out += '[""]';
        else out += i === 0 ? k : `.${k}`;
    });
    return out;
}

/** `<project>:build.images[0].context`: the full config key. */
export function formatKeyPath(project: string, keys: KeyPath): string {
    return `${project}:${keyPathText(keys)}`;
}

/** The problems a zod error holds, with key paths under `prefix` (unknown keys: one problem per key). */
export function zodProblems(error: z.ZodError, prefix: KeyPath = []): Array<{ keys: KeyPath; message: string }> {
    return error.issues.flatMap((issue) => {
        const keys = [...prefix, ...issue.path.map((k) => (typeof k === "number" ? k : String(k)))];
        if (issue.code === "unrecognized_keys") return issue.keys.map((k) => ({ keys: [...keys, k], message: issue.message }));
        if (issue.code === "invalid_key") {
            // A map key the schema refuses: say which name and why (zod's own text is "Invalid key in record").
            const why = [...new Set(issue.issues.map((i) => i.message))].join("; ");
            return [{ keys, message: `the name ${JSON.stringify(keys.at(-1))} is not allowed: ${why}` }];
        }
        return [{ keys, message: issue.message }];
    });
}

/** Thrown for bad stack config. Pulumi prints a RunError's message without a stack trace. */
export class ConfigError extends Error {
    /** Lets Pulumi's RunError.isInstance() recognise it without importing the SDK here. */
    public readonly __pulumiRunError = true;
    constructor(public readonly problems: readonly string[]) {
        super(`Invalid stack configuration:\n  - ${problems.join("\n  - ")}`);
        this.name = "ConfigError";
    }
}

/** Levenshtein distance between two names, for "did you mean" in messages. */
export function editDistance(a: string, b: string): number {
    const row = Array.from({ length: b.length + 1 }, (_, j) => j);
    for (let i = 1; i <= a.length; i++) {
        let prev = row[0];
        row[0] = i;
        for (let j = 1; j <= b.length; j++) {
            const cur = row[j];
            row[j] = Math.min(row[j] + 1, row[j - 1] + 1, prev + (a[i - 1] === b[j - 1] ? 0 : 1));
            prev = cur;
        }
    }
    return row[b.length];
}
