/**
 * The services' listeners: HTTPS with a certificate and a current TLS policy,
 * or plain HTTP only where the stack says so (serve.loadBalancer.protocol:
 * http), refused in the config before anything is registered and recorded on
 * the listener where the policy pack sees it.
 */
import { describe, expect, it } from "vitest";
import { DEFAULT_TLS_POLICY, PLAIN_HTTP_TAG, tlsPolicyProblem } from "../components/serve/listener";
import { loadBalancerSchema } from "../components/serve/schema";
import { runPolicies } from "../policy/policies";
import { PROJECT, validServe } from "./fixtures";
import { configProblems, evaluate, policyResourceOf } from "./harness";

const CERT = "arn:aws:acm:us-east-1:123456789012:certificate/6f3b9a1e-2c47-4d85-b0e9-8a1f5c7d2e64";
const NETWORK = { cidr: "10.0.0.0/16", availabilityZones: ["us-east-1a", "us-east-1b"], natGateways: "single" };

/** A pinned serve stack (no build stack read) with the given `serve.loadBalancer` (omitted when undefined). */
function stack(loadBalancer: unknown): Record<string, unknown> {
    const serve: Record<string, unknown> = { ...validServe() };
    delete serve.loadBalancer;
    if (loadBalancer !== undefined) serve.loadBalancer = loadBalancer;
    return { [`${PROJECT}:network`]: NETWORK, [`${PROJECT}:serve`]: serve };
}

describe("serve.loadBalancer in the config", () => {
    it("refuses a stack that gives neither a certificate nor protocol: http, saying both ways out", () => {
        for (const lb of [undefined, {}, { protocol: "https" }]) {
            expect(configProblems(stack(lb), "dev")).toEqual([
                `${PROJECT}:serve.loadBalancer.certificateArn = (missing): the listeners are HTTPS unless the stack says otherwise, and HTTPS needs an ACM certificate: set serve.loadBalancer.certificateArn, or set serve.loadBalancer.protocol: http to serve plain HTTP on port 80 on purpose`,
            ]);
        }
    });

    it("accepts HTTPS with a certificate (any current TLS policy) and plain HTTP asked for", () => {
        expect(configProblems(stack({ certificateArn: CERT }), "dev")).toEqual([]);
        expect(configProblems(stack({ protocol: "http" }), "dev")).toEqual([]);
        // (Through the whole config, an explicit sslPolicy is also judged by the credential check, which takes
        // any 32+ character mixed-case name with digits for an opaque key; the listener rule itself admits it.)
        expect(loadBalancerSchema.safeParse({ certificateArn: CERT, sslPolicy: "ELBSecurityPolicy-TLS13-1-3-2021-06" }).success).toBe(true);
    });

    it("refuses plain HTTP beside a certificate or a TLS policy (never silently ignored)", () => {
        expect(configProblems(stack({ protocol: "http", certificateArn: CERT }), "dev")).toEqual([
            `${PROJECT}:serve.loadBalancer.protocol = "http": a certificate is configured (certificateArn), so the listeners must be HTTPS: remove protocol: http (or the certificate)`,
        ]);
        expect(configProblems(stack({ protocol: "http", sslPolicy: "ELBSecurityPolicy-TLS-1-2-2017-01" }), "dev")).toContain(
            `${PROJECT}:serve.loadBalancer.sslPolicy = "ELBSecurityPolicy-TLS-1-2-2017-01": is the TLS policy of an HTTPS listener; protocol is http: remove it (or serve HTTPS with a certificate)`,
        );
    });

    it("refuses a legacy TLS policy and an unknown protocol", () => {
        const legacy = configProblems(stack({ certificateArn: CERT, sslPolicy: "ELBSecurityPolicy-TLS-1-0-2015-04" }), "dev").find((p) => p.includes("TLS policy")) ?? "";
        expect(legacy).toMatch(/^ml-infra:serve\.loadBalancer\.sslPolicy = "ELBSecurityPolicy-TLS-1-0-2015-04": is not a current TLS policy \(it admits TLS 1\.0 or 1\.1/);
        expect(legacy).toContain(`use ${DEFAULT_TLS_POLICY} (the default)`);
        expect(configProblems(stack({ protocol: "ftp" }), "dev")).toEqual([expect.stringMatching(/^ml-infra:serve\.loadBalancer\.protocol = "ftp": .*"https".*"http"/)]);
    });
});

describe("tlsPolicyProblem", () => {
    it.each([
        "ELBSecurityPolicy-TLS13-1-2-2021-06",
        "ELBSecurityPolicy-TLS13-1-2-Res-2021-06",
        "ELBSecurityPolicy-TLS13-1-2-Ext0-2021-06",
        "ELBSecurityPolicy-TLS13-1-2-Ext2-2021-06",
        "ELBSecurityPolicy-TLS13-1-2-Res-FIPS-2023-04",
        "ELBSecurityPolicy-TLS13-1-2-PQ-2025-09",
        "ELBSecurityPolicy-TLS13-1-3-FIPS-2023-04",
        "ELBSecurityPolicy-TLS-1-2-2017-01",
        "ELBSecurityPolicy-TLS-1-2-Ext-2018-06",
        "ELBSecurityPolicy-FS-1-2-2019-08",
        "ELBSecurityPolicy-FS-1-2-Res-2019-08",
    ])("admits %s (oldest protocol TLS 1.2)", (name) => {
        expect(tlsPolicyProblem(name)).toBeUndefined();
    });
    it.each([
        "ELBSecurityPolicy-2016-08",
        "ELBSecurityPolicy-2015-05",
        "ELBSecurityPolicy-TLS-1-0-2015-04",
        "ELBSecurityPolicy-TLS-1-1-2017-01",
        "ELBSecurityPolicy-FS-2018-06",
        "ELBSecurityPolicy-FS-1-1-2019-08",
        "ELBSecurityPolicy-TLS13-1-0-2021-06",
        "ELBSecurityPolicy-TLS13-1-1-2021-06",
        "ELBSecurityPolicy-TLS13-1-0-FIPS-2023-04",
        "ELBSecurityPolicy-TLS-1-2",
        "elbsecuritypolicy-tls13-1-2-2021-06",
        "",
    ])("refuses %j", (name) => {
        expect(tlsPolicyProblem(name)).toMatch(/^is not (a current TLS policy \(it admits TLS 1\.0 or 1\.1, or is not one of the TLS 1\.2\+ families\)|an ELB TLS policy); use ELBSecurityPolicy-TLS13-1-2-2021-06 \(the default\)/);
    });
});

describe("the listener the program makes", () => {
    const listenersOf = async (lb: unknown) => {
        const ev = await evaluate("dev", { config: stack(lb) });
        return { ev, listeners: ev.ofType("aws:lb/listener:Listener") };
    };

    it("serves HTTPS on 443 with the certificate and the default TLS policy, and passes the pack", async () => {
        const { ev, listeners } = await listenersOf({ certificateArn: CERT });
        expect(listeners).toHaveLength(1);
        expect(listeners[0].inputs).toMatchObject({ port: 443, protocol: "HTTPS", certificateArn: CERT, sslPolicy: DEFAULT_TLS_POLICY });
        expect((listeners[0].inputs.tags as Record<string, string>)[PLAIN_HTTP_TAG]).toBeUndefined();
        expect(runPolicies(ev.resources.map(policyResourceOf))).toEqual([]);
    });

    it("serves plain HTTP on 80 only when asked, marked so on the listener; without the mark the pack refuses it twice (ours and AWSGuard's)", async () => {
        const { ev, listeners } = await listenersOf({ protocol: "http" });
        expect(listeners).toHaveLength(1);
        expect(listeners[0].inputs).toMatchObject({ port: 80, protocol: "HTTP", tags: expect.objectContaining({ [PLAIN_HTTP_TAG]: "true" }) });
        expect(listeners[0].inputs.certificateArn).toBeUndefined();
        expect(listeners[0].inputs.sslPolicy).toBeUndefined();
        const resources = ev.resources.map(policyResourceOf);
        expect(runPolicies(resources)).toEqual([]);
        const unmarked = resources.map((r) => (r.type === "aws:lb/listener:Listener" ? { ...r, props: { ...r.props, tags: {} } } : r));
        expect(runPolicies(unmarked).map((v) => v.policy).sort()).toEqual(["alb-http-to-https-redirection", "lb-listeners-https"]);
    });
});
