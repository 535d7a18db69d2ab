/**
 * Pure tests (no Pulumi runtime): container definitions, their serialiser,
 * the sidecar catalogue, IAM documents and the serving config checks.
 */
import * as fs from "node:fs";
import * as path from "node:path";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { parse as parseYaml, parseDocument } from "yaml";
import { z } from "zod";
import { ALLOWED_IMAGE_LABEL, type ContainerDefinition, buildContainerDefinitions, canonicalJson, serialiseContainerDefinitions, taskVolumes } from "../components/serve/container-definitions";
import { MODEL_FETCH_CONTAINER, MODEL_FETCH_KIND, SERVER_CONTAINER, SIDECAR_CATALOGUE, SIDECAR_KINDS, resolveSidecar } from "../components/serve/sidecars";
import { ecrRepositoryArn, executionRolePolicy, pullableRepositoryArns, secretResourceArn, taskRolePolicy } from "../components/serve/task-iam";
import { BINDS_LABEL } from "../components/shared/labels";
import { parseDigestRef } from "../components/shared/image-refs";
import { name, strict } from "../components/shared/schema";
import { checkService, checkServing, cudaRunsOn } from "../components/serve/checks";
import { type ServiceFields, capacitySchema, clientsSchema, gpusFor, loadBalancerSchema, serviceFieldsSchema, serviceShape } from "../components/serve/schema";
import { describeInstanceType } from "../components/shared/instance-types";
import { CATALOG, type HardwareTarget, resolveTarget } from "../components/shared/hardware";
import { ROOT } from "./harness";
import { REGISTRY, digestOf, refOf } from "./fixtures";

const TARGET = (n: string): HardwareTarget => resolveTarget(n, CATALOG[n]);
const REF = refOf("inference", "server");
const MODEL_SYNC = refOf("model-sync");
/** A public image a stack allows on purpose (serve.allowedImages). */
const PUBLIC_CLI = `public.ecr.aws/aws-cli/aws-cli@${digestOf("aws-cli")}`;
const SECRET = "arn:aws:secretsmanager:us-east-1:123456789012:secret:ml/minio-AbCdEf";

function service(fields: Record<string, unknown> = {}): ServiceFields {
    return serviceFieldsSchema.parse({ model: { bucket: "ml-models-123456789012", prefix: "classifier/2026-11-01" }, ...fields });
}

const ALL_SIDECARS = [
    { kind: "metrics-exporter" },
    { kind: "tensorboard" },
    { kind: "minio", secrets: { MINIO_ROOT_USER: `${SECRET}:user::`, MINIO_ROOT_PASSWORD: `${SECRET}:password::` } },
    { kind: "model-sync" },
    { kind: "log-router" },
];

/** Each sidecar's image: the stack's image of its kind (as the environment resolves it). */
function sidecarImagesOf(svc: ServiceFields): Record<string, string> {
    return Object.fromEntries(svc.sidecars.map(resolveSidecar).map((s) => [s.name, s.image ?? refOf(SIDECAR_CATALOGUE[s.kind].buildImage)]));
}

function defs(fields: Record<string, unknown> = {}, gpus = 0, allowedImages?: readonly string[]): ContainerDefinition[] {
    const svc = service(fields);
    return buildContainerDefinitions(svc, {
        service: "classifier",
        image: REF,
        modelFetchImage: MODEL_SYNC,
        sidecarImages: sidecarImagesOf(svc),
        allowedImages,
        gpus,
        logGroupName: "/ecs/ml-infra-dev/classifier",
        region: "us-east-1",
    });
}

const byName = (list: ContainerDefinition[], n: string) => {
    const found = list.find((c) => c.name === n);
    if (!found) throw new Error(`no container ${n}`);
    return found;
};

// ------------------------------------------------------------------ definitions

describe("container definitions", () => {
    const all = defs({ sidecars: ALL_SIDECARS }, 1);

    it("give only the server a port mapping, on the service's port", () => {
        const withPorts = all.filter((c) => c.portMappings.length > 0);
        expect(withPorts.map((c) => c.name)).toEqual([SERVER_CONTAINER]);
        expect(withPorts[0].portMappings).toEqual([{ containerPort: 8080, hostPort: 8080, protocol: "tcp" }]);
    });

    it("pin every image by digest: the server's, the model fetch's (the model-sync image) and each sidecar's own", () => {
        for (const c of all) expect(parseDigestRef(c.image), c.name).toBeDefined();
        expect(byName(all, MODEL_FETCH_CONTAINER).image).toBe(MODEL_SYNC);
        for (const kind of SIDECAR_KINDS) expect(byName(all, kind).image).toBe(refOf(SIDECAR_CATALOGUE[kind].buildImage));
        // The model-sync sidecar runs the same image as the model fetch.
        expect(byName(all, "model-sync").image).toBe(byName(all, MODEL_FETCH_CONTAINER).image);
    });

    it("refuse a sidecar the environment resolved no image for", () => {
        const svc = service({ sidecars: [{ kind: "tensorboard" }] });
        expect(() =>
            buildContainerDefinitions(svc, { service: "x", image: REF, modelFetchImage: MODEL_SYNC, sidecarImages: {}, gpus: 0, logGroupName: "/ecs/x", region: "us-east-1" }),
        ).toThrow(/sidecar tensorboard \(tensorboard\) has no image/);
    });

    it("label a container whose image serve.allowedImages admits with the entry, and no other", () => {
        const withPublic = defs({ sidecars: [{ kind: "tensorboard", image: PUBLIC_CLI }] }, 0, ["public.ecr.aws/aws-cli/"]);
        expect(byName(withPublic, "tensorboard").dockerLabels[ALLOWED_IMAGE_LABEL]).toBe("public.ecr.aws/aws-cli/");
        for (const c of withPublic.filter((x) => x.name !== "tensorboard")) expect(c.dockerLabels[ALLOWED_IMAGE_LABEL], c.name).toBeUndefined();
    });

    it("make only the server essential", () => {
        expect(all.filter((c) => c.essential).map((c) => c.name)).toEqual([SERVER_CONTAINER]);
    });

    it("start the server only after the model was fetched (SUCCESS) and the log router started", () => {
        expect(byName(all, SERVER_CONTAINER).dependsOn).toEqual([
            { containerName: MODEL_FETCH_CONTAINER, condition: "SUCCESS" },
            { containerName: "log-router", condition: "START" },
        ]);
    });

    it("order sidecars after what they need", () => {
        expect(byName(all, "metrics-exporter").dependsOn).toEqual([{ containerName: SERVER_CONTAINER, condition: "HEALTHY" }]);
        expect(byName(all, "tensorboard").dependsOn).toEqual([{ containerName: MODEL_FETCH_CONTAINER, condition: "SUCCESS" }]);
        expect(byName(all, "model-sync").dependsOn).toEqual([{ containerName: MODEL_FETCH_CONTAINER, condition: "SUCCESS" }]);
        expect(byName(all, "log-router").dependsOn).toEqual([]);
    });

    it("bind every sidecar that listens to 127.0.0.1 only", () => {
        const command = (n: string) => (byName(all, n).command ?? []).join(" ");
        expect(command("tensorboard")).toContain("--host 127.0.0.1 --port 6006");
        expect(command("minio")).toContain("--address 127.0.0.1:9000 --console-address 127.0.0.1:9001");
        const otel = JSON.parse(byName(all, "metrics-exporter").environment.find((e) => e.name === "AOT_CONFIG_CONTENT")?.value ?? "{}");
        expect(otel.extensions.health_check.endpoint).toBe("127.0.0.1:13133");
        expect(otel.service.telemetry.metrics.level).toBe("none");
        expect(otel.receivers.prometheus.config.scrape_configs[0].static_configs[0].targets).toEqual(["127.0.0.1:8080"]);
        for (const c of all.filter((c) => c.name !== SERVER_CONTAINER)) {
            for (const bind of (c.dockerLabels[BINDS_LABEL] ?? "").split(",").filter(Boolean)) expect(bind, c.name).toMatch(/^127\.0\.0\.1:\d+$/);
        }
    });

    it("copy the model prefix into the shared volume, read-only for the server", () => {
        const fetch = byName(all, MODEL_FETCH_CONTAINER);
        expect(fetch.image).toBe(MODEL_SYNC);
        expect(fetch.command).toEqual(["s3", "sync", "s3://ml-models-123456789012/classifier/2026-11-01/", "/models/", "--only-show-errors", "--no-progress"]);
        expect(fetch.mountPoints).toEqual([{ sourceVolume: "model", containerPath: "/models", readOnly: false }]);
        expect(fetch.environment).toContainEqual({ name: "AWS_REGION", value: "us-east-1" });
        expect(byName(all, SERVER_CONTAINER).mountPoints).toEqual([{ sourceVolume: "model", containerPath: "/models", readOnly: true }]);
    });

    it("request GPUs for the server only, and only when asked", () => {
        expect(byName(all, SERVER_CONTAINER).resourceRequirements).toEqual([{ type: "GPU", value: "1" }]);
        expect(all.filter((c) => c.resourceRequirements !== undefined)).toHaveLength(1);
        expect(byName(defs(), SERVER_CONTAINER).resourceRequirements).toBeUndefined();
    });

    it("give the server a health check with the configured start period, and shared memory", () => {
        const server = byName(defs({ healthStartPeriodSeconds: 240, sharedMemoryMiB: 2048, healthPath: "/ready" }), SERVER_CONTAINER);
        expect(server.healthCheck).toEqual({
            command: ["CMD", "python3", "-c", 'import urllib.request; urllib.request.urlopen("http://127.0.0.1:8080/ready", timeout=4)'],
            interval: 30,
            timeout: 5,
            retries: 3,
            startPeriod: 240,
        });
        expect(server.linuxParameters).toEqual({ initProcessEnabled: true, sharedMemorySize: 2048 });
    });

    it("log to CloudWatch, through FireLens when a log router is present", () => {
        expect(byName(defs(), SERVER_CONTAINER).logConfiguration.logDriver).toBe("awslogs");
        expect(byName(defs(), SERVER_CONTAINER).logConfiguration.options["awslogs-group"]).toBe("/ecs/ml-infra-dev/classifier");
        expect(byName(all, SERVER_CONTAINER).logConfiguration).toMatchObject({ logDriver: "awsfirelens", options: { log_group_name: "/ecs/ml-infra-dev/classifier" } });
        expect(byName(all, "log-router").firelensConfiguration?.type).toBe("fluentbit");
    });

    it("set PORT, MODEL_DIR and (with model.file) MODEL_PATH for the server", () => {
        const server = byName(defs({ port: 9090, model: { bucket: "b-models", prefix: "p", file: "model.npz" } }), SERVER_CONTAINER);
        expect(server.environment).toEqual(
            expect.arrayContaining([
                { name: "PORT", value: "9090" },
                { name: "MODEL_DIR", value: "/models" },
                { name: "MODEL_PATH", value: "/models/model.npz" },
            ]),
        );
    });

    it("declare a scratch volume for MinIO next to the model volume", () => {
        expect(taskVolumes(service({ sidecars: ALL_SIDECARS }))).toEqual(["minio-data", "model"]);
        expect(taskVolumes(service())).toEqual(["model"]);
    });
});

// ------------------------------------------------------------------ serialiser

describe("serialised container definitions", () => {
    it("are byte-identical however the environment was ordered", () => {
        const a = serialiseContainerDefinitions(defs({ environment: { B: "2", A: "1", C: "3" }, sidecars: ALL_SIDECARS }));
        const b = serialiseContainerDefinitions(defs({ environment: { C: "3", A: "1", B: "2" }, sidecars: [...ALL_SIDECARS].reverse() }));
        expect(a).toBe(b);
    });

    it("do not depend on insertion order of environment names (property)", () => {
        const envName = fc.stringMatching(/^[A-Z][A-Z0-9_]{0,8}$/).filter((n) => !["PORT", "MODEL_DIR", "MODEL_PATH"].includes(n));
        fc.assert(
            fc.property(fc.uniqueArray(fc.tuple(envName, fc.string()), { selector: ([k]) => k, maxLength: 12 }), (entries) => {
                const forward = Object.fromEntries(entries);
                const backward = Object.fromEntries([...entries].reverse());
                expect(serialiseContainerDefinitions(defs({ environment: backward }))).toBe(serialiseContainerDefinitions(defs({ environment: forward })));
            }),
            { numRuns: 100 },
        );
    });

    it("sort keys at every level and sort environment by name", () => {
        const text = serialiseContainerDefinitions(defs({ environment: { Z: "1", A: "2" }, sidecars: ALL_SIDECARS }));
        const visit = (v: unknown): void => {
            if (Array.isArray(v)) return v.forEach(visit);
            if (v !== null && typeof v === "object") {
                const keys = Object.keys(v);
                expect(keys).toEqual([...keys].sort());
                Object.values(v).forEach(visit);
            }
        };
        const parsed = JSON.parse(text) as Array<{ environment: Array<{ name: string }> }>;
        visit(parsed);
        for (const c of parsed) expect(c.environment.map((e) => e.name)).toEqual(c.environment.map((e) => e.name).sort());
    });

    it("write out the defaults AWS echoes back", () => {
        const parsed = JSON.parse(serialiseContainerDefinitions(defs())) as Array<Record<string, unknown>>;
        for (const c of parsed) {
            for (const key of ["cpu", "essential", "environment", "mountPoints", "portMappings", "volumesFrom", "systemControls"]) {
                expect(c, `${String(c.name)}.${key}`).toHaveProperty(key);
            }
            expect(c).not.toHaveProperty("secrets");
        }
        expect(parsed[0].cpu).toBe(0);
    });

    it("keep MinIO's secrets as valueFrom references, sorted", () => {
        const parsed = JSON.parse(serialiseContainerDefinitions(defs({ sidecars: ALL_SIDECARS }))) as Array<{ name: string; secrets?: unknown }>;
        expect(parsed.find((c) => c.name === "minio")?.secrets).toEqual([
            { name: "MINIO_ROOT_PASSWORD", valueFrom: `${SECRET}:password::` },
            { name: "MINIO_ROOT_USER", valueFrom: `${SECRET}:user::` },
        ]);
    });

    it("canonicalJson sorts nested keys and keeps array order", () => {
        expect(canonicalJson({ b: [{ d: 1, c: 2 }, 0], a: { z: null, y: "x" } })).toBe('{"a":{"y":"x","z":null},"b":[{"c":2,"d":1},0]}');
    });
});

// ------------------------------------------------------------------ catalogue

describe("sidecar catalogue", () => {
    it.each(SIDECAR_KINDS)("%s names the build-stack image that provides it (its own name), and no image of its own", (kind) => {
        expect(SIDECAR_CATALOGUE[kind].buildImage).toBe(kind);
        expect(Object.values(SIDECAR_CATALOGUE[kind]).filter((v) => typeof v === "string" && v.includes("@sha256:"))).toEqual([]);
    });

    it("runs the model fetch on the model-sync image", () => {
        expect(MODEL_FETCH_KIND).toBe("model-sync");
    });

    it("binds nothing on the default server port", () => {
        for (const kind of SIDECAR_KINDS) expect(SIDECAR_CATALOGUE[kind].ports(SIDECAR_CATALOGUE[kind].defaultPort), kind).not.toContain(8080);
    });
});

// ------------------------------------------------------------------ IAM

describe("task role policy", () => {
    const policy = taskRolePolicy({ partition: "aws", model: { bucket: "ml-models", prefix: "classifier/v1" }, execCommand: false });
    const s3 = policy.Statement.filter((s) => [s.Action].flat().some((a) => a.startsWith("s3:")));

    it("reads objects under the model prefix only", () => {
        expect(s3.flatMap((s) => [s.Action].flat()).sort()).toEqual(["s3:GetObject", "s3:ListBucket"]);
        const get = s3.find((s) => [s.Action].flat().includes("s3:GetObject"));
        expect(get?.Resource).toEqual(["arn:aws:s3:::ml-models/classifier/v1/*"]);
    });

    it("lists the bucket only under the prefix", () => {
        const list = s3.find((s) => [s.Action].flat().includes("s3:ListBucket"));
        expect(list?.Resource).toEqual(["arn:aws:s3:::ml-models"]);
        expect(list?.Condition).toEqual({ StringLike: { "s3:prefix": ["classifier/v1/", "classifier/v1/*"] } });
    });

    it("grants nothing else unless asked (KMS through S3, logs for shipping sidecars, ECS Exec)", () => {
        expect(policy.Statement).toHaveLength(2);
        const full = taskRolePolicy({
            partition: "aws",
            model: { bucket: "ml-models", prefix: "p", kmsKeyArn: "arn:aws:kms:us-east-1:123456789012:key/abc" },
            logGroupArn: "arn:aws:logs:us-east-1:123456789012:log-group:/ecs/x",
            execCommand: true,
        });
        expect(full.Statement.map((s) => s.Sid)).toEqual(["ReadModelObjects", "ListModelPrefix", "DecryptModelObjects", "ShipLogsAndMetrics", "EcsExec"]);
        expect(full.Statement[2].Condition).toEqual({ StringLike: { "kms:ViaService": ["s3.*.amazonaws.com"] } });
    });
});

describe("execution role policy", () => {
    const LOGS = "arn:aws:logs:us-east-1:123456789012:log-group:/ecs/x";
    const OTHER_ACCOUNT = `210987654321.dkr.ecr.us-east-1.amazonaws.com/ml/inference@${digestOf("other")}`;

    it("pulls the task's repositories in the stack's registry only, and writes to its log group", () => {
        const policy = executionRolePolicy({ partition: "aws", images: [REF, MODEL_SYNC, REF], registryHost: REGISTRY, logGroupArn: LOGS, secrets: [] });
        const pull = policy.Statement.find((s) => s.Sid === "PullTaskImages");
        expect(pull?.Resource).toEqual(["arn:aws:ecr:us-east-1:123456789012:repository/ml/inference", "arn:aws:ecr:us-east-1:123456789012:repository/ml/model-sync"]);
        expect(policy.Statement.find((s) => s.Sid === "WriteTaskLogs")?.Resource).toEqual([LOGS, `${LOGS}:*`]);
        expect(policy.Statement.some((s) => [s.Action].flat().some((a) => a.startsWith("secretsmanager:")))).toBe(false);
    });

    it("never grants a foreign repository because an image named it: another account's ECR, a public registry", () => {
        const policy = executionRolePolicy({ partition: "aws", images: [REF, OTHER_ACCOUNT, PUBLIC_CLI], registryHost: REGISTRY, logGroupArn: LOGS, secrets: [] });
        expect(policy.Statement.find((s) => s.Sid === "PullTaskImages")?.Resource).toEqual(["arn:aws:ecr:us-east-1:123456789012:repository/ml/inference"]);
        expect(pullableRepositoryArns([OTHER_ACCOUNT, PUBLIC_CLI], REGISTRY, [], "aws")).toEqual([]);
    });

    it("grants an allow-listed ECR repository the task runs, and nothing for an allow-listed public one", () => {
        const allowed = ["210987654321.dkr.ecr.us-east-1.amazonaws.com/ml/inference", "public.ecr.aws/aws-cli/"];
        expect(pullableRepositoryArns([REF, OTHER_ACCOUNT, PUBLIC_CLI], REGISTRY, allowed, "aws")).toEqual([
            "arn:aws:ecr:us-east-1:123456789012:repository/ml/inference",
            "arn:aws:ecr:us-east-1:210987654321:repository/ml/inference",
        ]);
        // Allow-listed but not run by the task: no grant.
        expect(pullableRepositoryArns([REF], REGISTRY, allowed, "aws")).toEqual(["arn:aws:ecr:us-east-1:123456789012:repository/ml/inference"]);
    });

    it("reads exactly the secrets the task injects", () => {
        const policy = executionRolePolicy({
            partition: "aws",
            images: [PUBLIC_CLI],
            registryHost: REGISTRY,
            logGroupArn: "arn:aws:logs:us-east-1:1:log-group:x",
            secrets: [`${SECRET}:user::`, `${SECRET}:password::`, "arn:aws:ssm:us-east-1:123456789012:parameter/ml/token"],
        });
        expect(policy.Statement.find((s) => s.Sid === "ReadTaskSecrets")?.Resource).toEqual([SECRET]);
        expect(policy.Statement.find((s) => s.Sid === "ReadTaskParameters")?.Resource).toEqual(["arn:aws:ssm:us-east-1:123456789012:parameter/ml/token"]);
        expect(policy.Statement.find((s) => s.Sid === "PullTaskImages")).toBeUndefined();
    });

    it.each([
        [REF, "arn:aws:ecr:us-east-1:123456789012:repository/ml/inference"],
        [`210987654321.dkr.ecr.eu-west-1.amazonaws.com/ecr-public/x/y@${digestOf("y")}`, "arn:aws:ecr:eu-west-1:210987654321:repository/ecr-public/x/y"],
        [PUBLIC_CLI, undefined],
        [`docker.io/tensorflow/tensorflow@${digestOf("tf")}`, undefined],
    ])("ecrRepositoryArn(%s)", (image, arn) => {
        expect(ecrRepositoryArn(image, "aws")).toBe(arn);
    });

    it("cuts the JSON key off a secret reference", () => {
        expect(secretResourceArn(`${SECRET}:user:AWSCURRENT:`)).toBe(SECRET);
    });
});

// ------------------------------------------------------------------ config

describe("serving config schema", () => {
    it("applies the documented service defaults", () => {
        const s = service();
        expect(s).toEqual({
            replicas: 1,
            port: 8080,
            healthPath: "/healthz",
            healthStartPeriodSeconds: 300,
            healthGracePeriodSeconds: 900,
            metricsPath: "/metrics",
            environment: {},
            sidecars: [],
            model: { bucket: "ml-models-123456789012", prefix: "classifier/2026-11-01", path: "/models" },
            cpu: 1024,
            memory: 4096,
            sharedMemoryMiB: 1024,
            logRetentionDays: 30,
            execCommand: false,
        });
        expect(gpusFor(s, TARGET("cuda12"))).toBe(1);
        expect(gpusFor(s, TARGET("cpu-avx2"))).toBe(0);
    });

    it("applies the documented capacity, clients and load balancer defaults", () => {
        const capacity = capacitySchema.parse(undefined);
        expect(capacity.gpu).toEqual({
            instanceTypes: ["g5.xlarge", "g6.xlarge", "g4dn.xlarge"],
            minSize: 0,
            maxSize: 2,
            onDemandBaseCapacity: 0,
            onDemandPercentageAboveBaseCapacity: 100,
            spotAllocationStrategy: "price-capacity-optimized",
            targetCapacityPercent: 100,
            rootVolumeGiB: 200,
        });
        expect(capacity.arm64.instanceTypes).toEqual(["c7g.xlarge", "m7g.xlarge", "c6g.xlarge"]);
        expect(clientsSchema.parse(undefined)).toEqual({ securityGroupIds: [], cidrs: [] });
        expect(loadBalancerSchema.parse(undefined)).toEqual({ protocol: "https", idleTimeoutSeconds: 60 });
    });

    it.each([
        ["a model prefix with a wildcard", { model: { bucket: "b-models", prefix: "m/*" } }, ["model", "prefix"]],
        ["a model prefix with ..", { model: { bucket: "b-models", prefix: "m/../other" } }, ["model", "prefix"]],
        ["a model prefix with a leading slash", { model: { bucket: "b-models", prefix: "/m" } }, ["model", "prefix"]],
        ["model.syncImage (removed: the model fetch runs serve.sidecarImages.model-sync)", { model: { bucket: "b-models", prefix: "m", syncImage: MODEL_SYNC } }, ["model", "syncImage"]],
        ["an unknown sidecar kind", { sidecars: [{ kind: "jupyter" }] }, ["sidecars", 0, "kind"]],
        ["a sidecar port below 1024", { sidecars: [{ kind: "tensorboard", port: 80 }] }, ["sidecars", 0, "port"]],
        ["a secret that is not an ARN", { sidecars: [{ kind: "minio", secrets: { MINIO_ROOT_USER: "admin" } }] }, ["sidecars", 0, "secrets", "MINIO_ROOT_USER"]],
        ["a start period ECS refuses", { healthStartPeriodSeconds: 600 }, ["healthStartPeriodSeconds"]],
        ["an unknown retention", { logRetentionDays: 10 }, ["logRetentionDays"]],
        ["a health command ECS cannot run", { healthCheckCommand: ["curl", "-f", "x"] }, ["healthCheckCommand"]],
        ["an unknown key", { gpu: 1 }, []],
    ])("rejects %s at its key", (_what, fields, keys) => {
        const result = serviceFieldsSchema.safeParse({ model: { bucket: "b-models", prefix: "m" }, ...fields });
        expect(result.success).toBe(false);
        expect(result.error?.issues.map((i) => i.path)).toContainEqual(keys);
    });
});

interface Problem {
    readonly keys: ReadonlyArray<string | number>;
    readonly message: string;
}

function serviceProblems(fields: Record<string, unknown>, target: string): Problem[] {
    const problems: Problem[] = [];
    checkService(service(fields), TARGET(target), (keys, message) => problems.push({ keys, message }));
    return problems;
}

describe("checkService", () => {
    it.each([
        ["cuda12", { sidecars: ALL_SIDECARS, memory: 8192, cpu: 2048 }],
        ["arm64-neon", {}],
        ["cpu-avx2", { sidecars: [{ kind: "tensorboard", port: 6007 }, { kind: "tensorboard", name: "tb-two" }], memory: 4096 }],
    ])("accepts a sound %s service", (target, fields) => {
        expect(serviceProblems(fields, target)).toEqual([]);
    });

    it.each([
        ["a GPU target without GPUs", "cuda12", { gpus: 0 }, ["gpus"], /needs a GPU/],
        ["GPUs on a CPU target", "cpu-avx2", { gpus: 1 }, ["gpus"], /not a GPU target/],
        ["GPUs on an arm64 target", "arm64-neon", { gpus: 2 }, ["gpus"], /not a GPU target/],
        ["duplicate sidecar names", "cpu-avx2", { sidecars: [{ kind: "tensorboard" }, { kind: "tensorboard", port: 6010 }] }, ["sidecars", 1, "name"], /duplicate sidecar name "tensorboard" \(also sidecars\[0\]\)/],
        ["a sidecar named like the server", "cpu-avx2", { sidecars: [{ kind: "tensorboard", name: "server" }] }, ["sidecars", 0, "name"], /reserved/],
        ["a sidecar on the server's port", "cpu-avx2", { port: 6006, sidecars: [{ kind: "tensorboard" }] }, ["sidecars", 0, "port"], /binds 6006, which is the server's port/],
        ["MinIO's console on the server's port", "cpu-avx2", { port: 9001, sidecars: [{ kind: "minio", secrets: { MINIO_ROOT_USER: SECRET, MINIO_ROOT_PASSWORD: SECRET } }] }, ["sidecars", 0, "port"], /binds 9001/],
        ["two sidecars on one port", "cpu-avx2", { sidecars: [{ kind: "tensorboard", port: 9000 }, { kind: "minio", secrets: { MINIO_ROOT_USER: SECRET, MINIO_ROOT_PASSWORD: SECRET } }] }, ["sidecars", 1, "port"], /bound by sidecar "tensorboard"/],
        ["a port on a sidecar that binds none", "cpu-avx2", { sidecars: [{ kind: "model-sync", port: 7000 }] }, ["sidecars", 0, "port"], /binds no port/],
        ["MinIO without credentials", "cpu-avx2", { sidecars: [{ kind: "minio" }] }, ["sidecars", 0, "secrets", "MINIO_ROOT_USER"], /needs this secret/],
        ["two log routers", "cpu-avx2", { sidecars: [{ kind: "log-router" }, { kind: "log-router", name: "router-two" }] }, ["sidecars", 1], /at most one log-router/],
        ["a reserved server variable", "cpu-avx2", { environment: { PORT: "80" } }, ["environment", "PORT"], /set from the service's fields/],
        ["a reserved sidecar variable", "cpu-avx2", { sidecars: [{ kind: "model-sync", environment: { MODEL_BUCKET: "x" } }] }, ["sidecars", 0, "environment", "MODEL_BUCKET"], /set by the model-sync sidecar/],
        ["shared memory as large as the task", "cpu-avx2", { memory: 1024, sharedMemoryMiB: 1024 }, ["sharedMemoryMiB"], /less than the task's memory/],
        ["a grace period shorter than the start period", "cpu-avx2", { healthGracePeriodSeconds: 60 }, ["healthGracePeriodSeconds"], /at least healthStartPeriodSeconds/],
        ["sidecars that leave the server no memory", "cpu-avx2", { memory: 1024, sharedMemoryMiB: 64, sidecars: [{ kind: "tensorboard" }] }, ["memory"], /take 1536 MiB/],
        ["sidecars that need more CPU than the task", "cpu-avx2", { cpu: 256, sidecars: [{ kind: "tensorboard" }] }, ["cpu"], /take 512 CPU units/],
    ])("reports %s", (_what, target, fields, keys, message) => {
        const problems = serviceProblems(fields, target);
        const found = problems.find((p) => JSON.stringify(p.keys) === JSON.stringify(keys));
        expect(found, JSON.stringify(problems)).toBeDefined();
        expect(found?.message).toMatch(message);
    });

    it("reports a GPU target built for arm64", () => {
        const armGpu = resolveTarget("cuda-arm", { ...CATALOG.cuda12, platform: "linux/arm64", pool: "arm64" });
        const problems: Problem[] = [];
        checkService(service(), armGpu, (keys, message) => problems.push({ keys, message }));
        expect(problems).toContainEqual({ keys: [], message: expect.stringMatching(/must be linux\/amd64/) });
    });
});

describe("checkServing", () => {
    const needs = ["cuda12", "arm64-neon", "cpu-avx2"].map((t) => ({ name: `svc-${t}`, target: TARGET(t) }));
    const clients = clientsSchema.parse({ cidrs: ["10.0.0.0/16"] });
    const problems = (capacity: unknown, c = clients, services = needs): Problem[] => {
        const found: Problem[] = [];
        checkServing({ capacity: capacitySchema.parse(capacity), clients: c }, services, (keys, message) => found.push({ keys, message }));
        return found;
    };

    it("accepts the defaults with a client network", () => {
        expect(problems({})).toEqual([]);
    });

    it.each([
        ["an x86 type in the Graviton group", { arm64: { instanceTypes: ["c7g.large", "c7i.large"] } }, ["capacity", "arm64", "instanceTypes", 1], /not Graviton/],
        ["a CPU type in the GPU group", { gpu: { instanceTypes: ["c7i.xlarge"] } }, ["capacity", "gpu", "instanceTypes", 0], /no NVIDIA GPU/],
        ["a Graviton GPU in the GPU group", { gpu: { instanceTypes: ["g5g.xlarge"] } }, ["capacity", "gpu", "instanceTypes", 0], /is Graviton/],
        ["a GPU type in the CPU group", { cpu: { instanceTypes: ["g5.xlarge"] } }, ["capacity", "cpu", "instanceTypes", 0], /has a GPU/],
        ["minSize above maxSize", { cpu: { minSize: 3, maxSize: 2 } }, ["capacity", "cpu", "minSize"], /must not exceed maxSize/],
        ["an on-demand base above maxSize", { gpu: { onDemandBaseCapacity: 3 } }, ["capacity", "gpu", "onDemandBaseCapacity"], /must not exceed maxSize \(2\)/],
        ["no room for a service that needs the kind", { gpu: { maxSize: 0 } }, ["capacity", "gpu", "maxSize"], /svc-cuda12 run on gpu capacity/],
    ])("reports %s", (_what, capacity, keys, message) => {
        const found = problems(capacity).find((p) => JSON.stringify(p.keys) === JSON.stringify(keys));
        expect(found, JSON.stringify(problems(capacity))).toBeDefined();
        expect(found?.message).toMatch(message);
    });

    it("reports GPU instance types the target's CUDA build cannot run on", () => {
        const legacy = [{ name: "old", target: TARGET("cuda11-source") }];
        const found = problems({}, clients, legacy);
        expect(found.map((p) => p.keys)).toEqual([0, 1, 2].map((i) => ["capacity", "gpu", "instanceTypes", i]));
        expect(found[0].message).toMatch(/compute capability 8\.6, which target "cuda11-source" of service old is not built for \(5\.2\)/);
    });

    it("requires named clients and refuses 0.0.0.0/0", () => {
        expect(problems({}, clientsSchema.parse({}))).toEqual([{ keys: ["clients"], message: expect.stringMatching(/no one could reach/) }]);
        expect(problems({}, clientsSchema.parse({ cidrs: ["10.0.0.0/8", "0.0.0.0/0"] }))).toEqual([
            { keys: ["clients", "cidrs", 1], message: expect.stringMatching(/internal/) },
        ]);
    });
});

describe("instance types and CUDA compatibility", () => {
    it.each([
        ["c7g.xlarge", "arm64", undefined],
        ["c6gn.large", "arm64", undefined],
        ["im4gn.large", "arm64", undefined],
        ["a1.large", "arm64", undefined],
        ["c7i.xlarge", "x86_64", undefined],
        ["m7i-flex.large", "x86_64", undefined],
        ["g4ad.xlarge", "x86_64", undefined],
        ["g4dn.xlarge", "x86_64", "7.5"],
        ["g5g.xlarge", "arm64", "7.5"],
        ["p5.48xlarge", "x86_64", "9.0"],
        ["p6-b200.48xlarge", "x86_64", "10.0"],
    ])("%s is %s with GPU capability %s", (type, architecture, capability) => {
        const info = describeInstanceType(type);
        expect({ architecture: info.architecture, gpuCapability: info.gpuCapability }).toEqual({ architecture, gpuCapability: capability });
    });

    it.each([
        [["8.0"], "8.6", true],
        [["8.6"], "8.0", false],
        [["7.5"], "8.0", false],
        [["7.5+PTX"], "9.0", true],
        [["9.0+PTX"], "8.9", false],
        [["5.2"], "7.5", false],
        [CATALOG.cuda12.cuda?.archList ?? [], "10.0", true],
    ])("code for %j runs on %s: %s", (archList, capability, runs) => {
        expect(cudaRunsOn(archList, capability)).toBe(runs);
    });
});

// ------------------------------------------------------------------ proposed stack config

/** The serve section as it will be once serviceShape is spread into the service schema. */
const integratedServe = strict({
    buildStack: z.string().optional(),
    requirePinned: z.boolean().default(false),
    sidecarImages: z.record(z.string(), z.string()).optional(),
    allowedImages: z.array(z.string()).optional(),
    targets: z.record(z.string(), z.unknown()).optional(),
    services: z.array(strict({ name: name("service name"), image: name("image name"), target: z.string(), ref: z.string().optional(), ...serviceShape })).min(1),
    capacity: capacitySchema,
    clients: clientsSchema,
    loadBalancer: loadBalancerSchema,
});

/** Each environment stack file: stack name, whole file text, its serve section. */
function proposedStacks(): Array<[string, string, unknown]> {
    return ["dev", "staging", "prod"].map((stack) => {
        const text = fs.readFileSync(path.join(ROOT, "stacks", `Pulumi.${stack}.yaml`), "utf8");
        return [stack, text, (parseYaml(text) as { config: Record<string, unknown> }).config["ml-infra:serve"]];
    });
}

describe("the environment stack files", () => {
    it("covers dev, staging and prod", () => {
        expect(proposedStacks().map(([stack]) => stack)).toEqual(["dev", "staging", "prod"]);
    });

    it.each(proposedStacks())("%s validates and passes every serving check", (_stack, _text, raw) => {
        const serve = integratedServe.parse(raw);
        const found: string[] = [];
        for (const [i, s] of serve.services.entries()) {
            checkService(s, TARGET(s.target), (keys, message) => found.push(`services[${i}].${keys.join(".")}: ${message}`));
        }
        checkServing(serve, serve.services.map((s) => ({ name: s.name, target: TARGET(s.target) })), (keys, message) => found.push(`${keys.join(".")}: ${message}`));
        expect(found).toEqual([]);
    });

    it.each(proposedStacks())("%s survives the promote script's YAML rewrite unchanged (only ref lines will ever change)", (_stack, text) => {
        expect(parseDocument(text).toString({ lineWidth: 0 })).toBe(text);
    });

    it("sizes dev spot-heavy and gives prod an on-demand base", () => {
        const [dev, , prod] = proposedStacks().map(([, , raw]) => integratedServe.parse(raw));
        for (const kind of ["gpu", "arm64", "cpu"] as const) {
            expect(dev.capacity[kind].onDemandPercentageAboveBaseCapacity, `dev ${kind}`).toBe(0);
            expect(prod.capacity[kind].onDemandBaseCapacity, `prod ${kind}`).toBeGreaterThanOrEqual(1);
        }
    });
});
