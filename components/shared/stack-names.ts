/**
 * Names of the stacks a stack reads (pure): the build stack an environment
 * follows, the runners stack a build stack builds on. A name is
 * `[org/][project/]stack`; left out, it is `<organization>/<project>/<stack>`,
 * which Pulumi Cloud (the organization's name) and self-managed backends
 * (where the organization is the literal `organization`) both understand.
 */
import { z } from "zod";

/** A stack name as a StackReference takes it. */
export const stackName = z
    .string()
    .regex(
        /^(?:(?!\.+\/)[A-Za-z0-9_.-]{1,100}\/){0,2}(?!\.+$)[A-Za-z0-9_.-]{1,100}$/,
        "must be a stack name: [org/][project/]stack, each part 1 to 100 letters, digits, _, . or - (not only dots)",
    );

/** The full name of a referenced stack: as configured, or `<organization>/<project>/<stack>`. */
export function referencedStack(configured: string | undefined, organization: string, project: string, stack: string): string {
    return configured ?? `${organization}/${project}/${stack}`;
}

/** The stack part of a reference (`org/project/build` -> `build`). */
export function stackOf(reference: string): string {
    return reference.split("/").pop() ?? reference;
}
