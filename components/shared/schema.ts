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

/** An EC2 instance type (`example` goes into the message). */
export const instanceType = (example: string) =>
    z.string().regex(/^[a-z][a-z0-9-]*\.[a-z0-9-]+$/, `must be an EC2 instance type such as ${example}`);

/** A security group id. */
export const securityGroupId = z.string().regex(/^sg-[0-9a-f]{8,17}$/, "must be a security group id such as sg-0123456789abcdef0");

/** Retention values CloudWatch Logs accepts, in days. */
export const LOG_RETENTION_DAYS = [1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653] as const;

/** A CloudWatch Logs retention in days. */
export const logRetentionDays = z.literal(LOG_RETENTION_DAYS, { error: `must be one of ${LOG_RETENTION_DAYS.join(", ")}` });

/** A strict object whose unknown-key error lists the keys that are allowed. */
export function strict<T extends z.ZodRawShape>(shape: T) {
    const allowed = Object.keys(shape).sort().join(", ");
    return z.strictObject(shape, {
        error: (issue) => (issue.code === "unrecognized_keys" ? `unknown key; allowed: ${allowed}` : undefined),
    });
}
