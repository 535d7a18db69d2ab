/**
 * Schema primitives shared by every section of the stack config (zod).
 * Each section's schema is built from these so errors read the same way.
 */
import { z } from "zod";

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

/** Build args / environment variables: NAME -> value. */
export const stringMap = z.record(z.string().regex(/^[A-Za-z_][A-Za-z0-9_]*$/, "names are letters, digits and _"), z.string());

/** An IPv4 CIDR block. */
export const cidr = z
    .string()
    .regex(/^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})\/(\d|[12]\d|3[0-2])$/, "must be an IPv4 CIDR such as 10.0.0.0/16");

/** A strict object whose unknown-key error lists the keys that are allowed. */
export function strict<T extends z.ZodRawShape>(shape: T) {
    const allowed = Object.keys(shape).sort().join(", ");
    return z.strictObject(shape, {
        error: (issue) => (issue.code === "unrecognized_keys" ? `unknown key; allowed: ${allowed}` : undefined),
    });
}
