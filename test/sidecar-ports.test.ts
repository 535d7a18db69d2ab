/**
 * no-sidecar-port-ingress on the graph the program makes: a rule is judged
 * against the sidecars of the tasks in its own security group (linked through
 * Pulumi's property dependencies), so one service's server port is not refused
 * because another service has a sidecar on the same port number.
 */
import { describe, expect, it } from "vitest";
import { type PolicyResource, runPolicies } from "../policy/policies";
import { PROJECT, digestOf, refOf, REGISTRY } from "./fixtures";
import { type Evaluation, evaluate, policyResourceOf } from "./harness";

const METRICS_PORT = 13133; // the metrics-exporter sidecar's port (catalogue default)

/** Two pinned services: `a` serves on the metrics exporter's port; `b` runs a metrics exporter. */
function stack(): Record<string, unknown> {
    const service = (name: string, fields: Record<string, unknown>) => ({
        name,
        image: "inference",
        target: "cpu-avx2",
        ref: `${REGISTRY}/ml/inference@${digestOf(name)}`,
        model: { bucket: "ml-models-123456789012", prefix: `${name}/1` },
        ...fields,
    });
    return {
        [`${PROJECT}:network`]: { cidr: "10.0.0.0/16", availabilityZones: ["us-east-1a", "us-east-1b"], natGateways: "single" },
        [`${PROJECT}:serve`]: {
            requirePinned: true,
            clients: { cidrs: ["10.0.0.0/16"] },
            loadBalancer: { protocol: "http" },
            sidecarImages: { "model-sync": refOf("model-sync"), "metrics-exporter": refOf("metrics-exporter") },
            services: [service("a", { port: METRICS_PORT }), service("b", { sidecars: [{ kind: "metrics-exporter" }] })],
        },
    };
}

const rule = (ev: Evaluation, name: string) => {
    const r = ev.resources.find((x) => x.type === "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule" && x.name === name);
    if (!r) throw new Error(`no rule ${name}`);
    return r;
};

describe("sidecar ports on the program's own graph", () => {
    let ev: Evaluation;
    const resources = (): PolicyResource[] => ev.resources.map(policyResourceOf);

    it("passes service a's rule on its server port, which is service b's metrics-exporter port", async () => {
        ev = await evaluate("dev", { config: stack() });
        expect(rule(ev, "a-task-in-alb").inputs).toMatchObject({ fromPort: METRICS_PORT, toPort: METRICS_PORT });
        expect(runPolicies(resources())).toEqual([]);
    });

    it("flags the same port opened in b's own group", () => {
        const b = rule(ev, "b-task-in-alb");
        const opened = resources().map((r) => (r.urn === b.urn ? { ...r, props: { ...r.props, fromPort: METRICS_PORT, toPort: METRICS_PORT } } : r));
        expect(runPolicies(opened).map((v) => [v.policy, v.resource, v.message])).toEqual([["no-sidecar-port-ingress", b.urn, expect.stringMatching(new RegExp(`^admits port ${METRICS_PORT} of sidecar b-definition/metrics-exporter$`))]]);
    });

    it("judges a's rule against every sidecar when it cannot tell the rule's group", () => {
        const a = rule(ev, "a-task-in-alb");
        const unlinked = resources().map((r) => (r.urn === a.urn ? { ...r, propertyDependencies: {}, props: { ...r.props, securityGroupId: undefined } } : r));
        expect(runPolicies(unlinked).map((v) => v.resource)).toEqual([a.urn]);
    });
});
