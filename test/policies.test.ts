/** Every policy of the pack, on hand-made resources that pass and that violate. */
import { describe, expect, it } from "vitest";
import type { ResourceValidationPolicy, StackValidationPolicy } from "@pulumi/policy";
import { policyPackArgs } from "../policy/pack";
import { BINDS_LABEL, ROLE_LABEL } from "../components/shared/labels";
import { PUBLIC_TAG, type PolicyResource, RESOURCE_POLICIES, SIDECAR_PORT_LABEL, STACK_POLICIES, runPolicies } from "../policy/policies";
import { DIGEST_A } from "./fixtures";

const HOST = "123456789012.dkr.ecr.us-east-1.amazonaws.com";
let n = 0;
const res = (type: string, props: Record<string, unknown>): PolicyResource => ({ type, name: `r${++n}`, urn: `urn:${type}::r${n}`, props });
const policy = (name: string) => {
    const p = RESOURCE_POLICIES.find((x) => x.name === name);
    if (!p) throw new Error(name);
    return p;
};

const LT = "aws:ec2/launchTemplate:LaunchTemplate";
const goodLaunchTemplate = {
    metadataOptions: { httpTokens: "required", httpPutResponseHopLimit: 1 },
    networkInterfaces: [{ associatePublicIpAddress: "false" }],
    blockDeviceMappings: [{ deviceName: "/dev/xvda", ebs: { encrypted: "true", volumeType: "gp3" } }],
};
const taskDef = (containers: unknown[]) => res("aws:ecs/taskDefinition:TaskDefinition", { containerDefinitions: JSON.stringify(containers) });
const iamPolicy = (statements: unknown[]) => res("aws:iam/policy:Policy", { policy: JSON.stringify({ Version: "2012-10-17", Statement: statements }) });
const ingress = (props: Record<string, unknown>) => res("aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule", { ipProtocol: "tcp", ...props });

const CASES: ReadonlyArray<{ policy: string; pass: PolicyResource[]; fail: PolicyResource[] }> = [
    {
        policy: "no-public-ip",
        pass: [res(LT, goodLaunchTemplate), res("aws:ecs/service:Service", { networkConfiguration: { assignPublicIp: false, subnets: ["s"] } })],
        fail: [
            res(LT, { ...goodLaunchTemplate, networkInterfaces: [{ associatePublicIpAddress: "true" }] }),
            res("aws:ec2/instance:Instance", { associatePublicIpAddress: true, metadataOptions: { httpTokens: "required" } }),
            res("aws:ecs/service:Service", { networkConfiguration: { assignPublicIp: true } }),
        ],
    },
    {
        policy: "imdsv2-required",
        pass: [res(LT, goodLaunchTemplate)],
        fail: [res(LT, { ...goodLaunchTemplate, metadataOptions: { httpTokens: "optional" } }), res(LT, {})],
    },
    {
        policy: "volumes-encrypted",
        pass: [res(LT, goodLaunchTemplate), res("aws:ebs/volume:Volume", { encrypted: true })],
        fail: [res(LT, { ...goodLaunchTemplate, blockDeviceMappings: [{ deviceName: "/dev/xvdb", ebs: { volumeSize: 200 } }] }), res("aws:ebs/volume:Volume", {})],
    },
    {
        policy: "ecr-immutable-scanned",
        pass: [
            res("aws:ecr/repository:Repository", { imageTagMutability: "IMMUTABLE", imageScanningConfiguration: { scanOnPush: true } }),
            res("aws:ecr/repository:Repository", {
                imageTagMutability: "IMMUTABLE_WITH_EXCLUSION",
                imageTagMutabilityExclusionFilters: [{ filter: "cache-*", filterType: "WILDCARD" }],
                tags: { "ml-infra:purpose": "build-cache" },
            }),
            res("aws:ecr/repository:Repository", {
                imageTagMutability: "IMMUTABLE_WITH_EXCLUSION",
                imageTagMutabilityExclusionFilters: [{ filter: "deployed-*", filterType: "WILDCARD" }],
                imageScanningConfiguration: { scanOnPush: true },
                tags: { "ml-infra:purpose": "release" },
            }),
        ],
        fail: [
            // A release repository whose cache-* tags could move, and a cache repository whose deployment markers could.
            res("aws:ecr/repository:Repository", {
                imageTagMutability: "IMMUTABLE_WITH_EXCLUSION",
                imageTagMutabilityExclusionFilters: [{ filter: "cache-*", filterType: "WILDCARD" }],
                imageScanningConfiguration: { scanOnPush: true },
                tags: { "ml-infra:purpose": "release" },
            }),
            res("aws:ecr/repository:Repository", {
                imageTagMutability: "IMMUTABLE_WITH_EXCLUSION",
                imageTagMutabilityExclusionFilters: [{ filter: "deployed-*", filterType: "WILDCARD" }],
                tags: { "ml-infra:purpose": "build-cache" },
            }),
            res("aws:ecr/repository:Repository", { imageTagMutability: "MUTABLE", imageScanningConfiguration: { scanOnPush: true } }),
            res("aws:ecr/repository:Repository", { imageScanningConfiguration: { scanOnPush: true } }),
            res("aws:ecr/repository:Repository", { imageTagMutability: "IMMUTABLE" }),
            res("aws:ecr/repository:Repository", {
                imageTagMutability: "IMMUTABLE_WITH_EXCLUSION",
                imageTagMutabilityExclusionFilters: [{ filter: "*", filterType: "WILDCARD" }],
                imageScanningConfiguration: { scanOnPush: true },
            }),
        ],
    },
    {
        policy: "ecs-images-pinned",
        pass: [taskDef([{ name: "server", image: `${HOST}/ml/inference@${DIGEST_A}` }])],
        fail: [
            taskDef([{ name: "server", image: `${HOST}/ml/inference:latest` }]),
            taskDef([{ name: "server", image: `${HOST}/ml/inference@${DIGEST_A}` }, { name: "exporter", image: "prom/statsd-exporter" }]),
        ],
    },
    {
        policy: "ecr-cache-image-manifest",
        pass: [
            res("docker-build:index:Image", { cacheTo: [{ registry: { ref: `${HOST}/ml/cache/x:cache-a`, imageManifest: true, ociMediaTypes: true } }] }),
            res("docker-build:index:Image", { cacheTo: [{ registry: { ref: "127.0.0.1:5000/cache:a" } }] }),
        ],
        fail: [
            res("docker-build:index:Image", { cacheTo: [{ registry: { ref: `${HOST}/ml/cache/x:cache-a`, ociMediaTypes: true } }] }),
            res("docker-build:index:Image", { cacheTo: [{ registry: { ref: `${HOST}/ml/cache/x:cache-a`, imageManifest: true } }] }),
        ],
    },
    {
        policy: "iam-no-wildcards",
        pass: [
            iamPolicy([
                { Effect: "Allow", Action: ["ecr:GetAuthorizationToken"], Resource: "*" },
                { Effect: "Allow", Action: ["ecr:PutImage"], Resource: [`arn:aws:ecr:us-east-1:123456789012:repository/ml/inference`] },
            ]),
            res("aws:iam/role:Role", { assumeRolePolicy: JSON.stringify({ Version: "2012-10-17", Statement: [{ Effect: "Allow", Principal: { Service: "ec2.amazonaws.com" }, Action: "sts:AssumeRole" }] }) }),
        ],
        fail: [
            iamPolicy([{ Effect: "Allow", Action: "ecr:*", Resource: "arn:aws:ecr:us-east-1:123456789012:repository/ml/x" }]),
            iamPolicy([{ Effect: "Allow", Action: ["s3:GetObject"], Resource: "*" }]),
            iamPolicy([{ Effect: "Allow", Action: "*", Resource: "*" }]),
            res("aws:iam/rolePolicy:RolePolicy", { policy: JSON.stringify({ Statement: [{ Effect: "Allow", NotAction: "iam:*", Resource: "arn:x" }] }) }),
        ],
    },
    {
        policy: "iam-document-valid",
        pass: [
            iamPolicy([{ Sid: "Push", Effect: "Allow", Action: ["ecr:PutImage"], Resource: "arn:aws:ecr:us-east-1:123456789012:repository/ml/x" }]),
            res("aws:iam/role:Role", {
                assumeRolePolicy: JSON.stringify({ Version: "2012-10-17", Statement: [{ Effect: "Allow", Principal: { Service: "ecs-tasks.amazonaws.com" }, Action: "sts:AssumeRole" }] }),
            }),
            iamPolicy([{ Effect: "Allow", Action: "s3:ListBucket", Resource: "arn:aws:s3:::models", Condition: { StringLike: { "s3:prefix": ["llm/*"] } } }]),
        ],
        fail: [
            res("aws:iam/policy:Policy", { policy: JSON.stringify({ Version: "2008-10-17", Statement: [{ Effect: "Allow", Action: "s3:GetObject", Resource: "arn:aws:s3:::b/*" }] }) }),
            iamPolicy([{ Effect: "Permit", Action: "s3:GetObject", Resource: "arn:aws:s3:::b/*" }]),
            iamPolicy([{ Effect: "Allow", Action: "GetObject", Resource: "arn:aws:s3:::b/*" }]),
            iamPolicy([{ Effect: "Allow", Action: "s3:GetObject" }]),
            iamPolicy([{ Effect: "Allow", Action: "s3:GetObject", Resource: "bucket/*" }]),
            iamPolicy([{ Effect: "Allow", Action: "s3:ListBucket", Resource: "arn:aws:s3:::b", Condition: { Like: { "s3:prefix": "x" } } }]),
            res("aws:iam/role:Role", { assumeRolePolicy: JSON.stringify({ Version: "2012-10-17", Statement: [{ Effect: "Allow", Action: "sts:AssumeRole" }] }) }),
        ],
    },
    {
        policy: "no-open-ingress",
        pass: [ingress({ fromPort: 443, toPort: 443, cidrIpv4: "10.0.0.0/16" }), ingress({ fromPort: 443, toPort: 443, cidrIpv4: "0.0.0.0/0", tags: { "ml-infra:public": "true" } })],
        fail: [
            ingress({ fromPort: 443, toPort: 443, cidrIpv4: "0.0.0.0/0" }),
            ingress({ fromPort: 1234, toPort: 1234, cidrIpv4: "0.0.0.0/1" }),
            res("aws:ec2/securityGroup:SecurityGroup", { ingress: [{ protocol: "tcp", fromPort: 22, toPort: 22, cidrBlocks: ["0.0.0.0/0"] }] }),
            res("aws:ec2/securityGroupRule:SecurityGroupRule", { type: "ingress", protocol: "-1", cidrBlocks: ["10.0.0.0/8"], ipv6CidrBlocks: ["::/0"] }),
        ],
    },
    {
        policy: "load-balancers-internal",
        pass: [res("aws:lb/loadBalancer:LoadBalancer", { internal: true }), res("aws:lb/loadBalancer:LoadBalancer", { internal: false, tags: { [PUBLIC_TAG]: "true" } })],
        fail: [res("aws:lb/loadBalancer:LoadBalancer", { internal: false }), res("aws:lb/loadBalancer:LoadBalancer", {})],
    },
    {
        policy: "ecs-sidecars-private",
        pass: [
            taskDef([
                { name: "server", essential: true, portMappings: [{ containerPort: 8080 }], dockerLabels: { [ROLE_LABEL]: "server" } },
                { name: "tb", essential: false, portMappings: [], dockerLabels: { [ROLE_LABEL]: "sidecar", [BINDS_LABEL]: "127.0.0.1:6006" } },
            ]),
        ],
        fail: [
            taskDef([{ name: "tb", essential: true, dockerLabels: { [ROLE_LABEL]: "sidecar" } }]),
            taskDef([{ name: "tb", essential: false, portMappings: [{ containerPort: 6006 }], dockerLabels: { [ROLE_LABEL]: "sidecar" } }]),
            taskDef([{ name: "tb", essential: false, dockerLabels: { [ROLE_LABEL]: "sidecar", [BINDS_LABEL]: "0.0.0.0:6006" } }]),
            taskDef([
                { name: "a", essential: true, portMappings: [{ containerPort: 8080 }] },
                { name: "b", essential: true, portMappings: [{ containerPort: 9090 }] },
            ]),
        ],
    },
    {
        policy: "ecs-capacity-provider-strategy",
        pass: [res("aws:ecs/service:Service", { capacityProviderStrategies: [{ capacityProvider: "cp", weight: 1 }] })],
        fail: [res("aws:ecs/service:Service", { launchType: "EC2", capacityProviderStrategies: [{ capacityProvider: "cp" }] }), res("aws:ecs/service:Service", {})],
    },
    {
        policy: "no-all-traffic-ingress",
        pass: [ingress({ fromPort: 443, toPort: 443, cidrIpv4: "10.0.0.0/8" })],
        fail: [ingress({ ipProtocol: "-1", cidrIpv4: "10.0.0.0/8" })],
    },
    {
        policy: "security-group-rules-standalone",
        pass: [res("aws:ec2/securityGroup:SecurityGroup", { vpcId: "vpc-1" })],
        fail: [
            res("aws:ec2/securityGroup:SecurityGroup", { ingress: [{ protocol: "tcp", fromPort: 80, toPort: 80, cidrBlocks: ["10.0.0.0/8"] }] }),
            res("aws:ec2/securityGroup:SecurityGroup", { egress: [{ protocol: "-1", fromPort: 0, toPort: 0, cidrBlocks: ["0.0.0.0/0"] }] }),
            res("aws:ec2/securityGroupRule:SecurityGroupRule", { type: "ingress", protocol: "tcp", fromPort: 80, toPort: 80 }),
        ],
    },
];

describe("policy pack", () => {
    it("covers every resource policy with a case", () => {
        expect(CASES.map((c) => c.policy).sort()).toEqual(RESOURCE_POLICIES.map((p) => p.name).sort());
    });

    describe.each(CASES)("$policy", ({ policy: name, pass, fail }) => {
        it.each(pass.map((r, i) => [i, r] as const))("passes compliant resource %i", (_i, r) => {
            expect(policy(name).check(r)).toEqual([]);
        });
        it.each(fail.map((r, i) => [i, r] as const))("flags violating resource %i", (_i, r) => {
            expect(policy(name).check(r).length).toBeGreaterThan(0);
        });
    });

    describe("no-sidecar-port-ingress", () => {
        const task = taskDef([
            { name: "server", image: `${HOST}/ml/inference@${DIGEST_A}`, essential: true, portMappings: [{ containerPort: 8080 }] },
            { name: "tensorboard", image: `${HOST}/tb@${DIGEST_A}`, essential: false, dockerLabels: { [SIDECAR_PORT_LABEL]: "6006" } },
        ]);
        const check = (resources: PolicyResource[]) => STACK_POLICIES.flatMap((p) => p.check(resources));

        it("passes when only the main port is admitted", () => {
            expect(check([task, ingress({ fromPort: 8080, toPort: 8080, referencedSecurityGroupId: "sg-alb" })])).toEqual([]);
        });
        it("flags a rule admitting the sidecar's port, directly or in a range", () => {
            expect(check([task, ingress({ fromPort: 6006, toPort: 6006, referencedSecurityGroupId: "sg-alb" })])).toHaveLength(1);
            expect(check([task, ingress({ fromPort: 6000, toPort: 7000, cidrIpv4: "10.0.0.0/8" })])[0].message).toMatch(/port 6006 of sidecar/);
            expect(check([task, ingress({ ipProtocol: "-1", cidrIpv4: "10.0.0.0/8" })])).toHaveLength(1);
        });
    });

    describe("ecs-load-balanced-server and ecs-capacity-matches-task (linked through property dependencies)", () => {
        const check = (resources: PolicyResource[]) => STACK_POLICIES.flatMap((p) => p.check(resources));
        const linked = (r: PolicyResource, deps: Record<string, PolicyResource[]>): PolicyResource => ({
            ...r,
            propertyDependencies: Object.fromEntries(Object.entries(deps).map(([k, v]) => [k, v.map((d) => d.urn)])),
        });
        const graph = (o: { gpu: boolean; arm: boolean; ami: string; balanced: string }) => {
            const td = res("aws:ecs/taskDefinition:TaskDefinition", {
                runtimePlatform: { cpuArchitecture: o.arm ? "ARM64" : "X86_64" },
                containerDefinitions: JSON.stringify([
                    { name: "server", essential: true, portMappings: [{ containerPort: 8080 }], resourceRequirements: o.gpu ? [{ type: "GPU", value: "1" }] : undefined },
                ]),
            });
            const lt = res(LT, { ...goodLaunchTemplate, imageId: `resolve:ssm:/aws/service/ecs/optimized-ami/amazon-linux-2023/${o.ami}recommended/image_id` });
            const asg = linked(res("aws:autoscaling/group:Group", {}), { mixedInstancesPolicy: [lt] });
            const cp = linked(res("aws:ecs/capacityProvider:CapacityProvider", { name: "env-kind" }), { autoScalingGroupProvider: [asg] });
            const service = linked(
                res("aws:ecs/service:Service", { capacityProviderStrategies: [{ capacityProvider: "env-kind" }], loadBalancers: [{ containerName: o.balanced, containerPort: 8080 }] }),
                { taskDefinition: [td] },
            );
            return [td, lt, asg, cp, service];
        };

        it("passes a GPU task on GPU capacity, an arm64 task on arm64 capacity, an x86 task on x86 capacity", () => {
            expect(check(graph({ gpu: true, arm: false, ami: "gpu/", balanced: "server" }))).toEqual([]);
            expect(check(graph({ gpu: false, arm: true, ami: "arm64/", balanced: "server" }))).toEqual([]);
            expect(check(graph({ gpu: false, arm: false, ami: "", balanced: "server" }))).toEqual([]);
        });
        it("flags a GPU task on CPU capacity, a CPU task on GPU capacity and an arm64 task on x86 capacity", () => {
            expect(check(graph({ gpu: true, arm: false, ami: "", balanced: "server" }))[0].message).toMatch(/requests a GPU but runs on env-kind/);
            expect(check(graph({ gpu: false, arm: false, ami: "gpu/", balanced: "server" }))[0].message).toMatch(/needs no GPU but runs on env-kind/);
            expect(check(graph({ gpu: false, arm: true, ami: "", balanced: "server" }))[0].message).toMatch(/runtimePlatform ARM64 but runs on env-kind/);
        });
        it("flags a port-mapped container the load balancer does not reach", () => {
            expect(check(graph({ gpu: false, arm: false, ami: "", balanced: "sidecar" })).map((v) => v.policy)).toEqual(["ecs-load-balanced-server"]);
        });
    });

    it("runPolicies reports policy, resource and message", () => {
        const bad = ingress({ fromPort: 22, toPort: 22, cidrIpv4: "0.0.0.0/0" });
        expect(runPolicies([bad])).toEqual([{ policy: "no-open-ingress", resource: bad.urn, message: "ingress 22-22 is open to the internet (0.0.0.0/0)" }]);
    });
});

describe("the Pulumi policy pack", () => {
    const args = policyPackArgs();

    it("holds every policy, each mandatory", () => {
        expect(args.enforcementLevel).toBe("mandatory");
        expect(args.policies.map((p) => p.name).sort()).toEqual([...RESOURCE_POLICIES, ...STACK_POLICIES].map((p) => p.name).sort());
        for (const p of args.policies) expect(p.enforcementLevel).toBe("mandatory");
    });

    it("reports what the plain functions report", async () => {
        const reported: string[] = [];
        const bad = res("aws:ecr/repository:Repository", { imageTagMutability: "MUTABLE" });
        for (const p of args.policies as ResourceValidationPolicy[]) {
            const validate = p.validateResource;
            if (typeof validate === "function") {
                await validate({ ...bad, props: bad.props } as unknown as Parameters<typeof validate>[0], (m) => reported.push(`${p.name}: ${m}`));
            }
        }
        expect(reported).toEqual([
            "ecr-immutable-scanned: imageTagMutability is MUTABLE; release tags must be immutable",
            "ecr-immutable-scanned: scan on push is off",
        ]);
        const stack = args.policies.find((p) => p.name === "no-sidecar-port-ingress") as StackValidationPolicy;
        const task = taskDef([{ name: "tb", image: `x/y@${DIGEST_A}`, essential: false, dockerLabels: { [SIDECAR_PORT_LABEL]: "6006" } }]);
        const rule = ingress({ fromPort: 6006, toPort: 6006, cidrIpv4: "10.0.0.0/8" });
        const urns: Array<string | undefined> = [];
        await stack.validateStack({ resources: [task, rule] } as unknown as Parameters<StackValidationPolicy["validateStack"]>[0], (_m, urn) => urns.push(urn));
        expect(urns).toEqual([rule.urn]);
    });
});
