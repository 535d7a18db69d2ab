/**
 * ServingCluster and InferenceService under Pulumi's mock runtime, driven by
 * one case per hardware kind (GPU, Graviton, x86 CPU) from the target catalog,
 * plus graph-wide invariants that also run on every environment stack once
 * index.ts builds the serving section.
 */
import { createHash } from "node:crypto";
import * as pulumi from "@pulumi/pulumi";
import { beforeAll, describe, expect, it } from "vitest";
import { SERVER_CONTAINER, SIDECAR_CATALOGUE, SIDECAR_KINDS, resolveSidecar } from "../components/serve/sidecars";
import { type PolicyDocument } from "../components/shared/iam";
import { BINDS_LABEL, SIDECAR_PORT_LABEL } from "../components/shared/labels";
import { capacityProviderName, deploymentPercents, ecsAgentConfig, ecsAmiParameter, ecsUserData, peerSuffix } from "../components/serve/ecs";
import { InferenceService } from "../components/serve/inference-service";
import { ServingCluster } from "../components/serve/serving-cluster";
import { type HardwareKind, hardwareKindsOf } from "../components/serve/hardware-kinds";
import { capacitySchema, clientsSchema, loadBalancerSchema, serviceFieldsSchema } from "../components/serve/schema";
import { CATALOG, type HardwareTarget, resolveTarget } from "../components/shared/hardware";
import {
    ACCOUNT,
    type Evaluation,
    REGION,
    REGISTRY_HOST,
    type Registered,
    evaluate,
    policyResourceOf,
    runUnderMocks,
    stackFileConfig,
    stackNames,
    collectRejections,
    configProblems,
} from "./harness";
import { SIDECAR_PORT_LABEL as POLICY_SIDECAR_PORT_LABEL, runPolicies } from "../policy/policies";
import { digestOf, refOf, sidecarImageOutputs } from "./fixtures";

// ------------------------------------------------------------------ fixtures

const TAGS = { project: "ml-infra", stack: "dev", "cost-center": "ml-platform", "managed-by": "pulumi" };
const CLUSTER = "ml-infra-dev";
const VPC = "vpc-0123456789abcdef0";
const SUBNETS = ["subnet-0aaaaaaaaaaaaaaaa", "subnet-0bbbbbbbbbbbbbbbb"];
const SECRET = "arn:aws:secretsmanager:us-east-1:123456789012:secret:ml/minio-AbCdEf";
const CLIENT_SG = "sg-0123456789abcdef0";
const CLIENT_CIDR = "10.0.0.0/16";

const target = (n: string): HardwareTarget => resolveTarget(n, CATALOG[n]);
const ref = (seed: string) => `${REGISTRY_HOST}/ml/inference@sha256:${createHash("sha256").update(seed).digest("hex")}`;

interface Case {
    readonly target: string;
    readonly kind: HardwareKind;
    readonly cpuArchitecture: "X86_64" | "ARM64";
    readonly ami: string;
    readonly gpus: number;
    readonly fields: Record<string, unknown>;
}

const CASES: readonly Case[] = [
    {
        target: "cuda12",
        kind: "gpu",
        cpuArchitecture: "X86_64",
        ami: "/aws/service/ecs/optimized-ami/amazon-linux-2023/gpu/recommended/image_id",
        gpus: 1,
        fields: {
            cpu: 3072,
            memory: 12288,
            sharedMemoryMiB: 2048,
            sidecars: [{ kind: "metrics-exporter" }, { kind: "tensorboard" }, { kind: "log-router" }],
        },
    },
    {
        target: "arm64-neon",
        kind: "arm64",
        cpuArchitecture: "ARM64",
        ami: "/aws/service/ecs/optimized-ami/amazon-linux-2023/arm64/recommended/image_id",
        gpus: 0,
        fields: {
            cpu: 2048,
            memory: 4096,
            replicas: 2,
            sidecars: [{ kind: "model-sync" }, { kind: "minio", secrets: { MINIO_ROOT_USER: `${SECRET}:user::`, MINIO_ROOT_PASSWORD: `${SECRET}:password::` } }],
        },
    },
    {
        target: "cpu-avx2",
        kind: "cpu",
        cpuArchitecture: "X86_64",
        ami: "/aws/service/ecs/optimized-ami/amazon-linux-2023/recommended/image_id",
        gpus: 0,
        fields: { environment: { LOG_LEVEL: "info", WORKERS: "4" } },
    },
];

const serviceName = (c: Case) => `svc-${c.target}`;

/** The stack's image of each sidecar kind (and of the model fetch: model-sync). */
const KIND_IMAGES: Readonly<Record<string, string>> = Object.fromEntries(SIDECAR_KINDS.map((k) => [k, refOf(SIDECAR_CATALOGUE[k].buildImage, `kind/${k}`)]));

/** Each sidecar's image by name, as the environment resolves it. */
function sidecarImagesOf(fields: Record<string, unknown>): Record<string, string> {
    const sidecars = serviceFieldsSchema.parse({ model: { bucket: "ml-models-1", prefix: "m" }, ...fields }).sidecars.map(resolveSidecar);
    return Object.fromEntries(sidecars.map((s) => [s.name, s.image ?? KIND_IMAGES[s.kind]]));
}

interface DeployOptions {
    readonly capacity?: unknown;
    readonly clients?: unknown;
    readonly loadBalancer?: unknown;
    readonly image?: (c: Case) => pulumi.Input<string>;
    /** Images of the model fetch and the sidecars by name. Default: the stack's image of each kind. */
    readonly images?: (c: Case) => { modelFetch: string; sidecars: Record<string, string> };
    readonly allowedImages?: readonly string[];
    readonly fields?: (c: Case) => Record<string, unknown>;
    readonly protectData?: boolean;
}

function model(c: Case) {
    return { bucket: "ml-models-123456789012", prefix: `${c.target}/2026-11-01`, file: "model.npz" };
}

/** The program: one cluster for the cases' kinds and one service per case. */
function program(cases: readonly Case[], options: DeployOptions = {}) {
    return () => {
        const cluster = new ServingCluster("serving", {
            hardware: hardwareKindsOf(cases.map((c) => target(c.target))),
            capacity: capacitySchema.parse(options.capacity ?? {}),
            vpcId: VPC,
            privateSubnetIds: SUBNETS,
            tags: TAGS,
        });
        const services = cases.map(
            (c) =>
                new InferenceService(serviceName(c), {
                    cluster,
                    service: serviceFieldsSchema.parse({ model: model(c), ...c.fields, ...options.fields?.(c) }),
                    target: target(c.target),
                    image: options.image ? options.image(c) : pulumi.output(ref(c.target)),
                    images: options.images?.(c) ?? { modelFetch: KIND_IMAGES["model-sync"], sidecars: sidecarImagesOf({ ...c.fields, ...options.fields?.(c) }) },
                    registry: { host: REGISTRY_HOST, allowedImages: options.allowedImages ?? [] },
                    clients: clientsSchema.parse(options.clients ?? { securityGroupIds: [CLIENT_SG], cidrs: [CLIENT_CIDR] }),
                    loadBalancer: loadBalancerSchema.parse(options.loadBalancer ?? { protocol: "http" }),
                    region: REGION,
                    protectData: options.protectData,
                    tags: TAGS,
                }),
        );
        return { containerDefinitions: Object.fromEntries(services.map((s, i) => [serviceName(cases[i]), s.containerDefinitions])) };
    };
}

const deploy = (cases: readonly Case[] = CASES, options: DeployOptions = {}) => runUnderMocks("dev", {}, program(cases, options));

/** The same services as a stack's config (network and serve sections), for the checks at the config boundary. */
function serveConfig(cases: readonly Case[], options: DeployOptions = {}): Record<string, unknown> {
    return {
        "ml-infra:network": { availabilityZones: ["us-east-1a", "us-east-1b"], natGateways: "single" },
        "ml-infra:serve": {
            requirePinned: true,
            sidecarImages: KIND_IMAGES,
            capacity: options.capacity ?? {},
            clients: options.clients ?? { cidrs: [CLIENT_CIDR] },
            loadBalancer: options.loadBalancer ?? { protocol: "http" },
            services: cases.map((c) => ({
                name: serviceName(c),
                image: "inference",
                target: c.target,
                ref: ref(c.target),
                model: model(c),
                ...c.fields,
                ...options.fields?.(c),
            })),
        },
    };
}

// ------------------------------------------------------------------ graph helpers

const T = {
    cluster: "aws:ecs/cluster:Cluster",
    capacityProvider: "aws:ecs/capacityProvider:CapacityProvider",
    clusterCapacityProviders: "aws:ecs/clusterCapacityProviders:ClusterCapacityProviders",
    asg: "aws:autoscaling/group:Group",
    launchTemplate: "aws:ec2/launchTemplate:LaunchTemplate",
    taskDefinition: "aws:ecs/taskDefinition:TaskDefinition",
    service: "aws:ecs/service:Service",
    securityGroup: "aws:ec2/securityGroup:SecurityGroup",
    ingress: "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule",
    egress: "aws:vpc/securityGroupEgressRule:SecurityGroupEgressRule",
    inlineRule: "aws:ec2/securityGroupRule:SecurityGroupRule",
    loadBalancer: "aws:lb/loadBalancer:LoadBalancer",
    targetGroup: "aws:lb/targetGroup:TargetGroup",
    listener: "aws:lb/listener:Listener",
    role: "aws:iam/role:Role",
    rolePolicy: "aws:iam/rolePolicy:RolePolicy",
    logGroup: "aws:cloudwatch/logGroup:LogGroup",
    inferenceService: "ml-infra:serve:InferenceService",
} as const;

/** What the harness's mocks return as `arn` and `id`. */
const mockArn = (r: Registered) => `arn:aws:mock:${REGION}:${ACCOUNT}:${r.type}/${r.name}`;
const mockId = (r: Registered) => `${r.name}-id`;

interface ContainerJson {
    name: string;
    image: string;
    essential: boolean;
    portMappings: Array<{ containerPort: number }>;
    dockerLabels?: Record<string, string>;
    resourceRequirements?: Array<{ type: string; value: string }>;
    dependsOn?: Array<{ containerName: string; condition: string }>;
    environment: Array<{ name: string; value: string }>;
}
interface ServiceInputs {
    taskDefinition: string;
    launchType?: string;
    capacityProviderStrategies?: Array<{ capacityProvider: string }>;
    networkConfiguration?: { assignPublicIp?: boolean; securityGroups: string[]; subnets: string[] };
    loadBalancers?: Array<{ containerName: string; containerPort: number; targetGroupArn: string }>;
    desiredCount: number;
    deploymentMinimumHealthyPercent: number;
    deploymentMaximumPercent: number;
    deploymentCircuitBreaker: { enable: boolean; rollback: boolean };
    placementConstraints: Array<{ type: string; expression: string }>;
    healthCheckGracePeriodSeconds: number;
    enableExecuteCommand: boolean;
}
interface RuleInputs {
    securityGroupId: string;
    ipProtocol: string;
    fromPort?: number;
    toPort?: number;
    cidrIpv4?: string;
    cidrIpv6?: string;
    referencedSecurityGroupId?: string;
}

const inputs = <I>(r: Registered) => r.inputs as unknown as I;
const containersOf = (td: Registered): ContainerJson[] => JSON.parse(String(td.inputs.containerDefinitions)) as ContainerJson[];

function only(list: Registered[], what: string): Registered {
    expect(list, what).toHaveLength(1);
    return list[0];
}

/** The launch template behind a capacity provider name (CP -> ASG -> LT), through the mocks' arn/id. */
function launchTemplateOf(ev: Evaluation, capacityProvider: string): Registered | undefined {
    const cp = ev.ofType(T.capacityProvider).find((r) => r.inputs.name === capacityProvider);
    const asgArn = (cp?.inputs.autoScalingGroupProvider as { autoScalingGroupArn?: string } | undefined)?.autoScalingGroupArn;
    const asg = ev.ofType(T.asg).find((r) => mockArn(r) === asgArn);
    const spec = (asg?.inputs.mixedInstancesPolicy as { launchTemplate?: { launchTemplateSpecification?: { launchTemplateId?: string } } } | undefined)
        ?.launchTemplate?.launchTemplateSpecification;
    return ev.ofType(T.launchTemplate).find((r) => mockId(r) === spec?.launchTemplateId);
}


/** The house policy pack (policy/policies.ts) over an evaluation's resources. */
function policyViolations(e: Evaluation): string[] {
    return runPolicies(e.resources.map(policyResourceOf)).map((v) => `[${v.policy}] ${v.resource}: ${v.message}`);
}

/** A copy of an evaluation with one resource's inputs changed. */
function mutated(ev: Evaluation, type: string, name: string, change: (inputs: Record<string, unknown>) => void): Evaluation {
    const resources = ev.resources.map((r) => {
        if (r.type !== type || r.name !== name) return r;
        const copy = structuredClone(r.inputs);
        change(copy);
        return { ...r, inputs: copy };
    });
    return { ...ev, resources, ofType: (t) => resources.filter((r) => r.type === t) };
}

// ------------------------------------------------------------------ tests

let ev: Evaluation;
beforeAll(async () => {
    ev = await deploy();
});

describe("a serving graph with a GPU, a Graviton and an x86 service", () => {
    it("passes the house policy pack (every serving invariant)", () => {
        expect(policyViolations(ev)).toEqual([]);
    });

    it("labels sidecar ports the way the policy pack reads them", () => {
        expect(SIDECAR_PORT_LABEL).toBe(POLICY_SIDECAR_PORT_LABEL);
        const tensorboard = containersOf(only(ev.ofType(T.taskDefinition).filter((r) => r.name === "svc-cuda12-definition"), "td")).find((x) => x.name === "tensorboard");
        expect(tensorboard?.dockerLabels?.[SIDECAR_PORT_LABEL]).toBe("6006");
        const rule = `${serviceName(CASES[0])}-task-in-alb`;
        const opened = mutated(ev, T.ingress, rule, (i) => Object.assign(i, { fromPort: 6006, toPort: 6006 }));
        expect(policyViolations(opened).join("\n")).toMatch(/no-sidecar-port-ingress.*admits port 6006/);
    });

    it("has one InferenceService per service under one ServingCluster", () => {
        expect(ev.ofType(T.inferenceService).map((r) => r.name).sort()).toEqual(CASES.map(serviceName).sort());
        only(ev.ofType("ml-infra:serve:ServingCluster"), "clusters");
        only(ev.ofType(T.cluster), "ECS clusters");
    });

    it("tags every taggable resource", () => {
        const untaggable = new Set<string>([T.clusterCapacityProviders, T.rolePolicy, "aws:iam/rolePolicyAttachment:RolePolicyAttachment", T.asg]);
        const aws = ev.resources.filter((r) => r.type.startsWith("aws:") && !untaggable.has(r.type));
        expect(aws.length).toBeGreaterThan(20);
        for (const r of aws) expect(r.inputs.tags, `${r.type} ${r.name}`).toMatchObject(TAGS);
        for (const asg of ev.ofType(T.asg)) {
            const tags = asg.inputs.tags as Array<{ key: string; value: string; propagateAtLaunch: boolean }>;
            for (const [key, value] of Object.entries(TAGS)) expect(tags).toContainEqual({ key, value, propagateAtLaunch: true });
        }
    });

    it("serialises container definitions identically on a second evaluation", async () => {
        const again = await deploy();
        const texts = (e: Evaluation) => Object.fromEntries(e.ofType(T.taskDefinition).map((td) => [td.name, td.inputs.containerDefinitions]));
        expect(texts(again)).toEqual(texts(ev));
        expect(again.outputs.containerDefinitions).toEqual(ev.outputs.containerDefinitions);
    });

    it("serialises identically when config lists environment and sidecars in another order", async () => {
        const reordered = await deploy(CASES, {
            fields: (c) => ({
                environment: Object.fromEntries(Object.entries((c.fields.environment as Record<string, string> | undefined) ?? {}).reverse()),
                sidecars: [...((c.fields.sidecars as unknown[] | undefined) ?? [])].reverse(),
            }),
        });
        expect(reordered.outputs.containerDefinitions).toEqual(ev.outputs.containerDefinitions);
    });
});

describe("the policy pack catches a serving graph gone wrong", () => {
    const gpu = CASES[0];
    const td = `${serviceName(gpu)}-definition`;
    const edit = (change: (containers: ContainerJson[]) => void) => (i: Record<string, unknown>) => {
        const list = JSON.parse(String(i.containerDefinitions)) as ContainerJson[];
        change(list);
        i.containerDefinitions = JSON.stringify(list);
    };

    it.each([
        ["a rule admitting a sidecar port", T.ingress, `${serviceName(gpu)}-task-in-alb`, (i: Record<string, unknown>) => Object.assign(i, { fromPort: 6000, toPort: 7000 }), /no-sidecar-port-ingress.*admits port 6006 of sidecar/],
        ["a rule admitting 0.0.0.0/0", T.ingress, `${serviceName(gpu)}-alb-in-${peerSuffix(CLIENT_CIDR)}`, (i: Record<string, unknown>) => Object.assign(i, { cidrIpv4: "0.0.0.0/0" }), /no-open-ingress.*open to the internet/],
        ["a rule admitting all traffic", T.ingress, `${serviceName(gpu)}-task-in-alb`, (i: Record<string, unknown>) => Object.assign(i, { ipProtocol: "-1" }), /no-all-traffic-ingress.*every protocol/],
        ["a sidecar with a port mapping", T.taskDefinition, td, edit((l) => (l[2].portMappings = [{ containerPort: 6006 }])), /ecs-sidecars-private.*sidecar .* has port mappings/],
        ["an essential sidecar", T.taskDefinition, td, edit((l) => (l[2].essential = true)), /ecs-sidecars-private.*sidecar .* is essential/],
        ["a sidecar bound to every interface", T.taskDefinition, td, edit((l) => (l[2].dockerLabels = { ...l[2].dockerLabels, [BINDS_LABEL]: "0.0.0.0:6006" })), /ecs-sidecars-private.*binds 0\.0\.0\.0:6006, not 127\.0\.0\.1/],
        ["a load balancer reaching a sidecar", T.service, `${serviceName(gpu)}-service`, (i: Record<string, unknown>) => Object.assign(i, { loadBalancers: [{ containerName: "tensorboard", containerPort: 6006 }] }), /ecs-load-balanced-server.*container server has port mappings but is not the load-balanced container/],
        ["an inline ingress rule", T.securityGroup, `${serviceName(gpu)}-alb-sg`, (i: Record<string, unknown>) => Object.assign(i, { ingress: [{ protocol: "tcp", fromPort: 80, toPort: 80, cidrBlocks: [CLIENT_CIDR] }] }), /security-group-rules-standalone.*inline ingress/],
        ["an image by tag", T.taskDefinition, td, edit((l) => (l[0].image = `${REGISTRY_HOST}/ml/inference:latest`)), /ecs-images-pinned.*is a tag \(":latest"\), not pinned by digest/],
        ["a placeholder digest", T.taskDefinition, td, edit((l) => (l[1].image = `${REGISTRY_HOST}/ml/model-sync@sha256:${"0".repeat(63)}1`)), /ecs-images-pinned.*a placeholder, not a digest a build produced/],
        ["a sidecar from a foreign registry", T.taskDefinition, td, edit((l) => (l[2].image = `ghcr.io/someone/otel@${digestOf("otel")}`)), /ecs-images-own-registry.*ghcr\.io is not an ECR registry/],
        ["a server from another account's ECR", T.taskDefinition, td, edit((l) => (l[0].image = `210987654321.dkr.ecr.us-east-1.amazonaws.com/ml/inference@${digestOf("x")}`)), /ecs-images-own-registry.*registry 210987654321\.dkr\.ecr\.us-east-1\.amazonaws\.com \(account 210987654321\) is not the one the stack's other images come from/],
        ["an allow-list label that does not admit the image", T.taskDefinition, td, edit((l) => (l[2].dockerLabels = { ...l[2].dockerLabels, "ml-infra.allowed-image": "public.ecr.aws/other/" })), /ecs-images-own-registry.*does not admit it/],
        ["an execution role granted a foreign repository", T.rolePolicy, `${serviceName(gpu)}-execution-policy`, (i: Record<string, unknown>) => {
            const doc = JSON.parse(String(i.policy)) as { Statement: Array<{ Sid?: string; Resource: string[] }> };
            const pull = doc.Statement.find((x) => x.Sid === "PullTaskImages");
            if (pull) pull.Resource.push("arn:aws:ecr:us-east-1:210987654321:repository/someone/tool");
            i.policy = JSON.stringify(doc);
        }, /ecs-execution-role-pulls-own-images.*may pull from arn:aws:ecr:us-east-1:210987654321:repository\/someone\/tool, which holds no image its task definitions run/],
        ["a GPU task on CPU capacity", T.service, `${serviceName(gpu)}-service`, (i: Record<string, unknown>) => Object.assign(i, { capacityProviderStrategies: [{ capacityProvider: capacityProviderName(CLUSTER, "cpu") }] }), /ecs-capacity-matches-task.*requests a GPU but runs on ml-infra-dev-cpu/],
        ["an arm64 task on x86 capacity", T.service, `${serviceName(CASES[1])}-service`, (i: Record<string, unknown>) => Object.assign(i, { capacityProviderStrategies: [{ capacityProvider: capacityProviderName(CLUSTER, "cpu") }] }), /ecs-capacity-matches-task.*runtimePlatform ARM64 but runs on ml-infra-dev-cpu/],
        ["a public task IP", T.service, `${serviceName(gpu)}-service`, (i: Record<string, unknown>) => Object.assign(i, { networkConfiguration: { assignPublicIp: true } }), /no-public-ip.*assigns public IPs/],
        ["a launch type", T.service, `${serviceName(gpu)}-service`, (i: Record<string, unknown>) => Object.assign(i, { launchType: "EC2" }), /ecs-capacity-provider-strategy.*launch type/],
        ["a public instance IP", T.launchTemplate, "serving-gpu-lt", (i: Record<string, unknown>) => Object.assign(i, { networkInterfaces: [{ associatePublicIpAddress: "true" }] }), /no-public-ip.*public IP/],
        ["an internet-facing load balancer", T.loadBalancer, `${serviceName(gpu)}-alb`, (i: Record<string, unknown>) => Object.assign(i, { internal: false }), /load-balancers-internal.*not internal/],
    ])("catches %s", (_what, type, name, change, message) => {
        expect(policyViolations(ev)).toEqual([]);
        const problems = policyViolations(mutated(ev, type, name, change));
        expect(problems.some((p) => message.test(p)), problems.join("\n")).toBe(true);
    });
});

describe.each(CASES)("service on $target ($kind)", (c) => {
    const name = serviceName(c);
    const child = (type: string, suffix: string) => only(ev.ofType(type).filter((r) => r.name === `${name}-${suffix}`), `${name}-${suffix}`);
    const svc = () => inputs<ServiceInputs>(child(T.service, "service"));
    const containers = () => containersOf(child(T.taskDefinition, "definition"));

    it("runs in awsvpc mode on EC2 with the target's CPU architecture", () => {
        const td = child(T.taskDefinition, "definition");
        expect(td.inputs).toMatchObject({
            networkMode: "awsvpc",
            requiresCompatibilities: ["EC2"],
            runtimePlatform: { cpuArchitecture: c.cpuArchitecture, operatingSystemFamily: "LINUX" },
            family: `${CLUSTER}-${name}`,
            taskRoleArn: mockArn(child(T.role, "task")),
            executionRoleArn: mockArn(child(T.role, "execution")),
        });
    });

    it("uses the target's capacity provider, whose launch template boots the matching ECS AMI", () => {
        expect(svc().capacityProviderStrategies).toEqual([{ capacityProvider: capacityProviderName(CLUSTER, c.kind), weight: 1, base: 0 }]);
        expect(svc().launchType).toBeUndefined();
        expect(launchTemplateOf(ev, capacityProviderName(CLUSTER, c.kind))?.inputs.imageId).toBe(`resolve:ssm:${c.ami}`);
        expect(svc().placementConstraints).toEqual([
            { type: "memberOf", expression: `attribute:ecs.cpu-architecture == ${c.cpuArchitecture === "ARM64" ? "arm64" : "x86_64"}` },
        ]);
    });

    it("requests GPUs for the server exactly when the target needs them", () => {
        const server = containers().find((x) => x.name === SERVER_CONTAINER);
        expect(server?.resourceRequirements).toEqual(c.gpus > 0 ? [{ type: "GPU", value: String(c.gpus) }] : undefined);
        expect(containers().filter((x) => x.name !== SERVER_CONTAINER).every((x) => x.resourceRequirements === undefined)).toBe(true);
    });

    it("deploys the environment's digest and nothing mutable", () => {
        const server = containers().find((x) => x.name === SERVER_CONTAINER);
        expect(server?.image).toBe(ref(c.target));
    });

    it("runs privately, rolls back failed deployments and keeps serving within its hardware", () => {
        const s = svc();
        expect(s.networkConfiguration).toEqual({ subnets: SUBNETS, securityGroups: [mockId(child(T.securityGroup, "task-sg"))], assignPublicIp: false });
        expect(s.deploymentCircuitBreaker).toEqual({ enable: true, rollback: true });
        expect(s.desiredCount).toBe((c.fields.replicas as number | undefined) ?? 1);
        const percents = deploymentPercents(c.kind, s.desiredCount);
        expect([s.deploymentMinimumHealthyPercent, s.deploymentMaximumPercent]).toEqual([percents.minimumHealthyPercent, percents.maximumPercent]);
        expect(s.healthCheckGracePeriodSeconds).toBe(900);
        expect(s.enableExecuteCommand).toBe(false);
    });

    it("puts an internal ALB in front of the server port only", () => {
        expect(child(T.loadBalancer, "alb").inputs).toMatchObject({
            internal: true,
            loadBalancerType: "application",
            subnets: SUBNETS,
            securityGroups: [mockId(child(T.securityGroup, "alb-sg"))],
        });
        expect(child(T.targetGroup, "tg").inputs).toMatchObject({ targetType: "ip", protocol: "HTTP", port: 8080, vpcId: VPC, healthCheck: { path: "/healthz" } });
        expect(child(T.listener, "listener").inputs).toMatchObject({ port: 80, protocol: "HTTP" });
        expect(svc().loadBalancers).toEqual([{ targetGroupArn: mockArn(child(T.targetGroup, "tg")), containerName: SERVER_CONTAINER, containerPort: 8080 }]);
    });

    it("admits only the listed clients to the ALB, and only the ALB to the tasks on the server port", () => {
        const albSg = mockId(child(T.securityGroup, "alb-sg"));
        const taskSg = mockId(child(T.securityGroup, "task-sg"));
        const rulesOf = (sg: string) => ev.ofType(T.ingress).map((r) => inputs<RuleInputs>(r)).filter((r) => r.securityGroupId === sg);
        const peers = (list: RuleInputs[]) => list.map((r) => ({ port: [r.fromPort, r.toPort], from: r.referencedSecurityGroupId ?? r.cidrIpv4 }));
        expect(peers(rulesOf(albSg))).toEqual(expect.arrayContaining([{ port: [80, 80], from: CLIENT_SG }, { port: [80, 80], from: CLIENT_CIDR }]));
        expect(rulesOf(albSg)).toHaveLength(2);
        expect(peers(rulesOf(taskSg))).toEqual([{ port: [8080, 8080], from: albSg }]);
        const albOut = ev.ofType(T.egress).map((r) => inputs<RuleInputs>(r)).filter((r) => r.securityGroupId === albSg);
        expect(peers(albOut)).toEqual([{ port: [8080, 8080], from: taskSg }]);
    });

    it("lets the task role read the model prefix and nothing else of S3", () => {
        const policy = JSON.parse(String(child(T.rolePolicy, "task-policy").inputs.policy)) as PolicyDocument;
        const s3 = policy.Statement.filter((s) => [s.Action].flat().some((a) => a.startsWith("s3:")));
        const { bucket, prefix } = model(c);
        expect(s3.map((s) => ({ action: s.Action, resource: s.Resource }))).toEqual([
            { action: ["s3:GetObject"], resource: [`arn:aws:s3:::${bucket}/${prefix}/*`] },
            { action: ["s3:ListBucket"], resource: [`arn:aws:s3:::${bucket}`] },
        ]);
        expect(s3[1].Condition).toEqual({ StringLike: { "s3:prefix": [`${prefix}/`, `${prefix}/*`] } });
    });

    it("logs to its own log group with retention, protected and retained by default", () => {
        const logs = child(T.logGroup, "logs");
        expect(logs.inputs).toMatchObject({ name: `/ecs/${CLUSTER}/${name}`, retentionInDays: 30 });
        expect([logs.protect, logs.retainOnDelete]).toEqual([true, true]);
    });
});

describe("ServingCluster", () => {
    it("turns Container Insights on for its one ECS cluster", () => {
        expect(only(ev.ofType(T.cluster), "clusters").inputs).toMatchObject({ name: CLUSTER, settings: [{ name: "containerInsights", value: "enabled" }] });
    });

    it("creates one capacity provider per hardware kind and associates them all", () => {
        expect(ev.ofType(T.capacityProvider).map((r) => r.inputs.name).sort()).toEqual(["ml-infra-dev-arm64", "ml-infra-dev-cpu", "ml-infra-dev-gpu"]);
        expect(only(ev.ofType(T.clusterCapacityProviders), "associations").inputs).toMatchObject({
            clusterName: CLUSTER,
            capacityProviders: ["ml-infra-dev-gpu", "ml-infra-dev-arm64", "ml-infra-dev-cpu"],
        });
    });

    it("creates capacity only for the kinds its services need", async () => {
        const cpuOnly = await deploy([CASES[2]]);
        expect(cpuOnly.ofType(T.asg).map((r) => r.name)).toEqual(["serving-cpu-asg"]);
        expect(policyViolations(cpuOnly)).toEqual([]);
    });

    it.each(["gpu", "arm64", "cpu"] as const)("manages the %s group with ECS: scaling, termination protection, draining", (kind) => {
        const cp = ev.ofType(T.capacityProvider).find((r) => r.inputs.name === `ml-infra-dev-${kind}`);
        expect(cp?.inputs.autoScalingGroupProvider).toMatchObject({
            managedTerminationProtection: "ENABLED",
            managedDraining: "ENABLED",
            managedScaling: { status: "ENABLED", targetCapacity: 100 },
        });
        const asg = only(ev.ofType(T.asg).filter((r) => r.name === `serving-${kind}-asg`), kind);
        expect(asg.inputs).toMatchObject({ protectFromScaleIn: true, vpcZoneIdentifiers: SUBNETS, minSize: 0 });
        expect(asg.inputs.tags).toContainEqual({ key: "AmazonECSManaged", value: "", propagateAtLaunch: true });
    });

    it("launches instances with IMDSv2 only, no public IP, an encrypted root volume and the ECS agent locked down", () => {
        for (const lt of ev.ofType(T.launchTemplate)) {
            const kind = lt.name.replace(/^serving-|-lt$/g, "") as HardwareKind;
            expect(lt.inputs).toMatchObject({
                imageId: `resolve:ssm:${ecsAmiParameter(kind)}`,
                metadataOptions: { httpEndpoint: "enabled", httpTokens: "required", httpPutResponseHopLimit: 1 },
                networkInterfaces: [{ associatePublicIpAddress: "false", securityGroups: [mockId(only(ev.ofType(T.securityGroup).filter((r) => r.name === "serving-instance-sg"), "sg"))] }],
                blockDeviceMappings: [{ deviceName: "/dev/xvda", ebs: { encrypted: "true", volumeType: "gp3", volumeSize: kind === "gpu" ? 200 : 60 } }],
            });
            const userData = Buffer.from(String(lt.inputs.userData), "base64").toString("utf8");
            expect(userData).toContain(`ECS_CLUSTER=${CLUSTER}\n`);
            expect(userData).toContain("ECS_AWSVPC_BLOCK_IMDS=true\n");
            expect(userData.includes("ECS_ENABLE_GPU_SUPPORT=true"), kind).toBe(kind === "gpu");
        }
        expect(ev.ofType(T.ingress).filter((r) => r.parent.endsWith("ServingCluster::serving"))).toEqual([]);
    });

    it("takes its mixed-instances policy from the capacity config", async () => {
        const spotty = await deploy([CASES[0]], {
            capacity: { gpu: { instanceTypes: ["g6.xlarge", "g5.xlarge"], maxSize: 3, onDemandBaseCapacity: 1, onDemandPercentageAboveBaseCapacity: 0, spotAllocationStrategy: "capacity-optimized" } },
        });
        const asg = only(spotty.ofType(T.asg), "gpu group");
        expect(asg.inputs).toMatchObject({
            maxSize: 3,
            capacityRebalance: true,
            mixedInstancesPolicy: {
                instancesDistribution: { onDemandBaseCapacity: 1, onDemandPercentageAboveBaseCapacity: 0, spotAllocationStrategy: "capacity-optimized" },
                launchTemplate: { overrides: [{ instanceType: "g6.xlarge" }, { instanceType: "g5.xlarge" }] },
            },
        });
        const userData = Buffer.from(String(only(spotty.ofType(T.launchTemplate), "lt").inputs.userData), "base64").toString("utf8");
        expect(userData).toContain("ECS_ENABLE_SPOT_INSTANCE_DRAINING=true");
    });

    it("leaves log groups unprotected where the stack opts out of data protection (dev)", async () => {
        const dev = await deploy([CASES[2]], { protectData: false });
        const logs = only(dev.ofType(T.logGroup), "log group");
        expect([logs.protect, logs.retainOnDelete]).toEqual([false, false]);
    });

    it("turns ECS Exec on when asked, with the SSM channels it needs", async () => {
        const exec = await deploy([CASES[2]], { fields: () => ({ execCommand: true }) });
        expect(only(exec.ofType(T.service), "service").inputs.enableExecuteCommand).toBe(true);
        const policy = JSON.parse(String(only(exec.ofType(T.rolePolicy).filter((r) => r.name.endsWith("-task-policy")), "task policy").inputs.policy)) as PolicyDocument;
        expect(policy.Statement.find((s) => s.Sid === "EcsExec")?.Action).toContain("ssmmessages:OpenDataChannel");
    });

    it("listens HTTPS on 443 with the configured certificate", async () => {
        const certificateArn = "arn:aws:acm:us-east-1:123456789012:certificate/0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0";
        const tls = await deploy([CASES[2]], { loadBalancer: { certificateArn } });
        expect(only(tls.ofType(T.listener), "listener").inputs).toMatchObject({ port: 443, protocol: "HTTPS", certificateArn, sslPolicy: "ELBSecurityPolicy-TLS13-1-2-2021-06" });
        const albRules = tls.ofType(T.ingress).filter((r) => r.name.includes("-alb-in-"));
        expect(albRules.map((r) => [r.inputs.fromPort, r.inputs.toPort])).toEqual([[443, 443], [443, 443]]);
    });
});

// ------------------------------------------------------------------ refusals

const refusal = collectRejections;

describe("refusals", () => {
    it("refuses a tag reference before registering the service's resources", async () => {
        const tagged = `${REGISTRY_HOST}/ml/inference:latest`;
        const registered: string[] = [];
        await pulumi.runtime.setMocks(
            {
                newResource: (a) => {
                    registered.push(a.name);
                    return { id: `${a.name}-id`, state: a.inputs as Record<string, unknown> };
                },
                call: (a) => a.inputs as Record<string, unknown>,
            },
            "ml-infra",
            "dev",
            false,
        );
        const messages = await refusal(async () => program([CASES[2]], { image: () => tagged })());
        expect(messages[0]).toMatch(/server: image ".*:latest": is a tag \(":latest"\), not pinned by digest/);
        // The cluster before it was registered (so counting works); nothing of the service was.
        expect(registered.filter((n) => n.startsWith("serving-")).length).toBeGreaterThan(0);
        expect(registered.filter((n) => n.startsWith(`${serviceName(CASES[2])}-`))).toEqual([]);
    });

    it("fails the deployment when the environment's reference resolves to a tag", async () => {
        const tagged = pulumi.output(`${REGISTRY_HOST}/ml/inference:v1@${digestOf("v1")}`);
        // The program returns the container definitions, so the refusal surfaces as the run's error.
        const messages = await refusal(() => runUnderMocks("dev", {}, program([CASES[0]], { image: () => tagged })));
        expect(messages.length).toBeGreaterThan(0);
        for (const m of messages) expect(m).toMatch(/svc-cuda12: server image ".*:v1@sha256:[a-f0-9]{64}": names a tag \(":v1"\) as well as a digest/);
    });

    it("fails the deployment when the server's reference resolves to another account's registry", async () => {
        const foreign = pulumi.output(`210987654321.dkr.ecr.us-east-1.amazonaws.com/ml/inference@${digestOf("foreign")}`);
        const messages = await refusal(() => runUnderMocks("dev", {}, program([CASES[2]], { image: () => foreign })));
        expect(messages.length).toBeGreaterThan(0);
        for (const m of messages) expect(m).toMatch(/svc-cpu-avx2: server image "210987654321\.dkr\.ecr.*" is not in the stack's registry 123456789012\.dkr\.ecr\.us-east-1\.amazonaws\.com nor allowed by serve\.allowedImages/);
    });

    it.each([
        ["a sidecar image from a foreign registry", { modelFetch: KIND_IMAGES["model-sync"], sidecars: { "metrics-exporter": `ghcr.io/someone/otel@${digestOf("otel")}` } }, /metrics-exporter: image "ghcr\.io\/someone\/otel@.*" is not in the stack's registry/],
        ["a placeholder model-fetch image", { modelFetch: `public.ecr.aws/aws-cli/aws-cli@sha256:${"0".repeat(63)}1`, sidecars: { "metrics-exporter": KIND_IMAGES["metrics-exporter"] } }, /model-fetch: image .*: digest sha256:000000000000… has a run of 63 "0"s: a placeholder/],
        ["a sidecar without an image", { modelFetch: KIND_IMAGES["model-sync"], sidecars: {} }, /metrics-exporter: has no image/],
    ])("refuses %s before registering anything of the service", async (_what, images, message) => {
        const registered: string[] = [];
        await pulumi.runtime.setMocks(
            {
                newResource: (a) => {
                    registered.push(a.name);
                    return { id: `${a.name}-id`, state: a.inputs as Record<string, unknown> };
                },
                call: (a) => a.inputs as Record<string, unknown>,
            },
            "ml-infra",
            "dev",
            false,
        );
        const messages = await refusal(async () => program([CASES[2]], { fields: () => ({ sidecars: [{ kind: "metrics-exporter" }] }), images: () => images })());
        expect(messages[0]).toMatch(message);
        expect(registered.filter((n) => n.startsWith(`${serviceName(CASES[2])}-`))).toEqual([]);
    });

    it("runs an allow-listed image and records the entry on its container, which the policy pack accepts", async () => {
        const otel = `public.ecr.aws/aws-observability/aws-otel-collector@${digestOf("otel")}`;
        const allowed = await deploy([CASES[2]], {
            fields: () => ({ sidecars: [{ kind: "metrics-exporter", image: otel }] }),
            allowedImages: ["public.ecr.aws/aws-observability/"],
        });
        const exporter = containersOf(only(allowed.ofType(T.taskDefinition), "td")).find((x) => x.name === "metrics-exporter");
        expect(exporter?.image).toBe(otel);
        expect(exporter?.dockerLabels?.["ml-infra.allowed-image"]).toBe("public.ecr.aws/aws-observability/");
        expect(policyViolations(allowed)).toEqual([]);
        // The execution role pulls the task's own repositories only: nothing for a public one.
        const policy = JSON.parse(String(only(allowed.ofType(T.rolePolicy).filter((r) => r.name.endsWith("-execution-policy")), "policy").inputs.policy)) as PolicyDocument;
        expect(policy.Statement.find((s) => s.Sid === "PullTaskImages")?.Resource).toEqual([
            `arn:aws:ecr:${REGION}:${ACCOUNT}:repository/ml/inference`,
            `arn:aws:ecr:${REGION}:${ACCOUNT}:repository/ml/model-sync`,
        ]);
    });

    it.each([
        ["a GPU target without a GPU", { fields: () => ({ gpus: 0 }) }, [CASES[0]], /serve\.services\[0\]\.gpus = 0: target "cuda12" needs a GPU/],
        ["GPUs on a Graviton target", { fields: () => ({ gpus: 1 }) }, [CASES[1]], /serve\.services\[0\]\.gpus = 1: target "arm64-neon" is not a GPU target/],
        ["a sidecar on the server's port", { fields: () => ({ port: 6006, sidecars: [{ kind: "tensorboard" }] }) }, [CASES[2]], /serve\.services\[0\]\.sidecars\[0\]\.port = \(missing\): tensorboard "tensorboard" binds 6006/],
        ["no clients", { clients: {} }, [CASES[2]], /serve\.clients = \{\}: no one could reach the services/],
        ["0.0.0.0/0 clients", { clients: { cidrs: ["0.0.0.0/0"] } }, [CASES[2]], /serve\.clients\.cidrs\[0\] = "0\.0\.0\.0\/0": is the whole internet; .*the load balancers are internal/],
        ["x86 instance types for Graviton", { capacity: { arm64: { instanceTypes: ["c7i.large"] } } }, [CASES[1]], /serve\.capacity\.arm64\.instanceTypes\[0\] = "c7i\.large": c7i\.large is not Graviton/],
        ["no room for GPU tasks", { capacity: { gpu: { maxSize: 0 } } }, [CASES[0]], /serve\.capacity\.gpu\.maxSize = 0: services svc-cuda12 run on gpu capacity; maxSize must be at least 1/],
    ])("refuses %s in the stack config, before anything is registered", (_what, options: DeployOptions, cases, message) => {
        const problems = configProblems(serveConfig(cases, options), "dev");
        expect(problems).toHaveLength(1);
        expect(problems[0]).toMatch(message);
    });

    it("refuses a service whose hardware the cluster lacks", async () => {
        const messages = await refusal(() =>
            runUnderMocks("dev", {}, () => {
                const cluster = new ServingCluster("serving", { hardware: ["cpu"], capacity: capacitySchema.parse({}), vpcId: VPC, privateSubnetIds: SUBNETS, tags: TAGS });
                new InferenceService("gpu-svc", {
                    cluster,
                    service: serviceFieldsSchema.parse({ model: model(CASES[0]) }),
                    target: target("cuda12"),
                    image: ref("x"),
                    images: { modelFetch: KIND_IMAGES["model-sync"], sidecars: {} },
                    registry: { host: REGISTRY_HOST, allowedImages: [] },
                    clients: clientsSchema.parse({ cidrs: [CLIENT_CIDR] }),
                    loadBalancer: loadBalancerSchema.parse({ protocol: "http" }),
                    region: REGION,
                    tags: TAGS,
                });
            }),
        );
        expect(messages).toEqual([expect.stringMatching(/runs on gpu capacity, which cluster ml-infra-dev does not have \(it has: cpu\)/)]);
    });

    it("refuses a GPU target built for arm64 in the stack config, naming the service", () => {
        const config = serveConfig([CASES[0]], { fields: () => ({ target: "cuda-arm" }) });
        (config["ml-infra:serve"] as Record<string, unknown>).targets = { "cuda-arm": { extends: "cuda12", platform: "linux/arm64", pool: "arm64" } };
        expect(configProblems(config, "dev")).toEqual([
            expect.stringMatching(/^ml-infra:serve\.services\[0\] = .*: target "cuda-arm" is a GPU target on linux\/arm64/),
        ]);
    });

    it("refuses a cluster name its capacity providers could not carry", async () => {
        const messages = await refusal(() =>
            runUnderMocks("dev", {}, () => {
                new ServingCluster("serving", { clusterName: "ecs-serving", hardware: ["cpu"], capacity: capacitySchema.parse({}), vpcId: VPC, privateSubnetIds: SUBNETS, tags: TAGS });
            }),
        );
        expect(messages).toEqual([expect.stringMatching(/may not start with aws, ecs or fargate/)]);
    });
});

// ------------------------------------------------------------------ pure helpers

describe("deployment bounds", () => {
    it.each([
        ["gpu", 1, 0, 100],
        ["gpu", 2, 50, 100],
        ["gpu", 3, 66, 100],
        ["gpu", 4, 75, 100],
        ["cpu", 1, 100, 200],
        ["arm64", 3, 100, 200],
    ] as const)("%s with %i replicas: minimum healthy %i, maximum %i percent", (kind, replicas, min, max) => {
        expect(deploymentPercents(kind, replicas)).toEqual({ minimumHealthyPercent: min, maximumPercent: max });
    });

    it("never need a spare GPU and always keep n-1 GPU tasks serving", () => {
        for (let n = 1; n <= 16; n++) {
            const { minimumHealthyPercent: min, maximumPercent: max } = deploymentPercents("gpu", n);
            expect(Math.floor((n * max) / 100), `n=${n}`).toBe(n);
            expect(Math.ceil((n * min) / 100), `n=${n}`).toBe(n - 1);
        }
    });
});

describe("ECS agent user data", () => {
    it("is deterministic and sorted", () => {
        const text = ecsUserData(ecsAgentConfig(CLUSTER, "gpu", true));
        expect(text).toBe(
            [
                "#!/bin/bash",
                "cat >> /etc/ecs/ecs.config <<'EOF'",
                "ECS_AWSVPC_BLOCK_IMDS=true",
                `ECS_CLUSTER=${CLUSTER}`,
                "ECS_ENABLE_CONTAINER_METADATA=true",
                "ECS_ENABLE_GPU_SUPPORT=true",
                "ECS_ENABLE_SPOT_INSTANCE_DRAINING=true",
                "ECS_IMAGE_PULL_BEHAVIOR=prefer-cached",
                "EOF",
                "",
            ].join("\n"),
        );
    });
});

// ------------------------------------------------------------------ environment stacks

const ENV_STACKS = stackNames().filter((s) => "ml-infra:serve" in stackFileConfig(s));

/** What the build stack would export for every image × target an environment runs, and every sidecar image. */
function buildOutputsFor(stack: string): Record<string, unknown> {
    const serve = stackFileConfig(stack)["ml-infra:serve"] as { services: Array<{ image: string; target: string }> };
    const images: Record<string, unknown> = sidecarImageOutputs();
    const servers: Record<string, { repository: string; targets: Record<string, { ref: string }> }> = {};
    for (const s of serve.services) {
        servers[s.image] ??= { repository: `${REGISTRY_HOST}/ml/${s.image}`, targets: {} };
        servers[s.image].targets[s.target] = { ref: ref(`${s.image}/${s.target}`) };
    }
    return { images: { ...images, ...servers } };
}

describe("every environment stack", () => {
    it("covers dev, staging and prod", () => {
        expect(ENV_STACKS).toEqual(expect.arrayContaining(["dev", "staging", "prod"]));
    });

    it.each(ENV_STACKS)("%s: one InferenceService per service, and every serving invariant holds (a pinned-only stack as promoted from the build stack's outputs)", async (stack) => {
        const stackEv = await evaluate(stack, { buildOutputs: buildOutputsFor(stack) });
        const serve = stackFileConfig(stack)["ml-infra:serve"] as { services: Array<{ name: string }> };
        expect(stackEv.ofType(T.inferenceService).map((r) => r.name).sort()).toEqual(serve.services.map((s) => s.name).sort());
        expect(policyViolations(stackEv)).toEqual([]);
    });
});
