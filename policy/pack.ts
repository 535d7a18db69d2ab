/**
 * The policy pack's definition: every policy of policies.ts, mandatory,
 * adapted to @pulumi/policy. Kept apart from index.ts (which starts the pack)
 * so tests can exercise exactly what `pulumi preview --policy-pack policy` runs.
 */
import type { PolicyPackArgs, ReportViolation, ResourceValidationArgs, StackValidationArgs } from "@pulumi/policy";
import { type PolicyResource, RESOURCE_POLICIES, STACK_POLICIES } from "./policies";

interface EngineResource {
    type: string;
    name: string;
    urn: string;
    props: Record<string, unknown>;
    propertyDependencies?: Record<string, Array<{ urn: string }>>;
}

const asResource = (r: EngineResource): PolicyResource => ({
    type: r.type,
    name: r.name,
    urn: r.urn,
    props: r.props,
    propertyDependencies: Object.fromEntries(Object.entries(r.propertyDependencies ?? {}).map(([k, deps]) => [k, deps.map((d) => d.urn)])),
});

export function policyPackArgs(): PolicyPackArgs {
    return {
        enforcementLevel: "mandatory",
        policies: [
            ...RESOURCE_POLICIES.map((p) => ({
                name: p.name,
                description: p.description,
                enforcementLevel: "mandatory" as const,
                validateResource: (args: ResourceValidationArgs, report: ReportViolation) => {
                    for (const message of p.check(asResource(args))) report(message);
                },
            })),
            ...STACK_POLICIES.map((p) => ({
                name: p.name,
                description: p.description,
                enforcementLevel: "mandatory" as const,
                validateStack: (args: StackValidationArgs, report: ReportViolation) => {
                    for (const v of p.check(args.resources.map(asResource))) report(v.message, v.resource);
                },
            })),
        ],
    };
}
