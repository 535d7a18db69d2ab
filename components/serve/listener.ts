/**
 * Listener rules of the services' load balancers (pure): which TLS policies
 * are current, and the tag that records a stack's choice of plain HTTP.
 * Shared by the config check (./checks), InferenceService and the policy
 * pack (policy/policies.ts), so all three apply one rule.
 */

/**
 * Tag of a listener that serves plain HTTP because its stack said so
 * (`serve.loadBalancer.protocol: http`); the policy pack refuses any other
 * HTTP listener that does not redirect to HTTPS.
 */
export const PLAIN_HTTP_TAG = "ml-infra:plain-http";

/** TLS policy of an HTTPS listener when the stack names none (TLS 1.3, and TLS 1.2 with forward-secret AEAD ciphers). */
export const DEFAULT_TLS_POLICY = "ELBSecurityPolicy-TLS13-1-2-2021-06";

/**
 * Current ELB TLS policies: those whose oldest protocol is TLS 1.2 (the
 * TLS13-1-2 and TLS13-1-3 families in every variant: Res, Ext0-2, FIPS, PQ;
 * TLS-1-2 and TLS-1-2-Ext; FS-1-2 and FS-1-2-Res). Everything else is refused:
 * the policies that still admit TLS 1.0 or 1.1 (2016-08, 2015-05,
 * TLS-1-0-2015-04, TLS-1-1-2017-01, FS-2018-06, FS-1-1-2019-08,
 * TLS13-1-0-2021-06, TLS13-1-1-2021-06, ...) and any name not of these forms
 * (an unknown policy is not assumed to be current).
 */
const CURRENT_TLS_POLICY = /^ELBSecurityPolicy-(TLS13-1-[23](-[A-Za-z0-9]+)*-\d{4}-\d{2}|TLS-1-2(-Ext)?-\d{4}-\d{2}|FS-1-2(-Res)?-\d{4}-\d{2})$/;

/** Why a listener may not use TLS policy `name` (undefined: it may). */
export function tlsPolicyProblem(name: string): string | undefined {
    if (CURRENT_TLS_POLICY.test(name)) return undefined;
    const legacy = /^ELBSecurityPolicy-/.test(name) ? "is not a current TLS policy (it admits TLS 1.0 or 1.1, or is not one of the TLS 1.2+ families)" : "is not an ELB TLS policy";
    return `${legacy}; use ${DEFAULT_TLS_POLICY} (the default) or another whose oldest protocol is TLS 1.2: ELBSecurityPolicy-TLS13-1-2-*, -TLS13-1-3-*, -TLS-1-2-*, -TLS-1-2-Ext-*, -FS-1-2-*`;
}

/**
 * Why the listener cannot use ACM certificate `arn` in this stack (undefined:
 * it can, or the stack's region is not known): an ALB uses certificates of
 * its own region only. (Another account's certificate is left to the policy
 * pack's lb-listeners-https, which sees the load balancer's account.)
 */
export function certificateProblem(arn: string, stack: { readonly region?: string }): string | undefined {
    const region = arn.split(":")[3];
    if (stack.region !== undefined && region !== stack.region) {
        return `is a certificate in ${region}; the load balancers are in the stack's region (aws:region ${stack.region}) and can use certificates of that region only: request or import it in ${stack.region}`;
    }
    return undefined;
}
