/**
 * The project's policies as plain functions over resources (type + input
 * properties), so they can be unit-tested on hand-made resources, run by the
 * offline plan, and wrapped as a Pulumi policy pack (policy/index.ts) for
 * `pulumi preview --policy-pack policy`. Every policy is mandatory. The
 * AWSGuard policies the pack enforces (./awsguard) are resource policies here
 * like ours, so the offline plan runs them too.
 */
import { parseImage } from "../components/registry/pullthrough";
import { ALLOWED_IMAGE_LABEL } from "../components/serve/container-definitions";
import { allowedEntryFor, mostCommon, refProblem, splitRef } from "../components/serve/images";
import { PLAIN_HTTP_TAG, tlsPolicyProblem } from "../components/serve/listener";
import { ecrRepositoryArn } from "../components/serve/task-iam";
import { ingressRangeProblem } from "../components/shared/cidr";
import { ecrLocation } from "../components/shared/image-refs";
import { BINDS_LABEL, ROLE_LABEL, SIDECAR_PORT_LABEL } from "../components/shared/labels";
import { AWSGUARD_POLICIES } from "./awsguard";
import { iamDocumentProblems } from "./iam-grammar";
import { known } from "./known";

export type { PolicyResource, ResourcePolicy, StackPolicy, Violation } from "./types";
import type { PolicyResource, ResourcePolicy, StackPolicy, Violation } from "./types";

/** Tag that marks a load balancer as internet-facing on purpose. (Ingress from public address space is refused whatever the tags.) */
export const PUBLIC_TAG = "ml-infra:public";
export { ALLOWED_IMAGE_LABEL, PLAIN_HTTP_TAG, SIDECAR_PORT_LABEL };

/**
 * Label of a docker-build Image listing (comma-separated, exact references)
 * the base images it may be built from although they are not on its own
 * registry: the build side writes it from `build.allowedBaseImages`.
 */
export const ALLOWED_BASES_LABEL = "ml-infra.allowed-bases";
/** Build args that name an image a build starts from. */
export const BASE_IMAGE_ARGS: readonly string[] = ["BASE_IMAGE", "RUNTIME_BASE_IMAGE", "BUILD_BASE_IMAGE"];

// ------------------------------------------------------------------ helpers

type Obj = Record<string, unknown>;
const isObj = (v: unknown): v is Obj => typeof v === "object" && v !== null && !Array.isArray(v);
const list = (v: unknown): unknown[] => (Array.isArray(v) ? v : v === undefined || v === null ? [] : [v]);
const truthy = (v: unknown) => v === true || v === "true";
const str = (v: unknown) => (typeof v === "string" ? v : "");

/** Parses a JSON string property (task definitions, policies); objects are taken as they are. */
function json(v: unknown): unknown {
    if (typeof v !== "string") return v;
    try {
        return JSON.parse(v) as unknown;
    } catch {
        return undefined;
    }
}

function tagsOf(r: PolicyResource): Obj {
    return isObj(r.props.tags) ? r.props.tags : {};
}

const LAUNCH_TEMPLATE = "aws:ec2/launchTemplate:LaunchTemplate";
const INSTANCE = "aws:ec2/instance:Instance";

// --------------------------------------------------------------- resources

const noPublicIp: ResourcePolicy = {
    name: "no-public-ip",
    description: "Runners, instances and tasks get no public IP address.",
    check: (r) => {
        if (r.type === LAUNCH_TEMPLATE) {
            return list(r.props.networkInterfaces)
                .filter((ni) => isObj(ni) && truthy(ni.associatePublicIpAddress))
                .map(() => "launch template network interface associates a public IP");
        }
        if (r.type === INSTANCE && truthy(r.props.associatePublicIpAddress)) return ["instance associates a public IP"];
        if (r.type === "aws:ecs/service:Service") {
            const nc = r.props.networkConfiguration;
            if (isObj(nc) && truthy(nc.assignPublicIp)) return ["ECS service assigns public IPs to its tasks"];
        }
        return [];
    },
};

const imdsv2: ResourcePolicy = {
    name: "imdsv2-required",
    description: "Instances require IMDSv2 (session tokens).",
    check: (r) => {
        if (r.type !== LAUNCH_TEMPLATE && r.type !== INSTANCE) return [];
        const md = r.props.metadataOptions;
        return isObj(md) && md.httpTokens === "required" ? [] : ["metadataOptions.httpTokens must be \"required\" (IMDSv2)"];
    },
};

const encryptedVolumes: ResourcePolicy = {
    name: "volumes-encrypted",
    description: "Every EBS volume is encrypted.",
    check: (r) => {
        if (r.type === LAUNCH_TEMPLATE) {
            return list(r.props.blockDeviceMappings)
                .filter((m) => isObj(m) && isObj(m.ebs) && !truthy(m.ebs.encrypted))
                .map((m) => `volume ${str((m as Obj).deviceName)} is not encrypted`);
        }
        if (r.type === "aws:ebs/volume:Volume" && !truthy(r.props.encrypted)) return ["EBS volume is not encrypted"];
        return [];
    },
};

const ecrReleaseRepos: ResourcePolicy = {
    name: "ecr-immutable-scanned",
    description:
        "ECR release tags are immutable and scanned on push; only the cache-* tags of a cache repository and the deployed-* markers of a release repository may be overwritten.",
    check: (r) => {
        if (r.type !== "aws:ecr/repository:Repository") return [];
        const out: string[] = [];
        const mutability = str(r.props.imageTagMutability) || "MUTABLE";
        const filters = list(r.props.imageTagMutabilityExclusionFilters);
        const isCache = tagsOf(r)["ml-infra:purpose"] === "build-cache";
        const mayMove = isCache ? "cache-*" : "deployed-*";
        if (mutability === "IMMUTABLE_WITH_EXCLUSION") {
            const bad = filters.filter((f) => !isObj(f) || str(f.filter) !== mayMove);
            if (bad.length) out.push(`tag-immutability exclusions of a ${isCache ? "cache" : "release"} repository may only cover ${mayMove} tags`);
        } else if (mutability !== "IMMUTABLE") {
            out.push(`imageTagMutability is ${mutability}; release tags must be immutable`);
        }
        const scan = r.props.imageScanningConfiguration;
        if (!isCache && !(isObj(scan) && truthy(scan.scanOnPush))) out.push("scan on push is off");
        return out;
    },
};

interface ContainerDef {
    name?: string;
    image?: string;
    logConfiguration?: { options?: Record<string, string> };
    essential?: boolean;
    portMappings?: unknown[];
    resourceRequirements?: Array<{ type?: string; value?: string }>;
    dockerLabels?: Record<string, string>;
}

function containersOf(r: PolicyResource): ContainerDef[] {
    if (r.type !== "aws:ecs/taskDefinition:TaskDefinition") return [];
    return list(json(r.props.containerDefinitions)).filter(isObj) as ContainerDef[];
}

const pinnedImages: ResourcePolicy = {
    name: "ecs-images-pinned",
    description: "Every ECS container image is pinned by a digest a build could have produced: registry/repository@sha256:<64 lower-case hex>, no tag, no placeholder (all zeros, long runs, repeated patterns).",
    check: (r) =>
        containersOf(r).flatMap((c) => {
            const problem = refProblem(str(c.image));
            return problem ? [`container ${str(c.name)} runs ${JSON.stringify(c.image)}, which ${/^(is|names|must) /.test(problem) ? problem : `has a bad digest: ${problem}`}`] : [];
        }),
};

const ECR_HOST = /\.dkr\.ecr\.[a-z0-9-]+\.amazonaws\.com(\.cn)?\//;

const ecrCacheManifest: ResourcePolicy = {
    name: "ecr-cache-image-manifest",
    description: "A docker-build image exporting its cache to ECR uses imageManifest and ociMediaTypes (ECR rejects anything else).",
    check: (r) => {
        if (r.type !== "docker-build:index:Image") return [];
        return list(r.props.cacheTo)
            .map((c) => (isObj(c) && isObj(c.registry) ? c.registry : undefined))
            .filter((reg): reg is Obj => reg !== undefined && ECR_HOST.test(str(reg.ref)))
            .filter((reg) => !truthy(reg.imageManifest) || !truthy(reg.ociMediaTypes))
            .map((reg) => `cache export to ${str(reg.ref)} needs imageManifest: true and ociMediaTypes: true`);
    },
};

const buildBasesOwnRegistry: ResourcePolicy = {
    name: "build-bases-own-registry",
    description: `A docker-build image starts from bases (build args ${BASE_IMAGE_ARGS.join(", ")}) on its own registry (its tags' host: the registry itself or its pull-through cache), unless its label ${ALLOWED_BASES_LABEL} lists the exact reference.`,
    check: (r) => {
        if (r.type !== "docker-build:index:Image") return [];
        const tags = known(() => list(r.props.tags).map(str).filter(Boolean));
        if (!tags || tags.length === 0) return [];
        const host = parseImage(tags[0]).host;
        const labels = known(() => (isObj(r.props.labels) ? str(r.props.labels[ALLOWED_BASES_LABEL]) : "")) ?? "";
        const allowed = labels.split(",").map((x) => x.trim()).filter(Boolean);
        const args = known(() => (isObj(r.props.buildArgs) ? r.props.buildArgs : {})) ?? {};
        return BASE_IMAGE_ARGS.flatMap((arg) => {
            const value = known(() => args[arg]);
            if (typeof value !== "string" || value === "") return [];
            const baseHost = parseImage(value).host;
            if (baseHost === host || allowed.includes(value)) return [];
            return [`build arg ${arg} = ${value} is on ${baseHost}, not the image's registry ${host}: pull it through the registry's pull-through cache, or list the exact reference in build.allowedBaseImages (label ${ALLOWED_BASES_LABEL})`];
        });
    },
};

interface Statement {
    Effect?: string;
    Action?: string | string[];
    NotAction?: string | string[];
    Resource?: string | string[];
    NotResource?: string | string[];
    Principal?: unknown;
}

/** Policy documents carried by a resource (inline role policies, managed policies, role policies). */
function policyDocuments(r: PolicyResource): unknown[] {
    switch (r.type) {
        case "aws:iam/policy:Policy":
        case "aws:iam/rolePolicy:RolePolicy":
        case "aws:iam/userPolicy:UserPolicy":
        case "aws:iam/groupPolicy:GroupPolicy":
            return [json(r.props.policy)];
        case "aws:iam/role:Role":
            return list(r.props.inlinePolicies).map((p) => (isObj(p) ? json(p.policy) : undefined));
        default:
            return [];
    }
}

const iamGrammar: ResourcePolicy = {
    name: "iam-document-valid",
    description: "Every IAM policy document follows the grammar (Version, Statement, Effect, Action, Resource, Condition).",
    check: (r) => {
        const identity = policyDocuments(r).flatMap((doc) => iamDocumentProblems(doc, "identity"));
        const trust = r.type === "aws:iam/role:Role" ? iamDocumentProblems(json(r.props.assumeRolePolicy), "trust") : [];
        return [...identity, ...trust.map((p) => `assume-role policy: ${p}`)];
    },
};

const ALLOWED_STAR = new Set(["ecr:GetAuthorizationToken"]);

const iamNoWildcards: ResourcePolicy = {
    name: "iam-no-wildcards",
    description: "IAM statements name their actions and resources; only ecr:GetAuthorizationToken may use Resource \"*\".",
    check: (r) => {
        const out: string[] = [];
        for (const doc of policyDocuments(r)) {
            const statements = isObj(doc) ? list(doc.Statement).filter(isObj) : [];
            for (const s of statements as Statement[]) {
                const actions = list(s.Action).map(str);
                if (s.NotAction !== undefined || s.NotResource !== undefined) out.push("NotAction/NotResource are not allowed");
                for (const a of actions) if (a === "*" || /:\*$/.test(a)) out.push(`wildcard action ${a}`);
                if (s.Effect === "Allow" && list(s.Resource).map(str).includes("*")) {
                    const unscoped = actions.filter((a) => !ALLOWED_STAR.has(a));
                    if (unscoped.length) out.push(`Resource "*" for ${unscoped.join(", ")}`);
                }
            }
        }
        return out;
    },
};

/** Ingress rules in every form the AWS provider has, normalised. */
interface Ingress {
    readonly from: number;
    readonly to: number;
    /** Address ranges it admits (IPv4 and IPv6); security-group references are not ranges. */
    readonly cidrs: readonly string[];
    /** The security group the rule belongs to: a resource's URN (through the rule's property dependencies) or the group's ID, when known. */
    readonly group: readonly string[];
}

const SECURITY_GROUP = "aws:ec2/securityGroup:SecurityGroup";
const VPC_INGRESS = "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule";
const EC2_RULE = "aws:ec2/securityGroupRule:SecurityGroupRule";

function ingressOf(r: PolicyResource): Ingress[] {
    const range = (p: Obj) => {
        const protocol = str(p.ipProtocol ?? p.protocol);
        const all = protocol === "-1" || protocol === "all";
        return { from: all ? 0 : Number(p.fromPort ?? 0), to: all ? 65535 : Number(p.toPort ?? p.fromPort ?? 0) };
    };
    const strings = (v: unknown) => list(v).map(str).filter(Boolean);
    const groupOf = (property: string) => [...(r.propertyDependencies?.[property] ?? []), ...strings(known(() => r.props[property]))];
    if (r.type === VPC_INGRESS) {
        return [{ ...range(r.props), cidrs: strings([r.props.cidrIpv4, r.props.cidrIpv6]), group: groupOf("securityGroupId") }];
    }
    if (r.type === EC2_RULE && r.props.type === "ingress") {
        return [{ ...range(r.props), cidrs: strings([...list(r.props.cidrBlocks), ...list(r.props.ipv6CidrBlocks)]), group: groupOf("securityGroupId") }];
    }
    if (r.type === SECURITY_GROUP) {
        return list(r.props.ingress)
            .filter(isObj)
            .map((i) => ({ ...range(i), cidrs: strings([...list(i.cidrBlocks), ...list(i.ipv6CidrBlocks)]), group: [r.urn] }));
    }
    return [];
}

/**
 * Why an ingress rule may not admit `cidr` (undefined: it may). IPv4: private
 * address space only (components/shared/cidr.ts, the rule the config applies:
 * 10/8, 172.16/12, 192.168/16, 100.64/10), whatever the prefix length. IPv6:
 * unique local addresses (fc00::/7) only.
 */
export function ingressCidrProblem(cidr: string): string | undefined {
    if (!cidr.includes(":")) return ingressRangeProblem(cidr);
    const [address, prefixText] = cidr.split("/");
    const prefix = Number(prefixText);
    const first = address.startsWith("::") ? 0 : Number.parseInt(address.split(":")[0], 16);
    if (!/^[0-9a-fA-F:.]+$/.test(address) || !/^\d{1,3}$/.test(prefixText ?? "") || prefix > 128 || Number.isNaN(first)) return "is not an IPv6 network";
    if (prefix >= 7 && (first & 0xfe00) === 0xfc00) return undefined;
    return prefix === 0 ? "is the whole IPv6 internet" : "is public IPv6 address space (outside the unique local fc00::/7); ingress is admitted from private networks only";
}

const noOpenIngress: ResourcePolicy = {
    name: "no-open-ingress",
    description:
        "Ingress is admitted from private address space only (IPv4 10/8, 172.16/12, 192.168/16, 100.64/10; IPv6 fc00::/7) or from security groups: a public range of any prefix length is refused, in inline group rules, aws.vpc ingress rules and aws.ec2 security-group rules.",
    check: (r) =>
        ingressOf(r).flatMap((i) =>
            i.cidrs.flatMap((cidr) => {
                const problem = ingressCidrProblem(cidr);
                return problem ? [`ingress ${i.from}-${i.to} is open to the internet (${cidr}): ${problem.replace(/^is /, "")}`] : [];
            }),
        ),
};

const LISTENER_TYPES = new Set(["aws:lb/listener:Listener", "aws:alb/listener:Listener"]);
const TLS_PROTOCOLS = new Set(["HTTPS", "TLS"]);

/** Region and account of an ARN (`arn:<partition>:<service>:<region>:<account>:...`). */
function arnLocation(arn: string): { region: string; account: string } | undefined {
    const parts = arn.split(":");
    return parts.length >= 6 && parts[0] === "arn" ? { region: parts[3], account: parts[4] } : undefined;
}

/** Does a listener answer every request with a redirect to HTTPS? */
function redirectsToHttps(actions: unknown): boolean {
    const all = list(actions).filter(isObj);
    return all.length > 0 && all.every((a) => a.type === "redirect" && isObj(a.redirect) && str(a.redirect.protocol).toUpperCase() === "HTTPS");
}

const listenersHttps: ResourcePolicy = {
    name: "lb-listeners-https",
    description: `A load-balancer listener with a certificate is HTTPS (or TLS) with a current TLS policy (oldest protocol TLS 1.2: ELBSecurityPolicy-TLS13-1-2-*, -TLS13-1-3-*, -TLS-1-2-*, -FS-1-2-*), and every HTTPS or TLS listener names one; the certificate is in its load balancer's account and region; an HTTP listener redirects to HTTPS unless its stack chose plain HTTP (serve.loadBalancer.protocol: http, recorded as the tag ${PLAIN_HTTP_TAG}=true).`,
    check: (r) => {
        if (!LISTENER_TYPES.has(r.type)) return [];
        // Unknown during a preview: nothing to judge yet. Unset: HTTP (an application load balancer's default).
        const read = known(() => ({ protocol: r.props.protocol }));
        if (read === undefined) return [];
        const protocol = str(read.protocol).toUpperCase() || "HTTP";
        const certificate = known(() => str(r.props.certificateArn)) ?? "";
        const port = known(() => r.props.port);
        const out: string[] = [];
        if (certificate !== "" && !TLS_PROTOCOLS.has(protocol)) {
            out.push(`listener on port ${String(port)} has a certificate but is ${protocol}: a listener with a certificate serves HTTPS (or TLS)`);
        }
        const where = arnLocation(certificate);
        const lb = arnLocation(known(() => str(r.props.loadBalancerArn)) ?? "");
        if (where && lb && (where.region !== lb.region || where.account !== lb.account)) {
            out.push(
                `listener on port ${String(port)} uses certificate ${certificate} of account ${where.account} in ${where.region}, but its load balancer is in account ${lb.account} in ${lb.region}: a listener can use only a certificate of its own account and region (ACM certificates are regional and not shared)`,
            );
        }
        if (TLS_PROTOCOLS.has(protocol)) {
            const policy = known(() => str(r.props.sslPolicy));
            if (policy === "") out.push(`${protocol} listener on port ${String(port)} names no sslPolicy: AWS would pick ELBSecurityPolicy-2016-08, which admits TLS 1.0; name a current one`);
            else if (policy !== undefined) {
                const problem = tlsPolicyProblem(policy);
                if (problem) out.push(`${protocol} listener on port ${String(port)}: sslPolicy ${policy} ${problem}`);
            }
        }
        if (protocol === "HTTP" && certificate === "") {
            const redirect = known(() => redirectsToHttps(r.props.defaultActions));
            const chosen = known(() => tagsOf(r)[PLAIN_HTTP_TAG] === "true");
            if (redirect === false && chosen === false) {
                out.push(
                    `plain HTTP listener on port ${String(port)} neither redirects to HTTPS nor is marked as chosen by its stack: serve HTTPS with a certificate (serve.loadBalancer.certificateArn), or opt in to plain HTTP (serve.loadBalancer.protocol: http, which tags the listener ${PLAIN_HTTP_TAG}=true)`,
                );
            }
        }
        return out;
    },
};

const TASK_DEFINITION = "aws:ecs/taskDefinition:TaskDefinition";
const ECS_SERVICE = "aws:ecs/service:Service";
const LOAD_BALANCER = "aws:lb/loadBalancer:LoadBalancer";

const internalLoadBalancers: ResourcePolicy = {
    name: "load-balancers-internal",
    description: `Load balancers are internal unless tagged ${PUBLIC_TAG}=true on purpose.`,
    check: (r) => {
        if (r.type !== LOAD_BALANCER && r.type !== "aws:alb/loadBalancer:LoadBalancer") return [];
        if (tagsOf(r)[PUBLIC_TAG] === "true") return [];
        return truthy(r.props.internal) ? [] : ["load balancer is not internal"];
    },
};

const sidecarsPrivate: ResourcePolicy = {
    name: "ecs-sidecars-private",
    description: "In a task definition only the server publishes a port: init and sidecar containers have no port mappings, are not essential and bind 127.0.0.1 only.",
    check: (r) => {
        const out: string[] = [];
        const containers = containersOf(r);
        const mapped = containers.filter((c) => list(c.portMappings).length > 0);
        if (mapped.length > 1) out.push(`containers ${mapped.map((c) => str(c.name)).join(", ")} all have port mappings; only the server may`);
        for (const c of containers) {
            const role = c.dockerLabels?.[ROLE_LABEL];
            if (role === "sidecar" || role === "init") {
                if (list(c.portMappings).length > 0) out.push(`${role} ${str(c.name)} has port mappings`);
                if (c.essential !== false) out.push(`${role} ${str(c.name)} is essential`);
            }
            for (const bind of (c.dockerLabels?.[BINDS_LABEL] ?? "").split(",").filter(Boolean)) {
                if (!bind.startsWith("127.0.0.1:")) out.push(`container ${str(c.name)} binds ${bind}, not 127.0.0.1`);
            }
        }
        return out;
    },
};

const ecsServicePlacement: ResourcePolicy = {
    name: "ecs-capacity-provider-strategy",
    description: "ECS services run on the cluster's capacity providers (a strategy, never a launch type).",
    check: (r) => {
        if (r.type !== ECS_SERVICE) return [];
        const out: string[] = [];
        if (r.props.launchType !== undefined && r.props.launchType !== null) out.push("uses a launch type instead of a capacity provider strategy");
        if (list(r.props.capacityProviderStrategies).length === 0) out.push("has no capacity provider strategy");
        return out;
    },
};

const noAllTrafficIngress: ResourcePolicy = {
    name: "no-all-traffic-ingress",
    description: "No ingress rule admits every protocol and port.",
    check: (r) => {
        const rules = r.type === "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule" ? [r.props] : [];
        return rules.filter((p) => ["-1", "all"].includes(str(p.ipProtocol))).map(() => "ingress admits every protocol and port");
    },
};

const standaloneRules: ResourcePolicy = {
    name: "security-group-rules-standalone",
    description: "Security-group rules are their own aws.vpc rule resources: never inline in a group (mixing both makes perpetual diffs) and never aws.ec2.SecurityGroupRule.",
    check: (r) => {
        if (r.type === "aws:ec2/securityGroupRule:SecurityGroupRule") return ["aws.ec2.SecurityGroupRule instead of an aws.vpc rule resource"];
        if (r.type !== "aws:ec2/securityGroup:SecurityGroup") return [];
        return (["ingress", "egress"] as const).filter((k) => list(r.props[k]).length > 0).map((k) => `inline ${k} rules`);
    },
};

export const RESOURCE_POLICIES: readonly ResourcePolicy[] = [
    noPublicIp,
    imdsv2,
    encryptedVolumes,
    ecrReleaseRepos,
    pinnedImages,
    buildBasesOwnRegistry,
    ecrCacheManifest,
    iamNoWildcards,
    iamGrammar,
    noOpenIngress,
    listenersHttps,
    internalLoadBalancers,
    sidecarsPrivate,
    ecsServicePlacement,
    noAllTrafficIngress,
    standaloneRules,
    ...AWSGUARD_POLICIES,
];

// ------------------------------------------------------------------- stack

/** Ports sidecars listen on, from their task definitions' docker labels: port -> "<task>/<container>". */
export function sidecarPorts(resources: readonly PolicyResource[]): Map<number, string> {
    const ports = new Map<number, string>();
    for (const r of resources) {
        for (const c of containersOf(r)) {
            const label = c.dockerLabels?.[SIDECAR_PORT_LABEL];
            if (label !== undefined && c.essential === false) ports.set(Number(label), `${r.name}/${str(c.name)}`);
        }
    }
    return ports;
}

/**
 * The security groups each task definition's tasks run in (through the ECS
 * services that run it: their networkConfiguration's property dependencies
 * and literal group IDs), as group key -> the task definitions in it.
 */
function tasksByGroup(resources: readonly PolicyResource[]): Map<string, PolicyResource[]> {
    const byUrn = new Map(resources.map((r) => [r.urn, r]));
    const out = new Map<string, PolicyResource[]>();
    for (const service of resources.filter((r) => r.type === ECS_SERVICE)) {
        const td = dependencyOf(service, "taskDefinition", TASK_DEFINITION, byUrn);
        if (!td) continue;
        const nc = known(() => service.props.networkConfiguration);
        const literal = isObj(nc) ? (known(() => list(nc.securityGroups).map(str).filter(Boolean)) ?? []) : [];
        const groups = [...(service.propertyDependencies?.networkConfiguration ?? []).filter((urn) => byUrn.get(urn)?.type === SECURITY_GROUP), ...literal];
        for (const g of groups) out.set(g, [...(out.get(g) ?? []), td]);
    }
    return out;
}

const noSidecarIngress: StackPolicy = {
    name: "no-sidecar-port-ingress",
    description:
        "No security-group rule admits a port a sidecar listens on in a task that runs in that group (the group's ECS services' task definitions); a rule whose group is not known is judged against every sidecar port of the stack.",
    check: (resources) => {
        const groups = tasksByGroup(resources);
        const everywhere = sidecarPorts(resources);
        const out: Violation[] = [];
        for (const r of resources) {
            for (const i of ingressOf(r)) {
                const tasks = i.group.flatMap((g) => groups.get(g) ?? []);
                // Known group: the sidecars of the tasks in it (none: nothing to expose). Unknown: every sidecar.
                const ports = i.group.length > 0 ? sidecarPorts([...new Set(tasks)]) : everywhere;
                for (const [port, who] of ports) {
                    if (port >= i.from && port <= i.to) {
                        out.push({ policy: "no-sidecar-port-ingress", resource: r.urn, message: `admits port ${port} of sidecar ${who}` });
                    }
                }
            }
        }
        return out;
    },
};

/** The resource a property of `r` was computed from, of the given type. */
function dependencyOf(r: PolicyResource, property: string, type: string, byUrn: ReadonlyMap<string, PolicyResource>): PolicyResource | undefined {
    for (const urn of r.propertyDependencies?.[property] ?? []) {
        const d = byUrn.get(urn);
        if (d?.type === type) return d;
    }
    return undefined;
}

const loadBalancedServer: StackPolicy = {
    name: "ecs-load-balanced-server",
    description: "The container an ECS service's load balancer reaches is the one container of its task definition with port mappings.",
    check: (resources) => {
        const byUrn = new Map(resources.map((r) => [r.urn, r]));
        const out: Violation[] = [];
        for (const service of resources.filter((r) => r.type === ECS_SERVICE)) {
            const td = dependencyOf(service, "taskDefinition", TASK_DEFINITION, byUrn);
            if (!td) continue;
            const balanced = new Set(list(service.props.loadBalancers).filter(isObj).map((l) => str(l.containerName)));
            for (const c of containersOf(td)) {
                if (list(c.portMappings).length > 0 && !balanced.has(str(c.name))) {
                    out.push({ policy: "ecs-load-balanced-server", resource: td.urn, message: `container ${str(c.name)} has port mappings but is not the load-balanced container` });
                }
            }
        }
        return out;
    },
};

const capacityMatchesTask: StackPolicy = {
    name: "ecs-capacity-matches-task",
    description: "An ECS service runs on capacity whose AMI fits its task: the GPU AMI exactly when the task asks for a GPU, the arm64 AMI exactly when it is ARM64.",
    check: (resources) => {
        const byUrn = new Map(resources.map((r) => [r.urn, r]));
        const providers = new Map(resources.filter((r) => r.type === "aws:ecs/capacityProvider:CapacityProvider").map((r) => [str(r.props.name), r]));
        const out: Violation[] = [];
        for (const service of resources.filter((r) => r.type === ECS_SERVICE)) {
            const td = dependencyOf(service, "taskDefinition", TASK_DEFINITION, byUrn);
            if (!td) continue;
            const gpu = containersOf(td).some((c) => (c.resourceRequirements ?? []).some((q) => q.type === "GPU" && Number(q.value) >= 1));
            const platform = td.props.runtimePlatform;
            const arm = isObj(platform) && platform.cpuArchitecture === "ARM64";
            for (const strategy of list(service.props.capacityProviderStrategies).filter(isObj)) {
                const name = str(strategy.capacityProvider);
                const provider = providers.get(name);
                const group = provider && dependencyOf(provider, "autoScalingGroupProvider", "aws:autoscaling/group:Group", byUrn);
                const template = group && dependencyOf(group, "mixedInstancesPolicy", LAUNCH_TEMPLATE, byUrn);
                const ami = template ? str(template.props.imageId) : "";
                if (ami === "") continue;
                const say = (message: string) => out.push({ policy: "ecs-capacity-matches-task", resource: service.urn, message });
                if (gpu !== ami.includes("/gpu/")) say(`${gpu ? "requests a GPU" : "needs no GPU"} but runs on ${name} (${ami})`);
                else if (arm !== ami.includes("/arm64/")) say(`runtimePlatform ${arm ? "ARM64" : "X86_64"} but runs on ${name} (${ami})`);
            }
        }
        return out;
    },
};

/** Every container of every task definition, with what the registry policies need to know about it. */
interface TaskContainer {
    readonly task: PolicyResource;
    readonly name: string;
    readonly image: string;
    /** The allow-list entry recorded on the container, if any. */
    readonly allowedBy?: string;
    /** The region its logs go to (the stack's region). */
    readonly region?: string;
}

function taskContainers(resources: readonly PolicyResource[]): TaskContainer[] {
    return resources.flatMap((task) =>
        (known(() => containersOf(task)) ?? []).map((c) => {
            const options = c.logConfiguration?.options ?? {};
            return {
                task,
                name: str(c.name),
                image: str(c.image),
                allowedBy: c.dockerLabels?.[ALLOWED_IMAGE_LABEL],
                region: options["awslogs-region"] ?? options.region,
            };
        }),
    );
}

const imagesOwnRegistry: StackPolicy = {
    name: "ecs-images-own-registry",
    description: `Every container image of every ECS task definition comes from one ECR registry for the whole stack, in the region the tasks run in, or from a repository serve.allowedImages admits on purpose (recorded on the container as the ${ALLOWED_IMAGE_LABEL} label).`,
    check: (resources) => {
        const out: Violation[] = [];
        const say = (c: TaskContainer, message: string) => out.push({ policy: "ecs-images-own-registry", resource: c.task.urn, message: `container ${c.name} runs ${JSON.stringify(c.image)}: ${message}` });
        const ours: Array<{ c: TaskContainer; host: string }> = [];
        for (const c of taskContainers(resources)) {
            const parts = splitRef(c.image);
            if (!parts) continue; // ecs-images-pinned reports it
            if (c.allowedBy !== undefined) {
                if (allowedEntryFor(c.image, [c.allowedBy]) === undefined) say(c, `its allow-list label ${ALLOWED_IMAGE_LABEL}=${c.allowedBy} does not admit it`);
                continue;
            }
            const location = ecrLocation(parts.host);
            if (!location) {
                say(c, `${parts.host} is not an ECR registry: environments deploy from their own registry, or from a repository serve.allowedImages admits`);
                continue;
            }
            if (c.region !== undefined && location.region !== c.region) {
                say(c, `its registry is in ${location.region}, the task runs in ${c.region}: environments deploy from their own registry`);
                continue;
            }
            ours.push({ c, host: parts.host });
        }
        const host = mostCommon(ours.map((o) => o.host));
        for (const o of ours) {
            if (o.host !== host) say(o.c, `registry ${o.host} (account ${ecrLocation(o.host)?.account}) is not the one the stack's other images come from (${host}): one registry per stack`);
        }
        return out;
    },
};

/** ECR actions that read images (what an execution role needs to pull). */
const ECR_PULL_ACTIONS = ["ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer", "ecr:BatchCheckLayerAvailability"];
/** AWS-managed policies that let a role pull from every repository. */
const BROAD_PULL_POLICIES = /:policy\/(service-role\/AmazonECSTaskExecutionRolePolicy|AmazonEC2ContainerRegistry(ReadOnly|PullOnly|PowerUser|FullAccess))$/;

/** Does an IAM action pattern (`ecr:Batch*`, `*`) match one of the actions? */
function actionMatches(pattern: string, actions: readonly string[]): boolean {
    const re = new RegExp(`^${pattern.split("*").map((p) => p.replace(/[.+?^${}()|[\]\\]/g, "\\$&")).join(".*")}$`, "i");
    return actions.some((a) => re.test(a));
}

const executionRolePulls: StackPolicy = {
    name: "ecs-execution-role-pulls-own-images",
    description: "An ECS task definition's execution role may pull from ECR only the repositories of the images its task definitions run: no other repository, no \"*\", no AWS-managed policy that reads every repository.",
    check: (resources) => {
        const byUrn = new Map(resources.map((r) => [r.urn, r]));
        // Execution role URN -> the repository ARNs its task definitions' images are in.
        const allowed = new Map<string, Set<string>>();
        for (const task of resources.filter((r) => r.type === TASK_DEFINITION)) {
            const role = dependencyOf(task, "executionRoleArn", "aws:iam/role:Role", byUrn);
            if (!role) continue;
            const repos = allowed.get(role.urn) ?? new Set<string>();
            for (const c of taskContainers([task])) {
                const host = splitRef(c.image)?.host;
                const location = host ? ecrLocation(host) : undefined;
                const arn = location ? ecrRepositoryArn(c.image, location.partition) : undefined;
                if (arn) repos.add(arn);
            }
            allowed.set(role.urn, repos);
        }
        const out: Violation[] = [];
        const say = (r: PolicyResource, message: string) => out.push({ policy: "ecs-execution-role-pulls-own-images", resource: r.urn, message });
        for (const r of resources) {
            const roleUrn =
                r.type === "aws:iam/role:Role" ? r.urn : ["aws:iam/rolePolicy:RolePolicy", "aws:iam/rolePolicyAttachment:RolePolicyAttachment"].includes(r.type) ? dependencyOf(r, "role", "aws:iam/role:Role", byUrn)?.urn : undefined;
            const repos = roleUrn ? allowed.get(roleUrn) : undefined;
            if (!repos) continue;
            if (r.type === "aws:iam/rolePolicyAttachment:RolePolicyAttachment") {
                const arn = known(() => str(r.props.policyArn)) ?? "";
                if (BROAD_PULL_POLICIES.test(arn)) say(r, `attaches ${arn} to an execution role: it pulls from every repository; grant the task's repositories only`);
                const managed = dependencyOf(r, "policyArn", "aws:iam/policy:Policy", byUrn);
                if (managed) for (const m of pullProblems(managed, repos)) say(r, m);
                continue;
            }
            for (const m of pullProblems(r, repos)) say(r, m);
        }
        return out;
    },
};

/** What an identity policy of an execution role grants ECR pulls on beyond `repos`. */
function pullProblems(r: PolicyResource, repos: ReadonlySet<string>): string[] {
    const docs = known(() => policyDocuments(r)) ?? [];
    const out: string[] = [];
    for (const doc of docs) {
        const statements = isObj(doc) ? (list(doc.Statement).filter(isObj) as Statement[]) : [];
        for (const s of statements) {
            if (s.Effect !== "Allow" || !list(s.Action).map(str).some((a) => actionMatches(a, ECR_PULL_ACTIONS))) continue;
            if (s.NotResource !== undefined) out.push("pulls from ECR with NotResource: every repository but some");
            for (const resource of list(s.Resource).map(str)) {
                if (!repos.has(resource)) {
                    out.push(
                        resource.includes("*")
                            ? `execution role may pull from ${resource}: name the task's repositories only`
                            : `execution role may pull from ${resource}, which holds no image its task definitions run`,
                    );
                }
            }
        }
    }
    return out;
}

export const STACK_POLICIES: readonly StackPolicy[] = [noSidecarIngress, loadBalancedServer, capacityMatchesTask, imagesOwnRegistry, executionRolePulls];

/** Runs every policy over a stack's resources. */
export function runPolicies(resources: readonly PolicyResource[]): Violation[] {
    const out: Violation[] = [];
    for (const r of resources) {
        for (const p of RESOURCE_POLICIES) for (const message of p.check(r)) out.push({ policy: p.name, resource: r.urn, message });
    }
    for (const p of STACK_POLICIES) out.push(...p.check(resources));
    return out;
}
