/**
 * Hostile and careless input to the `serve` section: each is one config error
 * (key, value, what is allowed) before anything is registered, on the key the
 * user wrote, and never a cascade of messages for one mistake.
 */
import { describe, expect, it } from "vitest";
import { checkServe, checkService, checkServing, checkTaskFits } from "../components/serve/checks";
import { buildContainerDefinitions, secretValueFroms } from "../components/serve/container-definitions";
import { resolveServeImages } from "../components/serve/images";
import { instanceSize } from "../components/serve/instance-sizes";
import { bucketNameProblem, capacitySchema, clientsSchema, serveSchema, serviceFieldsSchema } from "../components/serve/schema";
import { executionRolePolicy, taskSecretRefs } from "../components/serve/task-iam";
import { CATALOG, resolveTarget } from "../components/shared/hardware";
import type { KeyPath } from "../components/shared/problems";
import { PROJECT, REGISTRY, digestOf, refOf, validServe } from "./fixtures";
import { configProblems } from "./harness";

type Json = Record<string, unknown>;
type Service = Json & { sidecars?: Json[]; model: Json };

const NETWORK = { availabilityZones: ["us-east-1a", "us-east-1b"], natGateways: "single" };
const SECRET_ARN = "arn:aws:secretsmanager:us-east-1:123456789012:secret:classifier/hf-AbCdEf";
const PARAMETER_ARN = "arn:aws:ssm:us-east-1:123456789012:parameter/classifier/api";
const GPU_REF = `${REGISTRY}/ml/inference@${digestOf("gpu")}`;
const TARGET = (name: string) => resolveTarget(name, CATALOG[name]);

/** The problems of validServe() patched by `patch` (its first service, then the section). */
function problems(patch: (service: Service, serve: Json) => void): string[] {
    const serve = validServe() as Json & { services: Service[] };
    patch(serve.services[0], serve);
    return configProblems({ [`${PROJECT}:network`]: NETWORK, [`${PROJECT}:serve`]: serve }, "dev");
}

const key = (path: string) => `${PROJECT}:serve.${path} = `;

/** The problems about `path` (exactly as written) and the whole list, for messages. */
function about(found: readonly string[], path: string): string[] {
    return found.filter((p) => p.startsWith(key(path)));
}

/** `found` is exactly one problem, about `path`, matching `message`. */
function expectOne(found: readonly string[], path: string, message: RegExp): void {
    expect(found, found.join("\n")).toHaveLength(1);
    expect(found[0].startsWith(key(path)), found[0]).toBe(true);
    expect(found[0]).toMatch(message);
}

const service = (fields: Json = {}) => serviceFieldsSchema.parse({ model: { bucket: "ml-models-123456789012", prefix: "classifier/1" }, ...fields });

function serviceProblems(fields: Json, target = "cpu-avx2"): Array<{ keys: KeyPath; message: string }> {
    const found: Array<{ keys: KeyPath; message: string }> = [];
    checkService(service(fields), TARGET(target), (keys, message) => found.push({ keys, message }));
    return found;
}

// ---------------------------------------------------------------- 1. server secrets

describe("secrets of the server", () => {
    it("a service takes secrets, which is where the environment's credential refusal sends them", () => {
        expect(problems((s) => (s.secrets = { HF_TOKEN: SECRET_ARN }))).toEqual([]);
        // The refusal it points at names a key that exists.
        const refused = problems((s) => (s.environment = { HF_TOKEN: "hf_abcdefghijklmnopqrstuvwxyz0123456789" }));
        expect(about(refused, "services[0].environment.HF_TOKEN")[0]).toMatch(/services\[\]\.secrets/);
    });

    it("refuses a secret that is not a Secrets Manager or SSM ARN", () => {
        expectOne(problems((s) => (s.secrets = { HF_TOKEN: "hf_abcdefghijklmnopqrstuvwxyz0123456789" })), "services[0].secrets.HF_TOKEN", /Secrets Manager secret ARN/);
    });

    it("puts them in the server's container definition, and the execution role reads exactly the task's secrets", () => {
        const fields = service({
            secrets: { HF_TOKEN: SECRET_ARN, API_KEY: PARAMETER_ARN },
            sidecars: [{ kind: "minio", secrets: { MINIO_ROOT_USER: PARAMETER_ARN, MINIO_ROOT_PASSWORD: `${SECRET_ARN}:password::` } }],
        });
        const defs = buildContainerDefinitions(fields, {
            service: "classifier",
            image: `${REGISTRY}/ml/inference@sha256:${"ab".repeat(32)}`,
            modelFetchImage: refOf("model-sync"),
            sidecarImages: { minio: refOf("minio") },
            gpus: 0,
            logGroupName: "/ecs/c/classifier",
            region: "us-east-1",
        });
        expect(defs.find((d) => d.name === "server")?.secrets).toEqual([
            { name: "HF_TOKEN", valueFrom: SECRET_ARN },
            { name: "API_KEY", valueFrom: PARAMETER_ARN },
        ]);
        expect(taskSecretRefs(fields)).toEqual(secretValueFroms(defs));
        const policy = executionRolePolicy({ partition: "aws", images: [], registryHost: REGISTRY, logGroupArn: "arn:aws:logs:us-east-1:123456789012:log-group:x", secrets: taskSecretRefs(fields) });
        expect(policy.Statement.find((s) => s.Sid === "ReadTaskSecrets")?.Resource).toEqual([SECRET_ARN]);
        expect(policy.Statement.find((s) => s.Sid === "ReadTaskParameters")?.Resource).toEqual([PARAMETER_ARN]);
    });

    it("refuses a name in both environment and secrets of one container, server or sidecar", () => {
        expectOne(
            problems((s) => Object.assign(s, { environment: { API_URL: "http://x" }, secrets: { API_URL: SECRET_ARN } })),
            "services[0].secrets.API_URL",
            /is also in environment \(environment\.API_URL\); a variable comes from one of them/,
        );
        const sidecar = serviceProblems({ sidecars: [{ kind: "tensorboard", environment: { TB_URL: "x" }, secrets: { TB_URL: SECRET_ARN } }] });
        expect(sidecar).toEqual([{ keys: ["sidecars", 0, "secrets", "TB_URL"], message: expect.stringMatching(/is also in environment \(sidecars\[0\]\.environment\.TB_URL\)/) }]);
    });

    it("refuses a server secret named like a variable the service's fields set", () => {
        expectOne(problems((s) => (s.secrets = { PORT: SECRET_ARN })), "services[0].secrets.PORT", /set from the service's fields/);
    });
});

// ---------------------------------------------------------------- 2. model paths

describe("model paths cannot climb", () => {
    it.each([
        ["path", "/models/../etc"],
        ["path", "/models/./x"],
        ["path", "/models/.."],
        ["path", "/models//x"],
        ["prefix", "classifier/../other"],
        ["prefix", "classifier//1"],
        ["file", "../model.npz"],
        ["file", "./model.npz"],
    ])("model.%s %s", (field, value) => {
        expectOne(problems((s) => (s.model[field] = value)), `services[0].model.${field}`, /"\." or "\.\." segments|separated by single "\/"/);
    });

    it("still refuses a system directory, and accepts a dot inside a name", () => {
        expectOne(problems((s) => (s.model.path = "/etc/models")), "services[0].model.path", /system directory/);
        expect(problems((s) => Object.assign(s.model, { path: "/models/v1.2", file: "weights.v2/model.npz" }))).toEqual([]);
    });
});

// ---------------------------------------------------------------- 3. bucket names

describe("S3 bucket names", () => {
    it.each([
        ["a..b", /two adjacent periods/],
        ["192.168.1.1", /IP address/],
        ["xn--models", /starts with "xn--"/],
        ["sthree-models", /starts with "sthree-"/],
        ["models-s3alias", /ends with "-s3alias"/],
        ["models--ol-s3", /ends with "--ol-s3"/],
        ["Models", /must be an S3 bucket name/],
        ["ab", /is 2 characters long/],
    ])("refuses %s", (bucket, message) => {
        expectOne(problems((s) => (s.model.bucket = bucket)), "services[0].model.bucket", message);
    });

    it("accepts ordinary names", () => {
        for (const bucket of ["ml-models-123456789012", "my.models.bucket", "abc"]) expect(bucketNameProblem(bucket), bucket).toBeUndefined();
    });
});

// ---------------------------------------------------------------- 4. lengths

describe("length limits", () => {
    const huge = "a".repeat(100_000);
    it.each([
        ["healthPath", (s: Service) => (s.healthPath = `/${huge}`), "services[0].healthPath", /at most 512/],
        ["metricsPath", (s: Service) => (s.metricsPath = `/${huge}`), "services[0].metricsPath", /at most 512/],
        ["model.prefix", (s: Service) => (s.model.prefix = huge), "services[0].model.prefix", /at most 1024/],
        ["model.file", (s: Service) => (s.model.file = huge), "services[0].model.file", /at most 1024/],
        ["model.path", (s: Service) => (s.model.path = `/${huge}`), "services[0].model.path", /at most 1024/],
        ["a healthCheckCommand element", (s: Service) => (s.healthCheckCommand = ["CMD-SHELL", huge]), "services[0].healthCheckCommand[1]", /at most 4096/],
        ["healthCheckCommand elements", (s: Service) => (s.healthCheckCommand = ["CMD", ...Array.from({ length: 20 }, () => "x")]), "services[0].healthCheckCommand", /at most 16 elements/],
        ["a secret ARN", (s: Service) => (s.secrets = { TOKEN_FILE: `${SECRET_ARN}${"a".repeat(3000)}` }), "services[0].secrets.TOKEN_FILE", /at most 2048/],
    ])("refuses a huge %s", (_what, patch, path, message) => {
        expectOne(problems((s) => patch(s)), path, message);
    });

    it("refuses a huge allowedImages entry", () => {
        expectOne(problems((_s, serve) => (serve.allowedImages = [`public.ecr.aws/${huge}`])), "allowedImages[0]", /at most 512/);
    });

    it("refuses a container whose environment and secrets exceed 32 KiB, naming the container", () => {
        const big = Object.fromEntries(Array.from({ length: 10 }, (_, i) => [`VAR_${i}`, "x".repeat(4000)]));
        expectOne(problems((s) => (s.environment = big)), "services[0].environment", /container server's environment and secrets take \d+ bytes .* at most 32768/);
        const sidecar = serviceProblems({ sidecars: [{ kind: "tensorboard", environment: big }] });
        expect(sidecar).toEqual([{ keys: ["sidecars", 0, "environment"], message: expect.stringMatching(/container sidecar "tensorboard"'s environment/) }]);
        expect(problems((s) => (s.environment = Object.fromEntries(Object.entries(big).slice(0, 7))))).toEqual([]);
    });
});

// ---------------------------------------------------------------- 5. one message, on the right key

describe("one problem, one message on the key that was written", () => {
    it("a second log-router is one problem", () => {
        expectOne(
            problems((s, serve) => {
                s.sidecars = [{ kind: "log-router" }, { kind: "log-router", port: 5000 }];
                (serve.sidecarImages as Json)["log-router"] = refOf("log-router");
            }),
            "services[0].sidecars[1]",
            /at most one log-router \(FireLens\), and sidecars\[0\] is one/,
        );
    });

    it("a server port on a sidecar's default port names the sidecar's default", () => {
        const serve = validServe() as Json & { services: Service[]; sidecarImages: Json };
        serve.services[0].port = 13133;
        serve.services[0].sidecars = [{ kind: "metrics-exporter" }];
        serve.sidecarImages["metrics-exporter"] = refOf("metrics-exporter");
        const found = configProblems({ [`${PROJECT}:network`]: NETWORK, [`${PROJECT}:serve`]: serve }, "dev");
        expectOne(found, "services[0].sidecars[0].port", /binds 13133, which is the server's port .*its port is unset, so it binds the metrics-exporter default 13133/);
    });

    it("memory below the default /dev/shm is one problem on memory, naming the default", () => {
        expectOne(problems((s) => (s.memory = 512)), "services[0].memory", /take 512 MiB.*; and the server's \/dev\/shm is 1024 MiB \(sharedMemoryMiB, 1024 MiB by default\)/);
        expectOne(problems((s) => Object.assign(s, { memory: 768, sidecars: [] })), "services[0].memory", /\/dev\/shm is 1024 MiB/);
    });

    it("a target no GPU of the group can run is one problem on the service's target", () => {
        const serve = validServe() as Json & { services: Service[] };
        Object.assign(serve.services[0], { target: "cuda11-source", ref: GPU_REF });
        const found = configProblems({ [`${PROJECT}:network`]: NETWORK, [`${PROJECT}:serve`]: serve }, "dev");
        expectOne(found, "services[0].target", /target "cuda11-source" is built for compute capability 5\.2, which no GPU of capacity\.gpu\.instanceTypes can run \(g5\.xlarge 8\.6, g6\.xlarge 8\.9, g4dn\.xlarge 7\.5\)/);
    });

    it("an archList change of the target is reported on the target, too", () => {
        const serve = validServe() as Json & { services: Service[] };
        serve.targets = { cuda12: { cuda: { version: "12.8.1", archList: ["9.0"] } } };
        Object.assign(serve.services[0], { target: "cuda12", ref: GPU_REF });
        const found = configProblems({ [`${PROJECT}:network`]: NETWORK, [`${PROJECT}:serve`]: serve }, "dev");
        expectOne(found, "services[0].target", /built for compute capability 9\.0/);
    });

    it("instance types only some of whose GPUs a target runs on are named once each, with the service's target key", () => {
        const clients = clientsSchema.parse({ cidrs: ["10.0.0.0/16"] });
        const found: string[] = [];
        const capacity = capacitySchema.parse({ gpu: { instanceTypes: ["g5.xlarge", "g4dn.xlarge"] } });
        const target = resolveTarget("cuda-ampere", { ...CATALOG.cuda12, cuda: { version: "12.8.1", archList: ["8.0"] } });
        checkServing({ capacity, clients }, [{ name: "a", target, index: 0 }, { name: "b", target, index: 1 }], (keys, message) => found.push(`${keys.join(".")}: ${message}`));
        expect(found).toEqual([expect.stringMatching(/^capacity\.gpu\.instanceTypes\.1: g4dn\.xlarge has compute capability 7\.5, which target "cuda-ampere" of service a \(serve\.services\[0\]\.target\) is not built for \(8\.0\), nor target "cuda-ampere" of service b \(serve\.services\[1\]\.target\)/)]);
    });
});

// ---------------------------------------------------------------- 6. tasks that fit no instance

describe("a task must fit on an instance type of its group", () => {
    const gpuService = (s: Service) => Object.assign(s, { target: "cuda12", ref: GPU_REF });

    it("refuses memory and GPUs no instance type has, each on its key", () => {
        const found = problems((s) => Object.assign(gpuService(s), { memory: 1_048_576, gpus: 8 }));
        expect(found, found.join("\n")).toHaveLength(2);
        expect(about(found, "services[0].memory")[0]).toMatch(/no instance type of capacity\.gpu\.instanceTypes has that much memory: the largest, g5\.xlarge, has 16384 MiB/);
        expect(about(found, "services[0].gpus")[0]).toMatch(/no instance type of capacity\.gpu\.instanceTypes has 8 GPUs: the most is 1/);
    });

    it("refuses CPU units no instance type has", () => {
        expectOne(problems((s) => (s.cpu = 65536)), "services[0].cpu", /the largest, c7i\.xlarge, has 4 vCPUs \(4096 units\)/);
    });

    it("refuses a task whose needs each fit some type but all of them none", () => {
        const found: Array<{ keys: KeyPath; message: string }> = [];
        checkTaskFits({ cpu: 8192, memory: 20000, gpus: undefined }, TARGET("cpu-avx2"), { instanceTypes: ["c7i.2xlarge", "r7i.xlarge"] }, (keys, message) => found.push({ keys, message }));
        expect(found).toEqual([{ keys: ["memory"], message: expect.stringMatching(/fits on no instance type of capacity\.cpu\.instanceTypes/) }]);
    });

    it("does not guess: a group with a type of unknown size is not judged", () => {
        expect(instanceSize("x2idn.16xlarge")).toBeUndefined();
        const found: string[] = [];
        checkTaskFits({ cpu: 65536, memory: 1_048_576, gpus: undefined }, TARGET("cpu-avx2"), { instanceTypes: ["c7i.xlarge", "x2idn.16xlarge"] }, (_k, message) => found.push(message));
        expect(found).toEqual([]);
    });

    it("accepts what fits, and the environment stack files", () => {
        expect(problems((s) => Object.assign(gpuService(s), { memory: 15_000, cpu: 4096, gpus: 1 }))).toEqual([]);
        expect(instanceSize("g6e.12xlarge")).toEqual({ vcpus: 48, memoryMiB: 384 * 1024, gpus: 2 });
    });
});

// ---------------------------------------------------------------- 7. certificate region

describe("the listener's certificate is in the stack's region", () => {
    const arn = (region: string) => `arn:aws:acm:${region}:123456789012:certificate/12345678-1234-1234-1234-123456789012`;
    const serveWith = (certificateArn: string) => {
        const raw = validServe() as Json;
        raw.loadBalancer = { certificateArn };
        return serveSchema.parse(raw);
    };

    it("refuses another region in the config check when the region is known", () => {
        const found: string[] = [];
        checkServe(serveWith(arn("eu-west-1")), (keys, message) => found.push(`${keys.join(".")}: ${message}`), { region: "us-east-1" });
        expect(found).toEqual([expect.stringMatching(/^loadBalancer\.certificateArn: is a certificate in eu-west-1; .*aws:region us-east-1/)]);
        const same: string[] = [];
        checkServe(serveWith(arn("us-east-1")), (_keys, message) => same.push(message), { region: "us-east-1" });
        expect(same).toEqual([]);
    });

    it("refuses another region once the program knows it, before anything is registered", () => {
        const run = (certificateArn: string) => {
            const serve = serveWith(certificateArn);
            return resolveServeImages(serve, { "cpu-avx2": TARGET("cpu-avx2") }, { account: "123456789012", region: "us-east-1" }).problems;
        };
        expect(run(arn("eu-west-1"))).toEqual([{ keys: ["loadBalancer", "certificateArn"], value: arn("eu-west-1"), message: expect.stringMatching(/is a certificate in eu-west-1/) }]);
        expect(run(arn("us-east-1"))).toEqual([]);
    });
});

// ---------------------------------------------------------------- instance types that exist, with the target's CPU features

describe("serving capacity instance types", () => {
    it("an instance type that does not exist is one problem naming the family's sizes or the nearest family", () => {
        expectOne(problems((_s, serve) => {
            serve.capacity = { cpu: { instanceTypes: ["c7i.huge"] } };
        }), "capacity.cpu.instanceTypes[0]", /c7i has no size "huge"; allowed: .*c7i\.xlarge/);
        expectOne(problems((_s, serve) => {
            serve.capacity = { cpu: { instanceTypes: ["c7x.xlarge"] } };
        }), "capacity.cpu.instanceTypes[0]", /unknown instance family "c7x"; did you mean .*c7i/);
    });

    it("a cpu-avx512 service on hosts without AVX-512 (AMD before Zen 4) is refused on its target, naming the types", () => {
        const found = problems((service, serve) => {
            service.target = "cpu-avx512";
            serve.capacity = { cpu: { instanceTypes: ["c7i.xlarge", "c5a.large", "m5a.large"] } };
        });
        expectOne(found, "services[0].target", /cpu-avx512 needs the CPU features avx512f avx512bw avx512vl, .*\(c5a\.large lacks avx512f avx512bw avx512vl; m5a\.large lacks avx512f avx512bw avx512vl\)/);
        // On hosts that have it, or that the table does not know, nothing is said.
        expect(problems((service, serve) => {
            service.target = "cpu-avx512";
            serve.capacity = { cpu: { instanceTypes: ["c7i.xlarge", "m7a.xlarge"] } };
        })).toEqual([]);
    });
});
