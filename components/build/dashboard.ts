/**
 * Build visibility: a CloudWatch dashboard of the build stack, with per
 * runner pool the instances in service, CPU and disk use of the BuildKit
 * volume, and per repository the push count. Pushes are counted by one
 * EventBridge rule per repository matching ECR's successful PUSH events: the
 * rule's own MatchedEvents metric is the count (no target, nothing stored).
 */
import * as aws from "@pulumi/aws";
import * as pulumi from "@pulumi/pulumi";
import { RUNNER_METRICS_NAMESPACE } from "../runners/boot";
import type { Pool } from "../shared/hardware";

export interface DashboardPool {
    readonly pool: Pool;
    readonly autoScalingGroupName: string;
}

export interface DashboardRepository {
    readonly name: string;
    /** EventBridge rule counting its pushes. */
    readonly ruleName: string;
}

type Metric = readonly (string | Record<string, unknown>)[];

interface Widget {
    readonly type: "metric" | "text";
    readonly x: number;
    readonly y: number;
    readonly width: number;
    readonly height: number;
    readonly properties: Record<string, unknown>;
}

export interface DashboardBody {
    readonly widgets: readonly Widget[];
}

/** ECR's event for a successful push to one repository. */
export function pushEventPattern(repository: string): Record<string, unknown> {
    return {
        source: ["aws.ecr"],
        "detail-type": ["ECR Image Action"],
        detail: { "action-type": ["PUSH"], result: ["SUCCESS"], "repository-name": [repository] },
    };
}

/** The dashboard as a typed object (JSON.stringify it for the resource). Pools and repositories in sorted order. */
export function dashboardBody(o: {
    readonly region: string;
    readonly pools: readonly DashboardPool[];
    readonly repositories: readonly DashboardRepository[];
}): DashboardBody {
    const pools = [...o.pools].sort((a, b) => a.pool.localeCompare(b.pool));
    const repositories = [...o.repositories].sort((a, b) => a.name.localeCompare(b.name));
    const widgets: Widget[] = [];
    let y = 0;
    const metric = (title: string, metrics: Metric[], x: number, stat = "Average"): Widget => ({
        type: "metric",
        x,
        y,
        width: 8,
        height: 6,
        properties: { title, region: o.region, view: "timeSeries", stacked: false, period: 300, stat, metrics },
    });
    for (const p of pools) {
        const asg = p.autoScalingGroupName;
        widgets.push(
            metric(`${p.pool} pool: instances in service`, [["AWS/AutoScaling", "GroupInServiceInstances", "AutoScalingGroupName", asg]], 0, "Maximum"),
            metric(`${p.pool} pool: CPU %`, [["AWS/EC2", "CPUUtilization", "AutoScalingGroupName", asg]], 8),
            metric(`${p.pool} pool: BuildKit volume used %`, [[RUNNER_METRICS_NAMESPACE, "disk_used_percent", "AutoScalingGroupName", asg]], 16, "Maximum"),
        );
        y += 6;
    }
    if (repositories.length > 0) {
        widgets.push({
            type: "metric",
            x: 0,
            y,
            width: 24,
            height: 6,
            properties: {
                title: "pushes per repository",
                region: o.region,
                view: "timeSeries",
                stacked: false,
                period: 3600,
                stat: "Sum",
                metrics: repositories.map((r) => ["AWS/Events", "MatchedEvents", "RuleName", r.ruleName, { label: r.name }]),
            },
        });
    }
    return { widgets };
}

export interface BuildDashboardArgs {
    /** AWS region of the metrics (config `aws:region`). */
    readonly region: string;
    /** Runner pools: kind and Auto Scaling group name (BuildRunnerPool). May be empty. */
    readonly pools: ReadonlyArray<{ readonly pool: Pool; readonly autoScalingGroupName: pulumi.Input<string> }>;
    /** ECR repositories whose pushes are counted (names as in ECR, e.g. ml/inference). */
    readonly repositories: readonly string[];
    /** Tags put on every taggable resource. */
    readonly tags: Readonly<Record<string, string>>;
}

export class BuildDashboard extends pulumi.ComponentResource {
    public readonly dashboardName: pulumi.Output<string>;

    constructor(name: string, args: BuildDashboardArgs, opts?: pulumi.ComponentResourceOptions) {
        super("ml-infra:build:BuildDashboard", name, {}, opts);
        const stack = pulumi.getStack();
        const repositories = [...args.repositories].sort().map((repository) => {
            const slug = repository.replace(/[^A-Za-z0-9]+/g, "-");
            const rule = new aws.cloudwatch.EventRule(
                `${name}-push-${slug}`,
                {
                    name: `ml-infra-${stack}-push-${slug}`.slice(0, 64),
                    description: `counts pushes to ${repository} (MatchedEvents)`,
                    eventPattern: JSON.stringify(pushEventPattern(repository)),
                    tags: args.tags,
                },
                { parent: this },
            );
            return { name: repository, ruleName: rule.name };
        });
        const body = pulumi
            .all([
                pulumi.all(args.pools.map((p) => pulumi.all([p.pool, p.autoScalingGroupName]))),
                pulumi.all(repositories.map((r) => pulumi.all([r.name, r.ruleName]))),
            ])
            .apply(([pools, repos]) =>
                JSON.stringify(
                    dashboardBody({
                        region: args.region,
                        pools: pools.map(([pool, autoScalingGroupName]) => ({ pool: pool as Pool, autoScalingGroupName })),
                        repositories: repos.map(([repoName, ruleName]) => ({ name: repoName, ruleName })),
                    }),
                ),
            );
        const dashboard = new aws.cloudwatch.Dashboard(
            `${name}-dashboard`,
            { dashboardName: `ml-infra-${stack}-build`, dashboardBody: body },
            { parent: this },
        );
        this.dashboardName = dashboard.dashboardName;
        this.registerOutputs({ dashboardName: this.dashboardName });
    }
}
