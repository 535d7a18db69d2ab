/**
 * Schema primitives shared by every section of the stack config (zod).
 * Each section's schema is built from these so errors read the same way.
 */
import { z } from "zod";
import { parseCidr } from "./cidr";

export const NAME_RE = /^[a-z][a-z0-9-]{0,39}$/;

/** A lower-case name (image, target, service, sidecar ...). */
export const name = (what: string) =>
    z.string().regex(NAME_RE, `${what} must be lower-case letters, digits and dashes, starting with a letter (at most 40)`);

/** A full image reference: registry/repository[:tag][@sha256:digest]. */
export const imageRef = z
    .string()
    .regex(
        /^[a-z0-9.-]+(:[0-9]+)?\/[a-z0-9._/-]+(:[A-Za-z0-9_.-]+)?(@sha256:[a-f0-9]{64})?$/,
        "must be a full image reference: registry/repository[:tag][@sha256:digest]",
    );

/** Most entries of a build args or environment map: more is a mistake, and each one costs every plan. */
export const MAX_MAP_ENTRIES = 100;
/** Longest value of a build arg or environment variable, in characters. */
export const MAX_VALUE_LENGTH = 4096;

/** Build args / environment variables: NAME -> value (at most MAX_MAP_ENTRIES, each at most MAX_VALUE_LENGTH characters). */
export const stringMap = z
    .record(z.string().max(128, "names are at most 128 characters").regex(/^[A-Za-z_][A-Za-z0-9_]*$/, "names are letters, digits and _, not starting with a digit"), z.string().max(MAX_VALUE_LENGTH, `values are at most ${MAX_VALUE_LENGTH} characters`))
    .superRefine((map, ctx) => {
        const n = Object.keys(map).length;
        if (n > MAX_MAP_ENTRIES) ctx.addIssue({ code: "custom", message: `has ${n} entries; at most ${MAX_MAP_ENTRIES}` });
    });

/** An IPv4 CIDR block. */
export const cidr = z.string().superRefine((text, ctx) => {
    const { problem } = parseCidr(text);
    if (problem) ctx.addIssue({ code: "custom", message: problem });
});

/** An EC2 instance type (`example` goes into the message). */
export const instanceType = (example: string) =>
    z.string().regex(/^[a-z][a-z0-9-]*\.[a-z0-9-]+$/, `must be an EC2 instance type such as ${example}`);

/** A security group id. */
export const securityGroupId = z.string().regex(/^sg-[0-9a-f]{8,17}$/, "must be a security group id such as sg-0123456789abcdef0");

/** Retention values CloudWatch Logs accepts, in days. */
export const LOG_RETENTION_DAYS = [1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653] as const;

/** A CloudWatch Logs retention in days. */
export const logRetentionDays = z.literal(LOG_RETENTION_DAYS, { error: `must be one of ${LOG_RETENTION_DAYS.join(", ")}` });

/** A strict object whose unknown-key error lists the keys that are allowed (not the `removed` ones, which the shape keeps only to refuse them with a better message). */
export function strict<T extends z.ZodRawShape>(shape: T, removed: readonly string[] = []) {
    const allowed = Object.keys(shape)
        .filter((k) => !removed.includes(k))
        .sort()
        .join(", ");
    return z.strictObject(shape, {
        error: (issue) => {
            if (issue.code === "unrecognized_keys") return `unknown key; allowed: ${allowed}`;
            if (issue.code === "invalid_type") return `must be a mapping of keys (${allowed}), not ${describeValue(issue.input)}`;
            return undefined;
        },
    });
}

/** What a value is, in a user's words. */
export function describeValue(value: unknown): string {
    if (value === undefined) return "missing";
    if (value === null) return "empty (null)";
    if (Array.isArray(value)) return "a list";
    if (typeof value === "number") return Number.isFinite(value) ? "a number" : "a non-finite number";
    if (typeof value === "string") return /^-?\d+(\.\d+)?$/.test(value) ? "a number" : "a string";
    if (typeof value === "boolean") return "true/false";
    return typeof value;
}
