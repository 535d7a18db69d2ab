/**
 * The grammar of an IAM policy document (identity and trust policies), as a
 * zod schema: Version, Statement, Sid, Effect, Principal, Action/NotAction,
 * Resource/NotResource, Condition. Used by the policy pack and by the tests
 * on every document the program renders.
 */
import { z } from "zod";

const oneOrMany = <T extends z.ZodTypeAny>(item: T) => z.union([item, z.array(item).min(1)]);

const action = z.string().regex(/^(\*|[a-z0-9-]+:[A-Za-z0-9*?]+)$/, "an action is service:Action (wildcards * and ? allowed)");
const resource = z.string().regex(/^(\*|arn:(\*|aws[a-z-]*):[a-z0-9-*]*:[a-z0-9-*]*:(\d{12}|\*|aws)?:.+)$/, "a resource is * or an ARN");
const principal = z.union([
    z.literal("*"),
    z.strictObject({
        AWS: oneOrMany(z.string()).optional(),
        Service: oneOrMany(z.string().regex(/^[a-z0-9.-]+\.amazonaws\.com(\.cn)?$/)).optional(),
        Federated: oneOrMany(z.string()).optional(),
        CanonicalUser: oneOrMany(z.string()).optional(),
    }),
]);
const conditionOperator = z.string().regex(
    /^(ForAllValues:|ForAnyValue:)?(String|Numeric|Date|Bool|Binary|IpAddress|NotIpAddress|Arn|Null)[A-Za-z]*(IfExists)?$/,
    "not an IAM condition operator",
);
const condition = z.record(conditionOperator, z.record(z.string().min(1), oneOrMany(z.union([z.string(), z.boolean(), z.number()]))));

const statement = z
    .strictObject({
        Sid: z.string().regex(/^[A-Za-z0-9]*$/, "Sid is letters and digits").optional(),
        Effect: z.enum(["Allow", "Deny"]),
        Principal: principal.optional(),
        NotPrincipal: principal.optional(),
        Action: oneOrMany(action).optional(),
        NotAction: oneOrMany(action).optional(),
        Resource: oneOrMany(resource).optional(),
        NotResource: oneOrMany(resource).optional(),
        Condition: condition.optional(),
    })
    .refine((s) => (s.Action === undefined) !== (s.NotAction === undefined), "a statement has exactly one of Action and NotAction")
    .refine((s) => !(s.Resource !== undefined && s.NotResource !== undefined), "a statement has at most one of Resource and NotResource");

export const policyDocumentSchema = z.strictObject({
    Version: z.literal("2012-10-17"),
    Id: z.string().optional(),
    Statement: z.array(statement).min(1),
});

/** Identity policies name resources; trust policies name principals instead. */
export function iamDocumentProblems(document: unknown, kind: "identity" | "trust"): string[] {
    const parsed = policyDocumentSchema.safeParse(document);
    if (!parsed.success) return parsed.error.issues.map((i) => `${i.path.join(".") || "(document)"}: ${i.message}`);
    return parsed.data.Statement.flatMap((s, n) => {
        if (kind === "identity" && s.Resource === undefined && s.NotResource === undefined) return [`Statement.${n}: names no Resource`];
        if (kind === "identity" && s.Principal !== undefined) return [`Statement.${n}: an identity policy has no Principal`];
        if (kind === "trust" && s.Principal === undefined) return [`Statement.${n}: a trust policy names a Principal`];
        return [];
    });
}
