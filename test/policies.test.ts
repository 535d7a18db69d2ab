/** Every policy of the pack, on hand-made resources that pass and that violate. */
import { describe, expect, it } from "vitest";
import type { ResourceValidationPolicy, StackValidationPolicy } from "@pulumi/policy";
import { policyPackArgs } from "../policy/pack";
import { BINDS_LABEL, ROLE_LABEL } from "../components/shared/labels";
import { ALLOWED_BASES_LABEL, ALLOWED_IMAGE_LABEL, PLAIN_HTTP_TAG, PUBLIC_TAG, type PolicyResource, RESOURCE_POLICIES, SIDECAR_PORT_LABEL, STACK_POLICIES, runPolicies } from "../policy/policies";
import { ALLOWED_BASES_LABEL as BUILD_ALLOWED_BASES_LABEL } from "../components/build/target-image";
import { DIGEST_A, digestOf } from "./fixtures";

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
/** Ten public /8 ranges: together a large part of the internet, each far from /0. */
const TEN_PUBLIC_8S = ["8", "11", "20", "31", "45", "52", "63", "77", "91", "104"].map((o) => `${o}.0.0.0/8`);
const CERT = "arn:aws:acm:us-east-1:123456789012:certificate/6f3b9a1e-2c47-4d85-b0e9-8a1f5c7d2e64";
const ALB_ARN = "arn:aws:elasticloadbalancing:us-east-1:123456789012:loadbalancer/app/svc-alb/50dc6c495c0c9188";
const forward = [{ type: "forward", targetGroupArn: "arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/svc/73e2d6bc24d8a067" }];
const listener = (props: Record<string, unknown>, type = "aws:lb/listener:Listener") => res(type, { loadBalancerArn: ALB_ARN, port: 443, defaultActions: forward, ...props });
const https = (sslPolicy: string | undefined) => listener({ protocol: "HTTPS", certificateArn: CERT, ...(sslPolicy === undefined ? {} : { sslPolicy }) });
const plainHttp = (props: Record<string, unknown> = {}) => listener({ port: 80, protocol: "HTTP", tags: { [PLAIN_HTTP_TAG]: "true" }, ...props });
const redirect = (protocol: string) => listener({ port: 80, protocol: "HTTP", defaultActions: [{ type: "redirect", redirect: { port: "443", protocol, statusCode: "HTTP_301" } }] });
/** ELB TLS policies whose oldest protocol is TLS 1.2 (current) and ones that admit TLS 1.0 or 1.1 (legacy). */
const CURRENT_TLS_POLICIES = [
    "ELBSecurityPolicy-TLS13-1-2-2021-06",
    "ELBSecurityPolicy-TLS13-1-2-Res-2021-06",
    "ELBSecurityPolicy-TLS13-1-2-Ext1-2021-06",
    "ELBSecurityPolicy-TLS13-1-2-FIPS-2023-04",
    "ELBSecurityPolicy-TLS13-1-2-Res-PQ-2025-09",
    "ELBSecurityPolicy-TLS13-1-3-2021-06",
    "ELBSecurityPolicy-TLS-1-2-2017-01",
    "ELBSecurityPolicy-TLS-1-2-Ext-2018-06",
    "ELBSecurityPolicy-FS-1-2-Res-2020-10",
];
const LEGACY_TLS_POLICIES = [
    "ELBSecurityPolicy-2016-08",
    "ELBSecurityPolicy-2015-05",
    "ELBSecurityPolicy-TLS-1-0-2015-04",
    "ELBSecurityPolicy-TLS-1-1-2017-01",
    "ELBSecurityPolicy-FS-2018-06",
    "ELBSecurityPolicy-FS-1-1-2019-08",
    "ELBSecurityPolicy-TLS13-1-1-2021-06",
    "ELBSecurityPolicy-TLS13-1-0-2021-06",
    "ELBSecurityPolicy-TLS13-1-2-2021-06-legacy",
    "TLS13-1-2-2021-06",
];
const buildImage = (buildArgs: Record<string, string>, props: Record<string, unknown> = {}) =>
    res("docker-build:index:Image", { tags: [`${HOST}/ml/inference:cpu-avx2.0123456789abcdef`], buildArgs, ...props });

// ------------------------------------------------------------------ stack policies

const OTHER_ACCOUNT = "210987654321.dkr.ecr.us-east-1.amazonaws.com";
const linked = (r: PolicyResource, deps: Record<string, PolicyResource[]>): PolicyResource => ({
    ...r,
    propertyDependencies: Object.fromEntries(Object.entries(deps).map(([k, v]) => [k, v.map((d) => d.urn)])),
});
/** A container as the program writes it: pinned image, logs to the stack's region. */
const container = (name: string, image: string, labels: Record<string, string> = {}) => ({
    name,
    image,
    logConfiguration: { logDriver: "awslogs", options: { "awslogs-region": "us-east-1" } },
    dockerLabels: labels,
});
const repoArn = (account: string, repo: string) => `arn:aws:ecr:us-east-1:${account}:repository/${repo}`;
/** A task definition, its execution role and the role's policy pulling `pulls`. */
function taskWithRole(containers: unknown[], pulls: unknown, extra: (role: PolicyResource) => PolicyResource[] = () => []): PolicyResource[] {
    const role = res("aws:iam/role:Role", {
        assumeRolePolicy: JSON.stringify({ Version: "2012-10-17", Statement: [{ Effect: "Allow", Principal: { Service: "ecs-tasks.amazonaws.com" }, Action: "sts:AssumeRole" }] }),
    });
    const td = linked(taskDef(containers), { executionRoleArn: [role] });
    const policy = linked(
        res("aws:iam/rolePolicy:RolePolicy", {
            policy: JSON.stringify({
                Version: "2012-10-17",
                Statement: [
                    { Sid: "EcrLogin", Effect: "Allow", Action: ["ecr:GetAuthorizationToken"], Resource: ["*"] },
                    { Sid: "PullTaskImages", Effect: "Allow", Action: ["ecr:BatchCheckLayerAvailability", "ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer"], Resource: pulls },
                ],
            }),
        }),
        { role: [role] },
    );
    return [role, td, policy, ...extra(role)];
}
const SERVER = `${HOST}/ml/inference@${digestOf("server")}`;
const FETCH = `${HOST}/ml/model-sync@${digestOf("fetch")}`;
const OWN_PULLS = [repoArn("123456789012", "ml/inference"), repoArn("123456789012", "ml/model-sync")];

const STACK_CASES: ReadonlyArray<{ policy: string; pass: PolicyResource[][]; fail: PolicyResource[][] }> = [
    {
        policy: "ecs-images-own-registry",
        pass: [
            [taskDef([container("server", SERVER), container("model-fetch", FETCH)])],
            [
                taskDef([container("server", SERVER)]),
                taskDef([container("server", `${HOST}/ml/inference@${digestOf("other")}`), container("otel", `public.ecr.aws/aws-observability/aws-otel-collector@${DIGEST_A}`, { [ALLOWED_IMAGE_LABEL]: "public.ecr.aws/aws-observability/" })]),
            ],
        ],
        fail: [
            // a foreign registry
            [taskDef([container("server", SERVER), container("otel", `ghcr.io/someone/otel@${DIGEST_A}`)])],
            // another account's ECR, in one task or across the stack
            [taskDef([container("server", SERVER), container("model-fetch", FETCH), container("otel", `${OTHER_ACCOUNT}/ml/metrics-exporter@${DIGEST_A}`)])],
            [taskDef([container("server", SERVER), container("model-fetch", FETCH)]), taskDef([container("server", `${OTHER_ACCOUNT}/ml/inference@${DIGEST_A}`)])],
            // another region's ECR than the tasks run in
            [taskDef([container("server", `123456789012.dkr.ecr.eu-west-1.amazonaws.com/ml/inference@${DIGEST_A}`)])],
            // an allow-list label that does not admit the image
            [taskDef([container("server", SERVER), container("otel", `ghcr.io/someone/otel@${DIGEST_A}`, { [ALLOWED_IMAGE_LABEL]: "ghcr.io/other/" })])],
        ],
    },
    {
        policy: "ecs-execution-role-pulls-own-images",
        pass: [
            taskWithRole([container("server", SERVER), container("model-fetch", FETCH)], OWN_PULLS),
            taskWithRole([container("server", SERVER), container("otel", `public.ecr.aws/aws-observability/aws-otel-collector@${DIGEST_A}`)], [repoArn("123456789012", "ml/inference")]),
            // A role no task definition runs as (a runner's) is not an execution role.
            [res("aws:iam/rolePolicy:RolePolicy", { policy: JSON.stringify({ Version: "2012-10-17", Statement: [{ Effect: "Allow", Action: ["ecr:BatchGetImage"], Resource: [repoArn("123456789012", "docker-hub/*")] }] }) })],
        ],
        fail: [
            // granted a foreign repository (another account's) no image of the task is in
            taskWithRole([container("server", SERVER), container("model-fetch", FETCH)], [...OWN_PULLS, repoArn("210987654321", "someone/tool")]),
            // every repository
            taskWithRole([container("server", SERVER)], ["*"]),
            taskWithRole([container("server", SERVER)], [repoArn("123456789012", "ml/*")]),
            // the AWS-managed execution policy reads every repository
            taskWithRole([container("server", SERVER)], [repoArn("123456789012", "ml/inference")], (role) => [
                linked(res("aws:iam/rolePolicyAttachment:RolePolicyAttachment", { policyArn: "arn:aws:iam::aws:policy/service-role/AmazonECSTaskExecutionRolePolicy" }), { role: [role] }),
            ]),
        ],
    },
];

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
            taskDef([{ name: "server", image: `${HOST}/ml/inference:v1@${DIGEST_A}` }]),
            taskDef([{ name: "fetch", image: `public.ecr.aws/aws-cli/aws-cli@sha256:${"0".repeat(63)}1` }]),
            taskDef([{ name: "server", image: `${HOST}/ml/inference@sha256:${DIGEST_A.slice(7).toUpperCase()}` }]),
        ],
    },
    {
        policy: "build-bases-own-registry",
        pass: [
            buildImage({ BASE_IMAGE: `${HOST}/ecr-public/docker/library/debian:bookworm-slim`, RUNTIME_BASE_IMAGE: `${HOST}/ml/torch-base@${DIGEST_A}`, BUILD_BASE_IMAGE: `${HOST}/docker-hub/nvidia/cuda:12.8.1-devel-ubuntu22.04` }),
            buildImage({ BASE_IMAGE: "127.0.0.1:5000/debian:bookworm-slim" }, { tags: ["127.0.0.1:5000/ml/inference:cpu-avx2.0123456789abcdef"] }),
            buildImage({ BASE_IMAGE: "docker.io/library/debian:bookworm-slim" }, { labels: { [ALLOWED_BASES_LABEL]: "quay.io/x/y:1, docker.io/library/debian:bookworm-slim" } }),
            buildImage({ KERNEL_CFLAGS: "-O3" }),
        ],
        fail: [
            buildImage({ BASE_IMAGE: "ghcr.io/someone/base:latest" }),
            buildImage({ BASE_IMAGE: `${HOST}/ecr-public/debian:12`, RUNTIME_BASE_IMAGE: `210987654321.dkr.ecr.us-east-1.amazonaws.com/ml/base@${DIGEST_A}` }),
            buildImage({ BUILD_BASE_IMAGE: "nvidia/cuda:12.8.1-devel-ubuntu22.04" }),
            buildImage({ BASE_IMAGE: "docker.io/library/debian:bookworm-slim" }, { labels: { [ALLOWED_BASES_LABEL]: "docker.io/library/debian:bookworm" } }),
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
        pass: [
            ingress({ fromPort: 443, toPort: 443, cidrIpv4: "10.0.0.0/16" }),
            ingress({ fromPort: 443, toPort: 443, cidrIpv4: "172.16.0.0/12" }),
            ingress({ fromPort: 443, toPort: 443, cidrIpv4: "192.168.10.0/24" }),
            ingress({ fromPort: 443, toPort: 443, cidrIpv4: "100.64.0.0/10" }),
            ingress({ fromPort: 443, toPort: 443, cidrIpv6: "fd12:3456:789a::/48" }),
            ingress({ fromPort: 443, toPort: 443, referencedSecurityGroupId: "sg-0123456789abcdef0" }),
            res("aws:ec2/securityGroup:SecurityGroup", { ingress: [{ protocol: "tcp", fromPort: 443, toPort: 443, cidrBlocks: ["10.20.0.0/16"], securityGroups: ["sg-1"] }] }),
            res("aws:ec2/securityGroupRule:SecurityGroupRule", { type: "ingress", protocol: "tcp", fromPort: 443, toPort: 443, cidrBlocks: ["10.0.0.0/8"] }),
            // Egress is not ingress.
            res("aws:ec2/securityGroupRule:SecurityGroupRule", { type: "egress", protocol: "tcp", fromPort: 443, toPort: 443, cidrBlocks: ["0.0.0.0/0"] }),
        ],
        fail: [
            ingress({ fromPort: 443, toPort: 443, cidrIpv4: "0.0.0.0/0" }),
            // Tagging a rule public no longer admits the internet: ingress is private address space only.
            ingress({ fromPort: 443, toPort: 443, cidrIpv4: "0.0.0.0/0", tags: { [PUBLIC_TAG]: "true" } }),
            ingress({ fromPort: 1234, toPort: 1234, cidrIpv4: "0.0.0.0/1" }),
            // Public address space whatever the prefix length: one /8, an endpoint group's "VPC" 8.0.0.0/8, a /32.
            ingress({ fromPort: 1234, toPort: 1234, cidrIpv4: "11.0.0.0/8" }),
            ingress({ fromPort: 443, toPort: 443, cidrIpv4: "8.0.0.0/8", description: "HTTPS from the VPC" }),
            ingress({ fromPort: 22, toPort: 22, cidrIpv4: "203.0.113.7/32" }),
            // Just outside each private range.
            ingress({ fromPort: 443, toPort: 443, cidrIpv4: "172.32.0.0/16" }),
            ingress({ fromPort: 443, toPort: 443, cidrIpv4: "192.169.0.0/16" }),
            ingress({ fromPort: 443, toPort: 443, cidrIpv4: "100.128.0.0/10" }),
            ingress({ fromPort: 443, toPort: 443, cidrIpv4: "10.0.0.0/7" }),
            ingress({ fromPort: 443, toPort: 443, cidrIpv6: "::/0" }),
            ingress({ fromPort: 443, toPort: 443, cidrIpv6: "2001:db8::/32" }),
            ingress({ fromPort: 443, toPort: 443, cidrIpv4: "not-a-network" }),
            res("aws:ec2/securityGroup:SecurityGroup", { ingress: [{ protocol: "tcp", fromPort: 22, toPort: 22, cidrBlocks: ["0.0.0.0/0"] }] }),
            res("aws:ec2/securityGroup:SecurityGroup", { ingress: [{ protocol: "tcp", fromPort: 443, toPort: 443, cidrBlocks: ["10.0.0.0/16", "52.0.0.0/8"] }] }),
            res("aws:ec2/securityGroupRule:SecurityGroupRule", { type: "ingress", protocol: "-1", cidrBlocks: ["10.0.0.0/8"], ipv6CidrBlocks: ["::/0"] }),
            res("aws:ec2/securityGroupRule:SecurityGroupRule", { type: "ingress", protocol: "tcp", fromPort: 443, toPort: 443, cidrBlocks: ["45.0.0.0/8"] }),
        ],
    },
    {
        policy: "lb-listeners-https",
        pass: [
            https("ELBSecurityPolicy-TLS13-1-2-2021-06"),
            listener({ protocol: "HTTPS", certificateArn: CERT, sslPolicy: "ELBSecurityPolicy-TLS-1-2-Ext-2018-06" }, "aws:alb/listener:Listener"),
            // An NLB's TLS listener, with a current policy.
            listener({ protocol: "TLS", certificateArn: CERT, sslPolicy: "ELBSecurityPolicy-TLS13-1-3-2021-06" }),
            plainHttp(),
            plainHttp({ protocol: undefined }),
            redirect("HTTPS"),
            // TCP passes bytes through (the runners' NLB: mutual TLS at buildkitd).
            listener({ port: 1234, protocol: "TCP" }),
        ],
        fail: [
            https("ELBSecurityPolicy-TLS-1-0-2015-04"),
            https("ELBSecurityPolicy-2016-08"),
            https("ELBSecurityPolicy-TLS13-1-1-2021-06"),
            // No policy named: AWS's default (2016-08) admits TLS 1.0.
            https(undefined),
            listener({ protocol: "TLS", certificateArn: CERT, sslPolicy: "ELBSecurityPolicy-FS-1-1-2019-08" }),
            // Plain HTTP the stack did not choose: forwarding, unset protocol, the alb module's listener, a tag that says false.
            listener({ port: 80, protocol: "HTTP" }),
            listener({ port: 80 }),
            listener({ port: 80, protocol: "HTTP" }, "aws:alb/listener:Listener"),
            plainHttp({ tags: { [PLAIN_HTTP_TAG]: "false" } }),
            redirect("HTTP"),
            // A certificate configured, yet HTTP (or TCP): the opt-in does not excuse it.
            plainHttp({ certificateArn: CERT }),
            listener({ port: 443, protocol: "TCP", certificateArn: CERT }),
            // A certificate of another account, or of another region, than the load balancer's.
            listener({ protocol: "HTTPS", certificateArn: CERT.replace("123456789012", "210987654321"), sslPolicy: "ELBSecurityPolicy-TLS13-1-2-2021-06" }),
            listener({ protocol: "HTTPS", certificateArn: CERT.replace("us-east-1", "eu-west-1"), sslPolicy: "ELBSecurityPolicy-TLS13-1-2-2021-06" }),
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
    // ---- the enforced AWSGuard policies (policy/awsguard.ts), on @pulumi/aws v7 resources
    {
        policy: "alb-http-to-https-redirection",
        pass: [redirect("HTTPS"), https("ELBSecurityPolicy-TLS13-1-2-2021-06"), plainHttp(), listener({ port: 1234, protocol: "TCP" })],
        fail: [
            listener({ port: 80, protocol: "HTTP" }),
            listener({ port: 80, protocol: "HTTP" }, "aws:alb/listener:Listener"),
            listener({ port: 80, protocol: "HTTP" }, "aws:elasticloadbalancingv2/listener:Listener"),
            redirect("HTTP"),
            plainHttp({ tags: { [PLAIN_HTTP_TAG]: "yes" } }),
        ],
    },
    {
        policy: "ec2-instance-no-public-ip",
        pass: [res("aws:ec2/instance:Instance", { associatePublicIpAddress: false })],
        fail: [res("aws:ec2/instance:Instance", { associatePublicIpAddress: true })],
    },
    {
        policy: "encrypted-volumes",
        pass: [res("aws:ec2/instance:Instance", { rootBlockDevice: { encrypted: true }, ebsBlockDevices: [{ deviceName: "/dev/xvdb", encrypted: true }] })],
        fail: [
            res("aws:ec2/instance:Instance", {}),
            res("aws:ec2/instance:Instance", { rootBlockDevice: { encrypted: false } }),
            res("aws:ec2/instance:Instance", { rootBlockDevice: { encrypted: true }, ebsBlockDevices: [{ deviceName: "/dev/xvdb", encrypted: false }] }),
        ],
    },
    {
        policy: "rds-instance-public-access",
        pass: [res("aws:rds/instance:Instance", { publiclyAccessible: false, storageEncrypted: true })],
        fail: [res("aws:rds/instance:Instance", { publiclyAccessible: true, storageEncrypted: true })],
    },
    {
        policy: "rds-storage-encrypted",
        pass: [res("aws:rds/instance:Instance", { storageEncrypted: true }), res("aws:rds/instance:Instance", { replicateSourceDb: "primary" })],
        fail: [res("aws:rds/instance:Instance", {}), res("aws:rds/instance:Instance", { storageEncrypted: false })],
    },
    {
        policy: "redshift-cluster-public-access",
        pass: [res("aws:redshift/cluster:Cluster", { publiclyAccessible: false })],
        fail: [res("aws:redshift/cluster:Cluster", { publiclyAccessible: true }), res("aws:redshift/cluster:Cluster", {})],
    },
    {
        policy: "dynamodb-table-encryption-enabled",
        pass: [res("aws:dynamodb/table:Table", { serverSideEncryption: { enabled: true } }), res("aws:dynamodb/table:Table", {})],
        fail: [res("aws:dynamodb/table:Table", { serverSideEncryption: { enabled: false } })],
    },
    {
        policy: "elasticsearch-encrypted-at-rest",
        pass: [res("aws:elasticsearch/domain:Domain", { domainName: "d", encryptAtRest: { enabled: true }, vpcOptions: { subnetIds: ["s"] } })],
        fail: [res("aws:elasticsearch/domain:Domain", { domainName: "d" }), res("aws:elasticsearch/domain:Domain", { domainName: "d", encryptAtRest: { enabled: false } })],
    },
    {
        policy: "elasticsearch-in-vpc-only",
        pass: [res("aws:elasticsearch/domain:Domain", { domainName: "d", vpcOptions: { subnetIds: ["s"] } })],
        fail: [res("aws:elasticsearch/domain:Domain", { domainName: "d" })],
    },
];

describe("policy pack", () => {
    it("covers every resource policy with a case", () => {
        expect(CASES.map((c) => c.policy).sort()).toEqual(RESOURCE_POLICIES.map((p) => p.name).sort());
    });

    it("covers every stack policy with a passing and a violating case", () => {
        const covered = new Set([...STACK_CASES.map((c) => c.policy), "no-sidecar-port-ingress", "ecs-load-balanced-server", "ecs-capacity-matches-task"]);
        expect([...covered].sort()).toEqual(STACK_POLICIES.map((p) => p.name).sort());
        for (const c of STACK_CASES) {
            expect(c.pass.length, c.policy).toBeGreaterThan(0);
            expect(c.fail.length, c.policy).toBeGreaterThan(0);
        }
    });

    describe.each(STACK_CASES)("$policy", ({ policy: name, pass, fail }) => {
        const stackPolicy = STACK_POLICIES.find((p) => p.name === name);
        it.each(pass.map((r, i) => [i, r] as const))("passes compliant stack %i", (_i, resources) => {
            expect(stackPolicy?.check(resources)).toEqual([]);
        });
        it.each(fail.map((r, i) => [i, r] as const))("flags violating stack %i", (_i, resources) => {
            const found = stackPolicy?.check(resources) ?? [];
            expect(found.length).toBeGreaterThan(0);
            for (const v of found) expect(v.policy).toBe(name);
        });
    });

    it("says what is wrong: a foreign registry, another account, a role granted a foreign repository, a base on another registry", () => {
        const run = (resources: PolicyResource[]) => runPolicies(resources).map((v) => `[${v.policy}] ${v.message}`);
        expect(run([taskDef([container("server", SERVER), container("otel", `ghcr.io/someone/otel@${DIGEST_A}`)])])).toEqual([
            `[ecs-images-own-registry] container otel runs "ghcr.io/someone/otel@${DIGEST_A}": ghcr.io is not an ECR registry: environments deploy from their own registry, or from a repository serve.allowedImages admits`,
        ]);
        expect(run([taskDef([container("server", SERVER), container("model-fetch", FETCH), container("otel", `${OTHER_ACCOUNT}/ml/metrics-exporter@${DIGEST_A}`)])])).toEqual([
            `[ecs-images-own-registry] container otel runs "${OTHER_ACCOUNT}/ml/metrics-exporter@${DIGEST_A}": registry ${OTHER_ACCOUNT} (account 210987654321) is not the one the stack's other images come from (${HOST}): one registry per stack`,
        ]);
        expect(run(taskWithRole([container("server", SERVER), container("model-fetch", FETCH)], [...OWN_PULLS, repoArn("210987654321", "someone/tool")]))).toEqual([
            `[ecs-execution-role-pulls-own-images] execution role may pull from ${repoArn("210987654321", "someone/tool")}, which holds no image its task definitions run`,
        ]);
        expect(run([buildImage({ BASE_IMAGE: "ghcr.io/someone/base:latest" })])).toEqual([
            `[build-bases-own-registry] build arg BASE_IMAGE = ghcr.io/someone/base:latest is on ghcr.io, not the image's registry ${HOST}: pull it through the registry's pull-through cache, or list the exact reference in build.allowedBaseImages (label ${ALLOWED_BASES_LABEL})`,
        ]);
        expect(run([taskDef([container("server", `${HOST}/ml/inference:latest`)])])).toEqual([
            `[ecs-images-pinned] container server runs "${HOST}/ml/inference:latest", which is a tag (":latest"), not pinned by digest (a tag can move): use <registry>/<repository>@sha256:<64 hex digits>`,
        ]);
    });

    it("reads the allowed-bases label the build side writes", () => {
        expect(ALLOWED_BASES_LABEL).toBe(BUILD_ALLOWED_BASES_LABEL);
    });

    it("checks what is known during a preview and skips what is not (the policy SDK throws on an unknown value)", () => {
        class UnknownValueError extends Error {}
        const unknownArgs = new Proxy({} as Record<string, unknown>, {
            get: (_t, key) => {
                if (key === "BASE_IMAGE") throw new UnknownValueError("unknown");
                return key === "RUNTIME_BASE_IMAGE" ? "ghcr.io/someone/base:latest" : undefined;
            },
        });
        const image = res("docker-build:index:Image", { tags: [`${HOST}/ml/inference:x`], buildArgs: unknownArgs });
        expect(policy("build-bases-own-registry").check(image)).toEqual([expect.stringMatching(/^build arg RUNTIME_BASE_IMAGE = ghcr\.io/)]);
        // Any other error is a bug and is not swallowed.
        const broken = res("docker-build:index:Image", { tags: [`${HOST}/ml/inference:x`], buildArgs: new Proxy({}, { get: () => { throw new TypeError("bug"); } }) });
        expect(() => policy("build-bases-own-registry").check(broken)).toThrow(/bug/);
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

    describe("no-sidecar-port-ingress judges a rule by the sidecars of the tasks in its group", () => {
        const sidecarPolicy = STACK_POLICIES.find((p) => p.name === "no-sidecar-port-ingress");
        const check = (resources: PolicyResource[]) => sidecarPolicy?.check(resources) ?? [];
        /** A service as the program makes it: its group, its task definition (server on `port`, sidecars on theirs), and the rule admitting the ALB to `port`. */
        const service = (name: string, port: number, sidecars: Record<string, number>, ruleGroup: "linked" | "literal" = "linked") => {
            const group = { ...res("aws:ec2/securityGroup:SecurityGroup", { vpcId: "vpc-1" }), name: `${name}-task-sg` };
            const groupId = `${name}-task-sg-id`;
            const td = taskDef([
                { name: "server", essential: true, portMappings: [{ containerPort: port }] },
                ...Object.entries(sidecars).map(([c, p]) => ({ name: c, essential: false, dockerLabels: { [SIDECAR_PORT_LABEL]: String(p) } })),
            ]);
            const svc = linked(res("aws:ecs/service:Service", { networkConfiguration: { securityGroups: [groupId], subnets: ["s"] }, capacityProviderStrategies: [{ capacityProvider: "cp" }] }), {
                taskDefinition: [td],
                networkConfiguration: [group],
            });
            const rule = ingress({ fromPort: port, toPort: port, referencedSecurityGroupId: "sg-alb", securityGroupId: groupId });
            const ruleLinked = ruleGroup === "linked" ? linked(rule, { securityGroupId: [group] }) : rule;
            return { group, groupId, td, svc, rule: ruleLinked };
        };

        it("passes service A's rule on its server port although service B has a sidecar on that port number", () => {
            const a = service("a", 13133, {});
            const b = service("b", 8080, { "metrics-exporter": 13133 });
            expect(check([a.group, a.td, a.svc, a.rule, b.group, b.td, b.svc, b.rule])).toEqual([]);
            // The same when the rule names its group only by ID (an existing group, or after the first deployment).
            const literal = service("a", 13133, {}, "literal");
            expect(check([literal.group, literal.td, literal.svc, literal.rule, b.group, b.td, b.svc, b.rule])).toEqual([]);
        });

        it("flags a rule of B's group admitting B's own sidecar port", () => {
            const a = service("a", 13133, {});
            const b = service("b", 8080, { "metrics-exporter": 13133 });
            const opened = linked(ingress({ fromPort: 13000, toPort: 14000, referencedSecurityGroupId: "sg-alb", securityGroupId: b.groupId }), { securityGroupId: [b.group] });
            const found = check([a.group, a.td, a.svc, a.rule, b.group, b.td, b.svc, b.rule, opened]);
            expect(found.map((v) => [v.resource, v.message])).toEqual([[opened.urn, `admits port 13133 of sidecar ${b.td.name}/metrics-exporter`]]);
            // By ID too, and an inline rule of B's group.
            const byId = ingress({ fromPort: 13133, toPort: 13133, cidrIpv4: "10.0.0.0/8", securityGroupId: b.groupId });
            expect(check([b.group, b.td, b.svc, byId])).toHaveLength(1);
            const inline = { ...b.group, props: { vpcId: "vpc-1", ingress: [{ protocol: "tcp", fromPort: 13133, toPort: 13133, cidrBlocks: ["10.0.0.0/8"] }] } };
            expect(check([inline, b.td, b.svc])).toHaveLength(1);
        });

        it("judges a rule whose group it cannot tell against every sidecar of the stack", () => {
            const b = service("b", 8080, { "metrics-exporter": 13133 });
            expect(check([b.group, b.td, b.svc, ingress({ fromPort: 13133, toPort: 13133, cidrIpv4: "10.0.0.0/8" })])).toHaveLength(1);
        });

        it("passes a rule of a group no task runs in (the runners' load balancer on 13133)", () => {
            const b = service("b", 8080, { "metrics-exporter": 13133 });
            const nlbGroup = res("aws:ec2/securityGroup:SecurityGroup", { vpcId: "vpc-1" });
            const nlbRule = linked(ingress({ fromPort: 13133, toPort: 13133, cidrIpv4: "10.0.0.0/16", securityGroupId: "nlb-sg-id" }), { securityGroupId: [nlbGroup] });
            expect(check([b.group, b.td, b.svc, nlbGroup, nlbRule])).toEqual([]);
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
        expect(runPolicies([bad])).toEqual([{ policy: "no-open-ingress", resource: bad.urn, message: "ingress 22-22 is open to the internet (0.0.0.0/0): the whole internet; name the callers' networks" }]);
    });

    describe("no-open-ingress: public address space whatever the prefix length", () => {
        const check = (r: PolicyResource) => policy("no-open-ingress").check(r);

        it("refuses each of ten public /8 ranges, in every form a rule takes", () => {
            const inline = res("aws:ec2/securityGroup:SecurityGroup", { ingress: [{ protocol: "tcp", fromPort: 8080, toPort: 8080, cidrBlocks: ["10.0.0.0/16", ...TEN_PUBLIC_8S] }] });
            expect(check(inline)).toHaveLength(10);
            const ec2Rule = res("aws:ec2/securityGroupRule:SecurityGroupRule", { type: "ingress", protocol: "tcp", fromPort: 8080, toPort: 8080, cidrBlocks: TEN_PUBLIC_8S });
            expect(check(ec2Rule)).toHaveLength(10);
            for (const cidr of TEN_PUBLIC_8S) {
                expect(check(ingress({ fromPort: 8080, toPort: 8080, cidrIpv4: cidr }))).toEqual([
                    `ingress 8080-8080 is open to the internet (${cidr}): public address space (outside 10.0.0.0/8, 172.16.0.0/12, 192.168.0.0/16, 100.64.0.0/10); ingress is admitted from private networks only (this VPC, peered VPCs, VPN), never from the internet`,
                ]);
            }
        });

        it("refuses an endpoint security group admitting 8.0.0.0/8 (what a public VPC range would make of the endpoint group)", () => {
            const endpointRule = ingress({ fromPort: 443, toPort: 443, cidrIpv4: "8.0.0.0/8", description: "HTTPS from the VPC", securityGroupId: "sg-endpoints" });
            expect(runPolicies([endpointRule]).map((v) => v.policy)).toEqual(["no-open-ingress"]);
        });

        it("admits the four private ranges and anything inside them, and security groups", () => {
            for (const cidr of ["10.0.0.0/8", "10.255.255.255/32", "172.16.0.0/12", "172.31.255.0/24", "192.168.0.0/16", "100.64.0.0/10", "100.127.255.0/24"]) {
                expect(check(ingress({ fromPort: 443, toPort: 443, cidrIpv4: cidr })), cidr).toEqual([]);
            }
        });
    });

    describe("lb-listeners-https: current TLS policies", () => {
        const check = (r: PolicyResource) => policy("lb-listeners-https").check(r);
        it.each(CURRENT_TLS_POLICIES)("admits %s", (name) => {
            expect(check(https(name))).toEqual([]);
        });
        it.each(LEGACY_TLS_POLICIES)("refuses %s", (name) => {
            expect(check(https(name))).toEqual([expect.stringMatching(new RegExp(`^HTTPS listener on port 443: sslPolicy ${name} is not (a current TLS policy|an ELB TLS policy)`))]);
        });
        it("says how to serve plain HTTP on purpose", () => {
            expect(check(listener({ port: 80, protocol: "HTTP" }))).toEqual([
                `plain HTTP listener on port 80 neither redirects to HTTPS nor is marked as chosen by its stack: serve HTTPS with a certificate (serve.loadBalancer.certificateArn), or opt in to plain HTTP (serve.loadBalancer.protocol: http, which tags the listener ${PLAIN_HTTP_TAG}=true)`,
            ]);
        });
        it("judges nothing that is unknown during a preview", () => {
            class UnknownValueError extends Error {}
            const unknownProps = new Proxy({} as Record<string, unknown>, {
                get: () => {
                    throw new UnknownValueError("unknown");
                },
            });
            expect(check(res("aws:lb/listener:Listener", unknownProps))).toEqual([]);
        });
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
