/** Build visibility: the dashboard names every pool and repository; pushes are counted per repository. */
import { beforeAll, describe, expect, it } from "vitest";
import { RUNNER_METRICS_NAMESPACE, cloudWatchAgentConfig } from "../components/runners/boot";
import type { BuildConfig } from "../components/build/schema";
import { dashboardBody, pushEventPattern } from "../components/build/dashboard";
import { type Evaluation, evaluate, stackFileConfig, awsBuildStackNames } from "./harness";

describe("dashboard body (pure)", () => {
    const body = dashboardBody({
        region: "us-east-1",
        pools: [
            { pool: "gpu", autoScalingGroupName: "asg-gpu" },
            { pool: "amd64", autoScalingGroupName: "asg-amd64" },
        ],
        repositories: [{ name: "ml/inference", ruleName: "rule-inference" }],
    });
    const text = JSON.stringify(body);

    it("has instances in service, CPU and BuildKit disk use for every pool, in pool order", () => {
        const titles = body.widgets.map((w) => String(w.properties.title));
        expect(titles.slice(0, 6)).toEqual([
            "amd64 pool: instances in service",
            "amd64 pool: CPU %",
            "amd64 pool: BuildKit volume used %",
            "gpu pool: instances in service",
            "gpu pool: CPU %",
            "gpu pool: BuildKit volume used %",
        ]);
        expect(text).toContain('["AWS/AutoScaling","GroupInServiceInstances","AutoScalingGroupName","asg-gpu"]');
        expect(text).toContain(`["${RUNNER_METRICS_NAMESPACE}","disk_used_percent","AutoScalingGroupName","asg-amd64"]`);
    });

    it("counts pushes per repository with the rule's MatchedEvents", () => {
        expect(text).toContain('["AWS/Events","MatchedEvents","RuleName","rule-inference",{"label":"ml/inference"}]');
        expect(pushEventPattern("ml/inference")).toEqual({
            source: ["aws.ecr"],
            "detail-type": ["ECR Image Action"],
            detail: { "action-type": ["PUSH"], result: ["SUCCESS"], "repository-name": ["ml/inference"] },
        });
    });

    it("collects the disk metric the dashboard reads, per Auto Scaling group", () => {
        const agent = cloudWatchAgentConfig() as { metrics: { namespace: string; append_dimensions: Record<string, string>; metrics_collected: { disk: { resources: string[] } } } };
        expect(agent.metrics.namespace).toBe(RUNNER_METRICS_NAMESPACE);
        expect(agent.metrics.append_dimensions.AutoScalingGroupName).toBe("${aws:AutoScalingGroupName}");
        expect(agent.metrics.metrics_collected.disk.resources).toEqual(["/"]);
    });
});

const buildStacks = awsBuildStackNames();

describe.each(buildStacks)("dashboard of build stack %s", (stack) => {
    let ev: Evaluation;
    const build = stackFileConfig(stack)["ml-infra:build"] as BuildConfig & { runners?: { pools: Record<string, unknown> } };
    beforeAll(async () => {
        ev = await evaluate(stack);
    });

    it("names every runner pool and every repository of the stack", () => {
        const dashboards = ev.ofType("aws:cloudwatch/dashboard:Dashboard");
        expect(dashboards).toHaveLength(1);
        const body = String(dashboards[0].inputs.dashboardBody);
        for (const pool of Object.keys(build.runners?.pools ?? {})) {
            const group = ev.ofType("aws:autoscaling/group:Group").find((g) => g.name === `runners-${pool}-asg`);
            expect(body).toContain(`${pool} pool: instances in service`);
            expect(body).toContain(String(group?.inputs.name));
        }
        for (const repo of ev.ofType("aws:ecr/repository:Repository")) expect(body).toContain(`"label":"${String(repo.inputs.name)}"`);
        const rules = ev.ofType("aws:cloudwatch/eventRule:EventRule");
        expect(rules).toHaveLength(ev.ofType("aws:ecr/repository:Repository").length);
    });

    it("ships runner metrics: the CloudWatch agent policy is attached to every pool's role", () => {
        const attachments = ev.ofType("aws:iam/rolePolicyAttachment:RolePolicyAttachment").map((a) => String(a.inputs.policyArn));
        const pools = Object.keys(build.runners?.pools ?? {}).length;
        expect(attachments.filter((a) => a.endsWith(":policy/CloudWatchAgentServerPolicy"))).toHaveLength(pools);
    });
});
