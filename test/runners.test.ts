/**
 * Build runners: the `build.runners` config and its cross-field checks, the
 * IAM documents, and BuildRunnerPool under mocks for every config in
 * RUNNER_CASES (the integrator adds each stack that builds).
 */
import { parse as parseToml } from "smol-toml";
import { describe, expect, it } from "vitest";
import { parse as parseYaml } from "yaml";
import { BUILDKITD_TOML_PATH, TLS_PATHS } from "../components/runners/buildkitd";
import { ec2AssumeRolePolicy, runnerPolicy } from "../components/runners/iam";
import type { PolicyDocument, PolicyStatement } from "../components/shared/iam";
import { parseRegistryHost } from "../components/shared/image-refs";
import { BuildRunnerPool, IDLE_EXPRESSION, MAX_POOL_NAME_LENGTH, type RunnerSummary, ciIngressSources, multiArchBuilder, runnerSummaries } from "../components/runners/pool";
import { checkRunners } from "../components/runners/checks";
import { DEFAULT_BUILDKIT_IMAGE } from "../components/runners/schema";
import { checkTargetsOnPools } from "../components/build/checks";
import { DEFAULT_AMI_PARAMETERS, type RunnersConfig, runnersSchema } from "../components/runners/schema";
import { isGraviton, isNvidiaX86 } from "../components/shared/instance-types";
import { CATALOG, POOLS, type HardwareTarget, type Pool, resolveTarget } from "../components/shared/hardware";
import { pullThroughPrefixes } from "../components/registry/pullthrough";
import { registrySectionSchema } from "../components/registry/schema";
import { type Evaluation, REGISTRY_HOST, type Registered, runUnderMocks, stackFileConfig, stackNames } from "./harness";

const TAGS = { project: "ml-infra", stack: "build", "cost-center": "ml-platform", "managed-by": "pulumi" };
/** The project's repository namespace: the runners push under it only. */
const PROJECT_REPOSITORIES = "arn:aws:ecr:us-east-1:123456789012:repository/ml/*";
const catalogTargets = (): HardwareTarget[] => Object.entries(CATALOG).map(([n, spec]) => resolveTarget(n, spec));

function problems(raw: unknown, prefixes: readonly string[] = ["docker-hub"]): string[] {
    const out: string[] = [];
    checkRunners(runnersSchema.parse(raw), prefixes, (keys, message) => out.push(`${keys.join(".")}: ${message}`));
    return out;
}

/** Statements whose resource is `*`. */
function unscopedStatements(doc: PolicyDocument): PolicyStatement[] {
    return doc.Statement.filter((s) => [s.Resource ?? []].flat().includes("*"));
}

const CI = { ciSources: { cidrs: ["10.99.0.0/16"] } };

// ------------------------------------------------------------------ config

describe("build.runners config", () => {
    it("fills every default", () => {
        const cfg = runnersSchema.parse({ ...CI, pools: { arm64: {} } });
        expect(cfg).toMatchObject({ port: 1234, buildkitImage: DEFAULT_BUILDKIT_IMAGE, certificateValidityDays: 365, logRetentionDays: 30 });
        expect(cfg.ciSources.securityGroupIds).toEqual([]);
        expect(cfg.pools.arm64).toMatchObject({ maxSize: 2, onDemandBaseCapacity: 1, onDemandPercentageAboveBaseCapacity: 0, volumeGiB: 100, idleMinutes: 30, amiParameter: DEFAULT_AMI_PARAMETERS.arm64 });
        expect(cfg.pools.amd64).toBeUndefined();
        expect(cfg.scaleToZeroSchedule).toBeUndefined();
    });

    it("lists the allowed keys for an unknown one, and refuses a log retention CloudWatch does not offer", () => {
        const unknown = runnersSchema.safeParse({ ...CI, pools: { x86: {} } });
        expect(unknown.error?.issues[0]).toMatchObject({ path: ["pools"], message: "unknown key; allowed: amd64, arm64, gpu" });
        expect(runnersSchema.safeParse({ ...CI, logRetentionDays: 31 }).success).toBe(false);
    });

    it("the default pools pass their own checks", () => {
        expect(problems({ ...CI, pools: { amd64: {}, arm64: {}, gpu: {} } })).toEqual([]);
    });

    it("tells Graviton and NVIDIA x86 types apart", () => {
        for (const t of ["c6g.large", "c7gd.4xlarge", "c7gn.xlarge", "c8g.4xlarge", "m7g.2xlarge", "r7g.large", "t4g.small", "x2gd.xlarge", "im4gn.large", "a1.large"]) {
            expect(isGraviton(t), t).toBe(true);
        }
        for (const t of ["c7i.4xlarge", "c7a.large", "m7i-flex.large", "g5.xlarge", "g4dn.xlarge", "c6in.large", "x2idn.16xlarge"]) expect(isGraviton(t), t).toBe(false);
        for (const t of ["g4dn.xlarge", "g5.2xlarge", "g6.4xlarge", "g6e.xlarge", "p5.48xlarge"]) expect(isNvidiaX86(t), t).toBe(true);
        for (const t of ["g4ad.xlarge", "g5g.xlarge", "c7i.4xlarge", "inf2.xlarge"]) expect(isNvidiaX86(t), t).toBe(false);
    });

    it("reports non-Graviton types in the arm64 pool and non-GPU types in the gpu pool, by key path", () => {
        expect(problems({ ...CI, pools: { arm64: { instanceTypes: ["c7g.xlarge", "c7i.xlarge"] }, gpu: { instanceTypes: ["g5.xlarge", "g5g.xlarge"] } } })).toEqual([
            "pools.arm64.instanceTypes.1: the arm64 pool takes Graviton types only (c7g, c8g, m7g, r7g ...: a `g` after the generation digit)",
            "pools.gpu.instanceTypes.1: the gpu pool takes NVIDIA x86-64 types only; allowed families: g4dn, g5, g6, g6e, g6f, gr6, p3, p3dn, p4d, p4de, p5, p5e, p5en, p6-b200",
        ]);
        expect(problems({ ...CI, pools: { amd64: { instanceTypes: ["m7g.large"] } } })).toEqual([
            "pools.amd64.instanceTypes.0: the amd64 pool takes x86-64 types only; Graviton types belong to the arm64 pool",
        ]);
    });

    // The build stack checks these against the runners stack's outputs (before it registers anything).
    const onPools = (pools: Array<{ pool: string; volumeGiB: number }>) => {
        const out: string[] = [];
        const targets = Object.fromEntries(catalogTargets().map((t) => [t.name, t]));
        const images = [{ targets: Object.keys(targets) }] as unknown as Parameters<typeof checkTargetsOnPools>[0]["images"];
        checkTargetsOnPools({ images }, targets, pools.map((p) => ({ ...p, builder: `ml-${p.pool}` })), "acme/ml-infra/runners", (keys, m) => out.push(`${keys.join(".")}: ${m}`));
        return out;
    };

    it("requires >= 200 GB on the pool that builds a BUILD_FROM_SOURCE=true target (the build stack's check)", () => {
        const all = [{ pool: "arm64", volumeGiB: 100 }, { pool: "gpu", volumeGiB: 200 }];
        expect(onPools([{ pool: "amd64", volumeGiB: 150 }, ...all])).toEqual([
            "images.0.targets.4: target cuda11-source builds from source (BUILD_FROM_SOURCE=true) and needs at least 200 GiB; the amd64 pool of runners stack acme/ml-infra/runners has 150 (runners.pools.amd64.volumeGiB)",
        ]);
        expect(onPools([{ pool: "amd64", volumeGiB: 200 }, ...all])).toEqual([]);
    });

    it("requires every pool an image target builds on (the build stack's check)", () => {
        expect(onPools([{ pool: "amd64", volumeGiB: 300 }])).toEqual([
            "images.0.targets.2: target arm64-neon builds on the arm64 pool, which runners stack acme/ml-infra/runners does not have (it has: amd64); add runners.pools.arm64 there",
            "images.0.targets.3: target cuda12 builds on the gpu pool, which runners stack acme/ml-infra/runners does not have (it has: amd64); add runners.pools.gpu there",
        ]);
    });

    it("needs no in-VPC caller (CI uses the SSM tunnel), never the whole internet, a real time zone and a matching AMI", () => {
        expect(problems({ pools: { amd64: {} } })).toEqual([]);
        expect(problems({ ciSources: { cidrs: ["0.0.0.0/0"] } })).toEqual([
            "ciSources.cidrs.0: is the whole internet; name the callers' networks; CI outside the VPC reaches the pools through the SSM tunnel and needs no range",
        ]);
        expect(problems({ ciSources: { cidrs: ["52.0.0.0/8"] } })[0]).toMatch(/^ciSources\.cidrs\.0: is public address space/);
        expect(problems({ ...CI, scaleToZeroSchedule: { timeZone: "Mars/Olympus", recurrences: ["0 20 * * *"] } })).toEqual([
            "scaleToZeroSchedule.timeZone: must be an IANA time zone such as Europe/Berlin or UTC",
        ]);
        expect(problems({ ...CI, pools: { arm64: { amiParameter: DEFAULT_AMI_PARAMETERS.amd64 }, gpu: { amiParameter: DEFAULT_AMI_PARAMETERS.amd64 } } })).toEqual([
            "pools.arm64.amiParameter: the arm64 pool needs an arm64 AMI parameter",
            "pools.gpu.amiParameter: the gpu pool needs a GPU AMI (NVIDIA driver), e.g. the Deep Learning Base OSS NVIDIA driver AMI",
        ]);
        expect(problems({ ...CI, pools: { gpu: { volumeGiB: 60, maxSize: 1, onDemandBaseCapacity: 2 } } })).toEqual([
            "pools.gpu.onDemandBaseCapacity: exceeds maxSize (1)",
            "pools.gpu.volumeGiB: the gpu pool needs at least 120 GiB (the AMI plus room for BuildKit)",
        ]);
    });
});

// --------------------------------------------------------------------- IAM

describe("runner IAM", () => {
    const doc = runnerPolicy({
        registry: parseRegistryHost(REGISTRY_HOST),
        repositoryPrefix: "ml",
        pullThroughPrefixes: ["quay", "docker-hub"],
        logGroupArn: "arn:aws:logs:us-east-1:123456789012:log-group:/ml-infra/build/buildkit/runners-amd64",
        serverKeyParameterArn: "arn:aws:ssm:us-east-1:123456789012:parameter/ml-infra/build/buildkit/runners-amd64/server-key",
    });

    it("scopes push/pull to the project's namespace and pull-through to <prefix>/*", () => {
        const bySid = Object.fromEntries(doc.Statement.map((s) => [s.Sid, s]));
        expect(bySid.EcrPushPullProjectRepositories.Resource).toEqual([PROJECT_REPOSITORIES]);
        expect(bySid.EcrPushPullProjectRepositories.Action).toContain("ecr:PutImage");
        expect(bySid.EcrPullThroughCache.Resource).toEqual([
            "arn:aws:ecr:us-east-1:123456789012:repository/docker-hub/*",
            "arn:aws:ecr:us-east-1:123456789012:repository/quay/*",
        ]);
        expect(bySid.EcrPullThroughCache.Action).not.toContain("ecr:PutImage");
    });

    it("has no wildcard resource but ecr:GetAuthorizationToken", () => {
        expect(unscopedStatements(doc).map((s) => s.Action)).toEqual([["ecr:GetAuthorizationToken"]]);
        expect(() => runnerPolicy({ registry: parseRegistryHost(REGISTRY_HOST), repositoryPrefix: "docker-hub", pullThroughPrefixes: ["docker-hub"], logGroupArn: "l", serverKeyParameterArn: "p" })).toThrow(/also a pull-through prefix/);
    });

    it("reads the partition from the registry host and lets only EC2 assume the role", () => {
        expect(parseRegistryHost("123456789012.dkr.ecr.cn-north-1.amazonaws.com.cn")).toEqual({ account: "123456789012", region: "cn-north-1", partition: "aws-cn", dnsSuffix: "amazonaws.com.cn" });
        expect(() => parseRegistryHost("ghcr.io")).toThrow(/not an ECR registry host/);
        expect(ec2AssumeRolePolicy(parseRegistryHost(REGISTRY_HOST)).Statement).toEqual([
            { Sid: "Ec2Assume", Effect: "Allow", Principal: { Service: "ec2.amazonaws.com" }, Action: ["sts:AssumeRole"] },
        ]);
    });
});

// ------------------------------------------------------------ under mocks

interface RunnerCase {
    readonly name: string;
    /** The raw `runners` section. */
    readonly runners: Record<string, unknown>;
    readonly pullThroughPrefixes: readonly string[];
}

/** The `runners` section of every stack file that has one, as the program would pass it. */
function stackCases(): RunnerCase[] {
    return stackNames().flatMap((stack) => {
        const config = stackFileConfig(stack);
        const runners = config["ml-infra:runners"] as Record<string, unknown> | undefined;
        if (!runners) return [];
        const registry = registrySectionSchema.parse(config["ml-infra:registry"] ?? {});
        return [{ name: `stack ${stack}`, runners, pullThroughPrefixes: pullThroughPrefixes(registry.pullThrough) }];
    });
}

/** Every stack that builds (from stacks/), and hand-made shapes beside them. */
export const RUNNER_CASES: readonly RunnerCase[] = [
    ...stackCases(),
    {
        name: "build stack shape: three pools, CI group and range, off-hours schedule",
        runners: {
            ciSources: { securityGroupIds: ["sg-0123456789abcdef0"], cidrs: ["10.99.0.0/16"] },
            scaleToZeroSchedule: { timeZone: "Europe/Berlin", recurrences: ["0 20 * * MON-FRI", "0 8 * * SAT"] },
            pools: { amd64: {}, arm64: {}, gpu: {} },
        },
        pullThroughPrefixes: ["docker-hub", "ecr-public", "github", "quay"],
    },
    {
        name: "CPU pools only, CIDR sources, other port and idle time",
        runners: {
            port: 8372,
            ciSources: { cidrs: ["10.20.0.0/24", "10.21.0.0/24"] },
            pools: { amd64: { volumeGiB: 300, maxSize: 4, idleMinutes: 15 }, arm64: { instanceTypes: ["c7g.8xlarge", "c8g.8xlarge"], onDemandBaseCapacity: 0 } },
        },
        pullThroughPrefixes: ["docker-hub", "ecr-public"],
    },
    {
        name: "GPU pool only, security group source",
        runners: {
            ciSources: { securityGroupIds: ["sg-0fedcba9876543210"] },
            pools: { gpu: { instanceTypes: ["g6e.xlarge", "g6.4xlarge"], volumeGiB: 300, maxSize: 1 } },
        },
        pullThroughPrefixes: ["docker-hub"],
    },
];

interface Deployed {
    readonly ev: Evaluation;
    readonly runners: RunnersConfig;
    readonly pools: readonly Pool[];
}

const deployed = new Map<RunnerCase, Promise<Deployed>>();

/** Each case is evaluated once; its tests read the same evaluation. */
function deployCase(c: RunnerCase): Promise<Deployed> {
    let d = deployed.get(c);
    if (!d) {
        d = evaluateCase(c);
        deployed.set(c, d);
    }
    return d;
}

async function evaluateCase(c: RunnerCase): Promise<Deployed> {
    const runners = runnersSchema.parse(c.runners);
    const pools = POOLS.filter((p) => runners.pools[p] !== undefined);
    const ev = await runUnderMocks("build", {}, () => {
        const created = pools.map(
            (pool) =>
                new BuildRunnerPool(`runners-${pool}`, {
                    pool,
                    runners,
                    vpcId: "vpc-0123456789abcdef0",
                    privateSubnetIds: ["subnet-0123456789abcdef0", "subnet-0123456789abcdef1"],
                    repositoryPrefix: "ml",
                    pullThroughPrefixes: c.pullThroughPrefixes,
                    registryHost: REGISTRY_HOST,
                    tags: TAGS,
                }),
        );
        return { runners: runnerSummaries(created), multiArch: multiArchBuilder(created) };
    });
    return { ev, runners, pools };
}

const one = (ev: Evaluation, type: string, name: string): Registered => {
    const found = ev.ofType(type).filter((r) => r.name === name);
    expect(found, `${type} ${name}`).toHaveLength(1);
    return found[0];
};
const LT = "aws:ec2/launchTemplate:LaunchTemplate";
const ASG = "aws:autoscaling/group:Group";
const INGRESS = "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule";
const EGRESS = "aws:vpc/securityGroupEgressRule:SecurityGroupEgressRule";
const userDataOf = (lt: Registered) => parseYaml(Buffer.from(String(lt.inputs.userData), "base64").toString("utf8")) as { write_files: Array<{ path: string; content?: string }> };

describe.each(RUNNER_CASES)("BuildRunnerPool: $name", (c) => {
    it("gives no runner a public IP, requires IMDSv2 with hop limit 1, and has no SSH key", async () => {
        const { ev, pools } = await deployCase(c);
        for (const pool of pools) {
            const lt = one(ev, LT, `runners-${pool}-lt`).inputs;
            expect(lt.networkInterfaces).toEqual([expect.objectContaining({ associatePublicIpAddress: "false", securityGroups: [`runners-${pool}-sg-id`] })]);
            expect(lt.metadataOptions).toMatchObject({ httpEndpoint: "enabled", httpTokens: "required", httpPutResponseHopLimit: 1 });
            expect(lt.keyName).toBeUndefined();
            expect(lt.vpcSecurityGroupIds).toBeUndefined();
        }
    });

    it("encrypts every volume (gp3, sized per pool)", async () => {
        const { ev, pools, runners } = await deployCase(c);
        for (const pool of pools) {
            const mappings = one(ev, LT, `runners-${pool}-lt`).inputs.blockDeviceMappings as Array<{ ebs: Record<string, unknown> }>;
            expect(mappings.length).toBeGreaterThan(0);
            for (const m of mappings) expect(m.ebs).toMatchObject({ encrypted: "true", volumeType: "gp3", volumeSize: runners.pools[pool]?.volumeGiB });
        }
    });

    it("opens only the buildkitd port, only from the configured in-VPC callers and the SSM tunnel's agent (through the load balancer)", async () => {
        const { ev, pools, runners } = await deployCase(c);
        const port = runners.port;
        for (const pool of pools) {
            const rules = ev.ofType(INGRESS).filter((r) => r.parent.endsWith(`::runners-${pool}`));
            for (const r of rules) expect(r.inputs).toMatchObject({ ipProtocol: "tcp", fromPort: port, toPort: port });
            const toLb = rules.filter((r) => r.inputs.securityGroupId === `runners-${pool}-lb-sg-id`);
            // The runners' own group: the SSM agent on a runner connects to the load balancer for the tunnel.
            expect(toLb.map((r) => r.inputs.cidrIpv4 ?? r.inputs.referencedSecurityGroupId).sort()).toEqual(
                [...runners.ciSources.cidrs, ...runners.ciSources.securityGroupIds, `runners-${pool}-sg-id`].sort(),
            );
            const toRunners = rules.filter((r) => r.inputs.securityGroupId === `runners-${pool}-sg-id`);
            expect(toRunners.map((r) => r.inputs.referencedSecurityGroupId)).toEqual([`runners-${pool}-lb-sg-id`]);
            expect(rules).toHaveLength(toLb.length + toRunners.length);
            const lbOut = ev.ofType(EGRESS).filter((r) => r.inputs.securityGroupId === `runners-${pool}-lb-sg-id`);
            expect(lbOut.map((r) => r.inputs)).toEqual([expect.objectContaining({ fromPort: port, toPort: port, referencedSecurityGroupId: `runners-${pool}-sg-id` })]);
            const nlb = one(ev, "aws:lb/loadBalancer:LoadBalancer", `runners-${pool}-nlb`).inputs;
            expect(nlb).toMatchObject({ internal: true, loadBalancerType: "network", securityGroups: [`runners-${pool}-lb-sg-id`] });
            expect(one(ev, "aws:lb/listener:Listener", `runners-${pool}-listener`).inputs).toMatchObject({ port, protocol: "TCP" });
        }
    });

    it("builds arm64 on Graviton types with the arm64 AMI, gpu on NVIDIA types with the GPU AMI", async () => {
        const { ev, pools, runners } = await deployCase(c);
        for (const pool of pools) {
            const lt = one(ev, LT, `runners-${pool}-lt`).inputs;
            expect(lt.imageId).toBe(`resolve:ssm:${runners.pools[pool]?.amiParameter}`);
            const policy = one(ev, ASG, `runners-${pool}-asg`).inputs.mixedInstancesPolicy as {
                launchTemplate: { overrides: Array<{ instanceType: string }> };
            };
            const types = policy.launchTemplate.overrides.map((o) => o.instanceType);
            expect(types).toEqual([...(runners.pools[pool]?.instanceTypes ?? [])].sort());
            if (pool === "arm64") {
                expect(lt.imageId).toMatch(/arm64/);
                for (const t of types) expect(isGraviton(t), t).toBe(true);
            } else {
                expect(lt.imageId).toMatch(/x86_64/);
                for (const t of types) expect(isGraviton(t), t).toBe(false);
            }
            if (pool === "gpu") {
                expect(lt.imageId).toBe(`resolve:ssm:${DEFAULT_AMI_PARAMETERS.gpu}`);
                for (const t of types) expect(isNvidiaX86(t), t).toBe(true);
            }
        }
    });

    it("scopes the role's ECR statements to the project's repositories; SSM core is the managed policy", async () => {
        const { ev, pools } = await deployCase(c);
        for (const pool of pools) {
            const policy = JSON.parse(String(one(ev, "aws:iam/rolePolicy:RolePolicy", `runners-${pool}-policy`).inputs.policy)) as Parameters<typeof unscopedStatements>[0];
            const push = policy.Statement.find((s) => s.Sid === "EcrPushPullProjectRepositories");
            expect(push?.Resource).toEqual([PROJECT_REPOSITORIES]);
            for (const s of policy.Statement.filter((st) => [st.Action].flat().some((a) => a.startsWith("ecr:") && a !== "ecr:GetAuthorizationToken"))) {
                for (const r of [s.Resource ?? []].flat()) {
                    expect(r === PROJECT_REPOSITORIES || c.pullThroughPrefixes.some((p) => r === `arn:aws:ecr:us-east-1:123456789012:repository/${p}/*`), r).toBe(true);
                }
            }
            expect(unscopedStatements(policy).map((s) => s.Action)).toEqual([["ecr:GetAuthorizationToken"]]);
            expect(one(ev, "aws:iam/rolePolicyAttachment:RolePolicyAttachment", `runners-${pool}-ssm-core`).inputs.policyArn).toBe(
                "arn:aws:iam::aws:policy/AmazonSSMManagedInstanceCore",
            );
        }
    });

    it("renders a buildkitd.toml that parses and names the TLS files, the port and the mirror", async () => {
        const { ev, pools, runners } = await deployCase(c);
        for (const pool of pools) {
            const files = userDataOf(one(ev, LT, `runners-${pool}-lt`)).write_files;
            const toml = parseToml(String(files.find((f) => f.path === BUILDKITD_TOML_PATH)?.content)) as unknown as {
                grpc: { address: string[]; tls: Record<string, string> };
                registry: Record<string, { mirrors: string[] }>;
                worker: { oci: { "max-parallelism": number } };
            };
            expect(toml.grpc.tls).toEqual({ cert: TLS_PATHS.cert, key: TLS_PATHS.key, ca: TLS_PATHS.ca });
            expect(toml.grpc.address).toContain(`tcp://0.0.0.0:${runners.port}`);
            expect(toml.registry["docker.io"].mirrors).toEqual([`${REGISTRY_HOST}/docker-hub`]);
            expect(toml.worker.oci["max-parallelism"]).toBe(runners.pools[pool]?.maxParallelism);
        }
    });

    it("starts at zero, scales out to maxSize on spot with an on-demand base, and leaves desired capacity to CI", async () => {
        const { ev, pools, runners } = await deployCase(c);
        for (const pool of pools) {
            const cfg = runners.pools[pool];
            const asg = one(ev, ASG, `runners-${pool}-asg`).inputs;
            expect(asg).toMatchObject({ minSize: 0, maxSize: cfg?.maxSize, capacityRebalance: true, healthCheckType: "ELB", targetGroupArns: [expect.stringContaining(`runners-${pool}-tg`)] });
            // A `pulumi up` during a build must not reset the capacity CI raised.
            expect(asg.desiredCapacity).toBeUndefined();
            expect(asg.mixedInstancesPolicy).toMatchObject({
                instancesDistribution: {
                    onDemandBaseCapacity: cfg?.onDemandBaseCapacity,
                    onDemandPercentageAboveBaseCapacity: cfg?.onDemandPercentageAboveBaseCapacity,
                    spotAllocationStrategy: "price-capacity-optimized",
                },
            });
            expect(asg.enabledMetrics).toContain("GroupDesiredCapacity");
        }
    });

    it("scales back to zero after the configured idle minutes, and on schedule when asked", async () => {
        const { ev, pools, runners } = await deployCase(c);
        for (const pool of pools) {
            const policy = one(ev, "aws:autoscaling/policy:Policy", `runners-${pool}-scale-to-zero`).inputs;
            expect(policy).toMatchObject({ adjustmentType: "ExactCapacity", scalingAdjustment: 0, autoscalingGroupName: `ml-infra-build-runners-${pool}` });
            const alarm = one(ev, "aws:cloudwatch/metricAlarm:MetricAlarm", `runners-${pool}-idle`).inputs;
            const idle = runners.pools[pool]?.idleMinutes;
            expect(alarm).toMatchObject({ evaluationPeriods: idle, datapointsToAlarm: idle, threshold: 1, comparisonOperator: "GreaterThanOrEqualToThreshold" });
            expect(alarm.alarmActions).toEqual([expect.stringContaining(`runners-${pool}-scale-to-zero`)]);
            const queries = alarm.metricQueries as Array<{ expression?: string; metric?: { metricName: string } }>;
            expect(queries.find((q) => q.expression)?.expression).toBe(IDLE_EXPRESSION);
            expect(queries.map((q) => q.metric?.metricName).filter(Boolean).sort()).toEqual(["ActiveFlowCount", "GroupDesiredCapacity"]);
            const schedules = ev.ofType("aws:autoscaling/schedule:Schedule").filter((s) => s.parent.endsWith(`::runners-${pool}`));
            const wanted = runners.scaleToZeroSchedule;
            expect(schedules.map((s) => s.inputs.recurrence).sort()).toEqual([...(wanted?.recurrences ?? [])].sort());
            for (const s of schedules) expect(s.inputs).toMatchObject({ desiredCapacity: 0, minSize: 0, maxSize: -1, timeZone: wanted?.timeZone });
        }
    });

    it("tags every taggable resource, parents and names every child after its pool", async () => {
        const { ev, pools } = await deployCase(c);
        const untaggable = new Set([
            "aws:iam/rolePolicy:RolePolicy",
            "aws:iam/rolePolicyAttachment:RolePolicyAttachment",
            "aws:autoscaling/policy:Policy",
            "aws:autoscaling/schedule:Schedule",
        ]);
        for (const pool of pools) {
            const component = one(ev, "ml-infra:build:BuildRunnerPool", `runners-${pool}`);
            const children = ev.resources.filter((r) => r.parent === component.urn);
            expect(children.length).toBeGreaterThan(20);
            for (const r of children) {
                expect(r.name.startsWith(`runners-${pool}-`), r.name).toBe(true);
                if (r.type.startsWith("tls:") || untaggable.has(r.type)) continue;
                if (r.type === ASG) {
                    const tags = Object.fromEntries((r.inputs.tags as Array<{ key: string; value: string; propagateAtLaunch: boolean }>).map((t) => [t.key, t.value]));
                    expect(tags).toMatchObject(TAGS);
                } else {
                    expect(r.inputs.tags, `${r.type} ${r.name}`).toMatchObject({ ...TAGS, "ml-infra:pool": pool });
                }
            }
            const specs = one(ev, LT, `runners-${pool}-lt`).inputs.tagSpecifications as Array<{ resourceType: string; tags: Record<string, string> }>;
            expect(specs.map((s) => s.resourceType)).toEqual(["instance", "network-interface", "volume"]);
            for (const s of specs) expect(s.tags).toMatchObject(TAGS);
        }
    });

    it("is deterministic: the same config gives identical resource inputs", async () => {
        const first = await deployCase(c);
        const second = await evaluateCase(c); // a fresh evaluation, not the cached one
        const strip = (ev: Evaluation) => ev.resources.map((r) => ({ type: r.type, name: r.name, parent: r.parent, inputs: r.inputs }));
        expect(strip(second.ev)).toEqual(strip(first.ev));
    });

    it("exports per pool the builder, endpoint and CI commands, and the multi-node builder when both CPU pools exist", async () => {
        const { ev, pools, runners } = await deployCase(c);
        const summaries = ev.outputs.runners as Record<string, RunnerSummary>;
        expect(Object.keys(summaries)).toEqual([...pools]);
        for (const pool of pools) {
            const s = summaries[pool];
            expect(s.builder).toBe(`ml-${pool}`);
            expect(s.endpoint).toMatch(new RegExp(`^tcp://.*:${runners.port}$`));
            expect(s.scaleUpCommand).toContain(`--auto-scaling-group-name 'ml-infra-build-runners-${pool}' --desired-capacity 1`);
            expect(s.waitHealthyCommand).toContain("describe-target-health");
            expect(s.buildxCreateCommands[1]).toMatch(new RegExp(`^docker buildx create --name ml-${pool} --driver remote `));
            expect(s.certInstallCommands.join("\n")).toContain(`.${pool}.clientKey`);
        }
        const both = pools.includes("amd64") && pools.includes("arm64");
        const multi = ev.outputs.multiArch as { name: string; commands: string[] } | undefined;
        if (both) {
            expect(multi?.name).toBe("ml-multiarch");
            expect(multi?.commands.filter((cmd) => cmd.startsWith("docker buildx create"))).toHaveLength(2);
        } else {
            expect(multi).toBeUndefined();
        }
    });
});

describe("BuildRunnerPool refuses contradictory args before creating anything", () => {
    const runners = runnersSchema.parse({ ...CI, pools: { amd64: {}, arm64: { instanceTypes: ["c7i.large"] } } });
    const args = (pool: Pool, overrides: Partial<ConstructorParameters<typeof BuildRunnerPool>[1]> = {}) => ({
        pool,
        runners,
        vpcId: "vpc-0123456789abcdef0",
        privateSubnetIds: ["subnet-0123456789abcdef0"],
        repositoryPrefix: "ml",
        pullThroughPrefixes: ["docker-hub"],
        registryHost: REGISTRY_HOST,
        tags: TAGS,
        ...overrides,
    });
    const attempt = (name: string, a: ConstructorParameters<typeof BuildRunnerPool>[1]) =>
        runUnderMocks("build", {}, () => {
            new BuildRunnerPool(name, a);
        });

    it.each([
        ["an unconfigured pool", "runners-gpu", args("gpu"), /build\.runners\.pools\.gpu is not configured/],
        ["a name too long for the load balancer", "x".repeat(MAX_POOL_NAME_LENGTH + 1), args("amd64"), /longer than 20 characters/],
        ["an unknown pull-through prefix", "runners-amd64", args("amd64", { pullThroughPrefixes: ["dockerhub"] }), /unknown pull-through prefix "dockerhub"/],
    ] as const)("%s", async (_what, name, a, message) => {
        await expect(attempt(name, a)).rejects.toThrow(message);
    });

    it("leaves config checks to the config boundary: a non-Graviton arm64 type, a buildkit image runners cannot pull", () => {
        expect(problems({ ...CI, pools: { arm64: { instanceTypes: ["c7i.large"] } } })).toContain(
            "pools.arm64.instanceTypes.0: the arm64 pool takes Graviton types only (c7g, c8g, m7g, r7g ...: a `g` after the generation digit)",
        );
        expect(problems({ ...CI, pools: { amd64: {} } }, ["ecr-public"]).join("\n")).toMatch(/^buildkitImage: .*needs the "docker-hub" pull-through rule/m);
        expect(problems({ ...CI, buildkitImage: "docker.io/moby/buildkit:v0.23.2", pools: { amd64: {} } })).toEqual([
            expect.stringMatching(/^buildkitImage: buildkit image docker\.io\/moby\/buildkit:v0\.23\.2 is a mutable tag: a runner would run as root whatever it points to at boot; pin it as repo:tag@sha256:<64 hex digits>/),
        ]);
    });

    it("pins the default BuildKit image by digest, with its tag for the pull-through cache's first pull", () => {
        expect(DEFAULT_BUILDKIT_IMAGE).toMatch(/^docker\.io\/moby\/buildkit:v0\.23\.2@sha256:[a-f0-9]{64}$/);
    });

    it("turns CI sources into stably named rules whatever their order", () => {
        const a = ciIngressSources({ securityGroupIds: ["sg-0b", "sg-0a"], cidrs: ["10.1.0.0/16"] });
        const b = ciIngressSources({ securityGroupIds: ["sg-0a", "sg-0b"], cidrs: ["10.1.0.0/16"] });
        expect(a).toEqual(b);
        expect(a.map((s) => s.key)).toEqual(["cidr-10-1-0-0-16", "sg-0a", "sg-0b"]);
    });
});
