/**
 * InferenceService: one service of the environment: task definition (awsvpc,
 * EC2, runtimePlatform of the target, server pinned by digest, GPUs when the
 * target needs them, model fetched from S3 by an init container, private
 * sidecars), an ECS service on the target's capacity provider (private
 * subnets, no public IP, circuit breaker with rollback), an internal ALB in
 * front of the server's port only, security groups, log group, roles.
 *
 * Security-group rules are separate aws.vpc.SecurityGroupIngressRule /
 * SecurityGroupEgressRule resources (never inline), so the policy pack sees
 * every rule of the graph.
 */
import * as aws from "@pulumi/aws";
import * as pulumi from "@pulumi/pulumi";
import type { HardwareTarget } from "../shared/hardware";
import { assumeRolePolicy } from "../shared/iam";
import { privateLoadBalancer } from "../shared/private-load-balancer";
import { dataResourceOptions } from "../shared/protection";
import { buildContainerDefinitions, serialiseContainerDefinitions, taskVolumes } from "./container-definitions";
import { deploymentPercents, ecsCpuArchitecture, peerSuffix } from "./ecs";
import { hardwareKindOf } from "./hardware-kinds";
import { DEFAULT_TLS_POLICY, PLAIN_HTTP_TAG } from "./listener";
import { allowedEntryFor, refProblem, splitRef } from "./images";
import { type ClientsConfig, type LoadBalancerConfig, type ServiceFields, gpusFor } from "./schema";
import type { ServingCluster } from "./serving-cluster";
import { MODEL_FETCH_CONTAINER, type ResolvedSidecar, SERVER_CONTAINER, SIDECAR_CATALOGUE, resolveSidecar } from "./sidecars";
import { executionRolePolicy, taskRolePolicy, taskSecretRefs } from "./task-iam";

type Tags = Readonly<Record<string, string>>;

export interface InferenceServiceArgs {
    /** The environment's cluster; it must have capacity for the target's hardware kind. */
    readonly cluster: ServingCluster;
    /** The service's validated fields (config `serve.services[i]`). The component's name is the service name. */
    readonly service: ServiceFields;
    /** The service's resolved hardware target. */
    readonly target: HardwareTarget;
    /** The server image, `registry/repository@sha256:<digest>` (Environment's `ResolvedDeployment.ref`). Anything else fails the deployment. */
    readonly image: pulumi.Input<string>;
    /** The model-fetch init container's image and each sidecar's by name (Environment's `ServiceImages`), every one pinned by digest. */
    readonly images: { readonly modelFetch: string; readonly sidecars: Readonly<Record<string, string>> };
    /**
     * Where the task's images may come from: the stack's own ECR registry
     * (`<account>.dkr.ecr.<region>.amazonaws.com`) and `serve.allowedImages`.
     * The execution role may pull only those of the task's images in them.
     */
    readonly registry: { readonly host: string; readonly allowedImages: readonly string[] };
    /** Who may reach the load balancer (config `serve.clients`); at least one security group or CIDR, never /0. */
    readonly clients: ClientsConfig;
    /** Listener settings (config `serve.loadBalancer`): HTTPS with certificateArn, or plain HTTP when protocol is "http". */
    readonly loadBalancer: LoadBalancerConfig;
    /** AWS region (awslogs and the SDKs inside the task). */
    readonly region: string;
    /** VPC of the load balancer and target group. Default: the cluster's. */
    readonly vpcId?: pulumi.Input<string>;
    /** Private subnets of the tasks and the load balancer. Default: the cluster's. */
    readonly privateSubnetIds?: pulumi.Input<string[]>;
    /** Wait for the deployment to reach a steady state (up to 45 minutes). Default true. */
    readonly waitForSteadyState?: boolean;
    /** Protect and retain the log group (config `ml-infra:protectData`; false in dev). Default true. */
    readonly protectData?: boolean;
    /** Tags put on every taggable resource. */
    readonly tags: Tags;
}

export class InferenceService extends pulumi.ComponentResource {
    public readonly service: aws.ecs.Service;
    public readonly taskDefinition: aws.ecs.TaskDefinition;
    public readonly loadBalancer: aws.lb.LoadBalancer;
    public readonly targetGroup: aws.lb.TargetGroup;
    public readonly taskSecurityGroup: aws.ec2.SecurityGroup;
    public readonly loadBalancerSecurityGroup: aws.ec2.SecurityGroup;
    public readonly logGroup: aws.cloudwatch.LogGroup;
    public readonly taskRole: aws.iam.Role;
    public readonly executionRole: aws.iam.Role;
    /** The deterministic `containerDefinitions` text. */
    public readonly containerDefinitions: pulumi.Output<string>;
    /** `http(s)://<internal ALB DNS name>` */
    public readonly url: pulumi.Output<string>;

    constructor(name: string, args: InferenceServiceArgs, opts?: pulumi.ComponentResourceOptions) {
        super("ml-infra:serve:InferenceService", name, {}, opts);
        const { cluster, service, target, tags } = args;
        const kind = hardwareKindOf(target);

        // The config was checked when the program started; these are about how the args fit.
        if (!cluster.hardware.includes(kind)) {
            throw new pulumi.ResourceError(
                `target "${target.name}" runs on ${kind} capacity, which cluster ${cluster.clusterName} does not have (it has: ${cluster.hardware.join(", ")})`,
                this,
            );
        }
        const sidecars = service.sidecars.map(resolveSidecar);
        const refusal = (ref: string) => imageRefusal(ref, args.registry);
        if (typeof args.image === "string" && refusal(args.image)) throw new pulumi.ResourceError(`${SERVER_CONTAINER}: ${refusal(args.image)}`, this);
        const staticImages: Array<[string, string | undefined]> = [
            [MODEL_FETCH_CONTAINER, args.images.modelFetch],
            ...sidecars.map((s): [string, string | undefined] => [s.name, args.images.sidecars[s.name]]),
        ];
        for (const [container, ref] of staticImages) {
            const problem = ref === undefined ? "has no image (the environment resolves one per container)" : refusal(ref);
            if (problem) throw new pulumi.ResourceError(`${container}: ${problem}`, this);
        }

        const subnets = args.privateSubnetIds ?? cluster.privateSubnetIds;
        const gpus = gpusFor(service, target);
        const https = args.loadBalancer.protocol === "https";
        const listenerPort = https ? 443 : 80;
        // The config refused both already (checkLoadBalancer); these guard the component's own args.
        if (https && args.loadBalancer.certificateArn === undefined) {
            throw new pulumi.ResourceError("loadBalancer: protocol https needs certificateArn (or protocol http, on purpose)", this);
        }
        if (!https && args.loadBalancer.certificateArn !== undefined) throw new pulumi.ResourceError("loadBalancer: a certificate is configured, so the protocol must be https", this);
        const image = pulumi.output(args.image).apply((ref) => {
            const problem = refusal(ref);
            if (problem) throw new Error(`service ${name}: ${SERVER_CONTAINER} ${problem}`);
            return ref;
        });

        // ---- logs and roles
        const identity = this.taskIdentity(name, args, image, sidecars, [args.images.modelFetch, ...Object.values(args.images.sidecars)]);
        this.logGroup = identity.logGroup;
        this.executionRole = identity.executionRole;
        this.taskRole = identity.taskRole;

        // ---- clients -> internal ALB (listener port) -> tasks (server port only)
        const front = this.frontDoor(name, args, listenerPort, https);
        this.loadBalancerSecurityGroup = front.loadBalancerSecurityGroup;
        this.taskSecurityGroup = front.taskSecurityGroup;
        this.loadBalancer = front.loadBalancer;
        this.targetGroup = front.targetGroup;
        const listener = front.listener;
        const taskSg = this.taskSecurityGroup.id;

        // ---- task definition
        this.containerDefinitions = pulumi.all([image, this.logGroup.name]).apply(([ref, logGroupName]) =>
            serialiseContainerDefinitions(
                buildContainerDefinitions(service, {
                    service: name,
                    image: ref,
                    modelFetchImage: args.images.modelFetch,
                    sidecarImages: args.images.sidecars,
                    allowedImages: args.registry.allowedImages,
                    gpus,
                    logGroupName,
                    region: args.region,
                }),
            ),
        );
        this.taskDefinition = new aws.ecs.TaskDefinition(
            `${name}-definition`,
            {
                family: `${cluster.clusterName}-${name}`,
                networkMode: "awsvpc",
                requiresCompatibilities: ["EC2"],
                runtimePlatform: { cpuArchitecture: target.runtime.cpuArchitecture, operatingSystemFamily: "LINUX" },
                cpu: String(service.cpu),
                memory: String(service.memory),
                containerDefinitions: this.containerDefinitions,
                volumes: taskVolumes(service).map((volume) => ({ name: volume })),
                taskRoleArn: this.taskRole.arn,
                executionRoleArn: this.executionRole.arn,
                // Keep superseded revisions registered: the circuit breaker rolls back to them.
                skipDestroy: true,
                tags,
            },
            { parent: this, dependsOn: identity.policies },
        );

        // ---- service
        const percents = deploymentPercents(kind, service.replicas);
        const timeout = "45m";
        this.service = new aws.ecs.Service(
            `${name}-service`,
            {
                cluster: cluster.cluster.arn,
                taskDefinition: this.taskDefinition.arn,
                desiredCount: service.replicas,
                capacityProviderStrategies: [{ capacityProvider: cluster.capacityProviderFor(kind), weight: 1, base: 0 }],
                networkConfiguration: { subnets, securityGroups: [taskSg], assignPublicIp: false },
                loadBalancers: [{ targetGroupArn: this.targetGroup.arn, containerName: SERVER_CONTAINER, containerPort: service.port }],
                healthCheckGracePeriodSeconds: service.healthGracePeriodSeconds,
                deploymentCircuitBreaker: { enable: true, rollback: true },
                deploymentMinimumHealthyPercent: percents.minimumHealthyPercent,
                deploymentMaximumPercent: percents.maximumPercent,
                placementConstraints: [{ type: "memberOf", expression: `attribute:ecs.cpu-architecture == ${ecsCpuArchitecture(target)}` }],
                orderedPlacementStrategies: [
                    { type: "spread", field: "attribute:ecs.availability-zone" },
                    { type: "binpack", field: "memory" },
                ],
                enableExecuteCommand: service.execCommand,
                enableEcsManagedTags: true,
                propagateTags: "SERVICE",
                waitForSteadyState: args.waitForSteadyState ?? true,
                tags,
            },
            {
                parent: this,
                dependsOn: [listener, cluster.clusterCapacityProviders],
                customTimeouts: { create: timeout, update: timeout, delete: "20m" },
            },
        );

        this.url = pulumi.interpolate`${https ? "https" : "http"}://${this.loadBalancer.dnsName}`;
        this.registerOutputs({
            url: this.url,
            serviceName: this.service.name,
            taskDefinitionArn: this.taskDefinition.arn,
            logGroupName: this.logGroup.name,
        });
    }

    /** The internal ALB in front of the server port: its security group, the tasks' group, target group and listener. */
    private frontDoor(
        name: string,
        args: InferenceServiceArgs,
        listenerPort: number,
        https: boolean,
    ): {
        loadBalancerSecurityGroup: aws.ec2.SecurityGroup;
        taskSecurityGroup: aws.ec2.SecurityGroup;
        loadBalancer: aws.lb.LoadBalancer;
        targetGroup: aws.lb.TargetGroup;
        listener: aws.lb.Listener;
    } {
        const { cluster, service, tags } = args;
        const vpcId = args.vpcId ?? cluster.vpcId;
        const subnets = args.privateSubnetIds ?? cluster.privateSubnetIds;
    const clientSources = [
        ...[...new Set(args.clients.securityGroupIds)].map((peer) => ({ peer, description: "client security group", referencedSecurityGroupId: peer })),
        ...[...new Set(args.clients.cidrs)].map((peer) => ({ peer, description: "client network", cidrIpv4: peer })),
    ];
    const front = privateLoadBalancer(this, {
        vpcId,
        listenerPort,
        targetPort: service.port,
        frontGroup: {
            name: `${name}-alb-sg`,
            description: `internal ALB of ${name}: listed clients on ${listenerPort}`,
            tags: { ...tags, Name: `${cluster.clusterName}-${name}-alb` },
        },
        backGroup: {
            name: `${name}-task-sg`,
            description: `tasks of ${name}: the ALB on port ${service.port} only`,
            tags: { ...tags, Name: `${cluster.clusterName}-${name}-tasks` },
        },
        sources: clientSources.map(({ peer, ...source }) => ({ name: `${name}-alb-in-${peerSuffix(peer)}`, tags, ...source })),
        toTargets: { name: `${name}-alb-out-tasks`, description: "to the server port of the tasks", tags },
        fromLoadBalancer: { name: `${name}-task-in-alb`, description: "the load balancer, server port only", tags },
        targetEgress: { name: `${name}-task-out-https`, description: "S3 (model), CloudWatch, SSM over HTTPS", ipProtocol: "tcp", port: 443, cidrIpv4: "0.0.0.0/0", tags },
        loadBalancer: {
            name: `${name}-alb`,
            args: { loadBalancerType: "application", subnets, idleTimeout: args.loadBalancer.idleTimeoutSeconds, dropInvalidHeaderFields: true, tags },
        },
    });
    const targetGroup = new aws.lb.TargetGroup(
        `${name}-tg`,
        {
            vpcId,
            targetType: "ip",
            protocol: "HTTP",
            port: service.port,
            // Short drain: a single-GPU service is down while its only task drains.
            deregistrationDelay: 30,
            healthCheck: {
                enabled: true,
                protocol: "HTTP",
                port: "traffic-port",
                path: service.healthPath,
                matcher: "200",
                interval: 15,
                timeout: 5,
                healthyThreshold: 2,
                unhealthyThreshold: 3,
            },
            tags,
        },
        { parent: this },
    );
    const listener = new aws.lb.Listener(
        `${name}-listener`,
        {
            loadBalancerArn: front.loadBalancer.arn,
            port: listenerPort,
            protocol: https ? "HTTPS" : "HTTP",
            certificateArn: https ? args.loadBalancer.certificateArn : undefined,
            sslPolicy: https ? (args.loadBalancer.sslPolicy ?? DEFAULT_TLS_POLICY) : undefined,
            defaultActions: [{ type: "forward", targetGroupArn: targetGroup.arn }],
            // Plain HTTP is served only because the stack asked for it: recorded where the policy pack sees it.
            tags: https ? tags : { ...tags, [PLAIN_HTTP_TAG]: "true" },
        },
        { parent: this },
    );
        return { loadBalancerSecurityGroup: front.frontGroup, taskSecurityGroup: front.backGroup, loadBalancer: front.loadBalancer, targetGroup, listener };
    }

    /** The service's log group and its two roles: ECS's (pull, logs, secrets) and the containers' (model prefix, logs, exec). */
    private taskIdentity(
        name: string,
        args: InferenceServiceArgs,
        image: pulumi.Output<string>,
        sidecars: readonly ResolvedSidecar[],
        staticImages: readonly string[],
    ): { logGroup: aws.cloudwatch.LogGroup; executionRole: aws.iam.Role; taskRole: aws.iam.Role; policies: aws.iam.RolePolicy[] } {
        const { cluster, service, tags } = args;
        const partition = cluster.partition;
            const logGroup = new aws.cloudwatch.LogGroup(
                `${name}-logs`,
                { name: `/ecs/${cluster.clusterName}/${name}`, retentionInDays: service.logRetentionDays, tags },
                { parent: this, ...dataResourceOptions(args.protectData ?? true) },
            );
            const executionRole = new aws.iam.Role(
                `${name}-execution`,
                {
                    description: `ECS pulls images, writes logs and reads secrets for ${name}`,
                    assumeRolePolicy: JSON.stringify(assumeRolePolicy("ecs-tasks.amazonaws.com")),
                    tags,
                },
                { parent: this },
            );
            const taskRole = new aws.iam.Role(
                `${name}-task`,
                {
                    description: `containers of ${name}: read the model prefix only`,
                    assumeRolePolicy: JSON.stringify(assumeRolePolicy("ecs-tasks.amazonaws.com")),
                    tags,
                },
                { parent: this },
            );
            const secrets = taskSecretRefs(service);
            const executionPolicy = new aws.iam.RolePolicy(
                `${name}-execution-policy`,
                {
                    role: executionRole.id,
                    policy: pulumi.all([image, logGroup.arn]).apply(([ref, logGroupArn]) =>
                        JSON.stringify(
                            executionRolePolicy({
                                partition,
                                images: [ref, ...staticImages],
                                registryHost: args.registry.host,
                                allowedImages: args.registry.allowedImages,
                                logGroupArn,
                                secrets,
                            }),
                        ),
                    ),
                },
                { parent: this },
            );
            const shipsLogs = sidecars.some((s) => SIDECAR_CATALOGUE[s.kind].writesLogs);
            const taskPolicy = new aws.iam.RolePolicy(
                `${name}-task-policy`,
                {
                    role: taskRole.id,
                    policy: logGroup.arn.apply((logGroupArn) =>
                        JSON.stringify(
                            taskRolePolicy({
                                partition,
                                model: service.model,
                                logGroupArn: shipsLogs ? logGroupArn : undefined,
                                execCommand: service.execCommand,
                            }),
                        ),
                    ),
                },
                { parent: this },
            );
        return { logGroup, executionRole, taskRole, policies: [executionPolicy, taskPolicy] };
    }
}

/**
 * Why the task may not run `ref`: not pinned by a digest a build could have
 * produced, or neither in the stack's registry nor allow-listed. The config
 * refused all of these already; this guards the component's own args.
 */
export function imageRefusal(ref: string, registry: { readonly host: string; readonly allowedImages: readonly string[] }): string | undefined {
    const problem = refProblem(ref);
    if (problem) return `image ${JSON.stringify(ref)}: ${problem}`;
    if (splitRef(ref)?.host === registry.host || allowedEntryFor(ref, registry.allowedImages) !== undefined) return undefined;
    return `image ${JSON.stringify(ref)} is not in the stack's registry ${registry.host} nor allowed by serve.allowedImages`;
}
