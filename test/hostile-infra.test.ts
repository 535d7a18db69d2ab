/**
 * Hostile and careless input to the infrastructure sections (network,
 * registry, runners, build): each is one config error naming the key, the
 * value and what is allowed, before anything is registered.
 */
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { parse as parseYaml } from "yaml";
import { RESERVED_REPOSITORY_PREFIXES, MAX_REPOSITORY_PREFIX_LENGTH } from "../components/registry/schema";
import { timeZoneProblem } from "../components/runners/checks";
import { CATALOG, cpuFeatureProblem } from "../components/shared/hardware";
import { hasCpuFeatures, instanceFamilySizes, instanceTypeProblem, missingCpuFeatures } from "../components/shared/instance-types";
import { regionProblem } from "../components/shared/region";
import { DEFAULT_INSTANCE_TYPES } from "../components/runners/schema";
import { ConfigError, loadStackConfig } from "../components/stack-config";
import { PROJECT, validBuild } from "./fixtures";
import { ROOT, cliConfig } from "./harness";

type Json = Record<string, unknown>;

/** The shipped runners stack's config (as its file has it), for tests to change. */
function runnersStack(): Json {
    const file = parseYaml(fs.readFileSync(path.join(ROOT, "stacks", "Pulumi.runners.yaml"), "utf8")) as { config: Json };
    return structuredClone(file.config);
}

/** The problems a config is refused with ([] when accepted), with `aws:region` as the stack's region. */
function problemsOf(config: Json, stack = "runners"): string[] {
    const region = typeof config["aws:region"] === "string" ? config["aws:region"] : undefined;
    try {
        loadStackConfig(cliConfig(config), { project: PROJECT, stack, projectRoot: ROOT, pathExists: fs.existsSync, region });
    } catch (error) {
        if (error instanceof ConfigError) return [...error.problems];
        throw error;
    }
    return [];
}

const section = (config: Json, name: string) => config[`${PROJECT}:${name}`] as Json;

describe("the shipped runners stack is accepted", () => {
    it("has no problem", () => {
        expect(problemsOf(runnersStack())).toEqual([]);
    });
});

describe("build.images[].dockerfile", () => {
    const outside = fs.mkdtempSync(path.join(os.tmpdir(), "hostile-infra-"));
    fs.writeFileSync(path.join(outside, "Dockerfile"), "FROM scratch AS runtime-cpu\n");
    afterAll(() => fs.rmSync(outside, { recursive: true, force: true }));

    it.each([["/etc/passwd"], [path.join(outside, "Dockerfile")], ["C:\\Users\\x\\Dockerfile"]])("refuses the absolute path %s, in one message", (dockerfile) => {
        const build = validBuild() as Json & { images: Json[] };
        build.images[0].dockerfile = dockerfile;
        const problems = problemsOf({ [`${PROJECT}:build`]: build }, "build");
        expect(problems).toEqual([
            `ml-infra:build.images[0].dockerfile = ${JSON.stringify(dockerfile)}: the Dockerfile must be a path relative to the build context (images[].context), inside the project, not an absolute one; e.g. Dockerfile or docker/Dockerfile.gpu`,
        ]);
    });

    it("still takes a relative one", () => {
        const build = validBuild() as Json & { images: Json[] };
        build.images[0].dockerfile = "Dockerfile";
        expect(problemsOf({ [`${PROJECT}:build`]: build }, "build")).toEqual([]);
    });
});

describe("repositoryPrefix", () => {
    it("reserves every pull-through prefix", () => {
        expect([...RESERVED_REPOSITORY_PREFIXES].sort()).toEqual(["docker-hub", "ecr-public", "github", "quay"]);
    });

    it.each([["ecr-public"], ["quay"], ["docker-hub"], ["github"]])("registry.repositoryPrefix %s (a pull-through prefix) is a config error", (prefix) => {
        const config = runnersStack();
        section(config, "registry").repositoryPrefix = prefix;
        expect(problemsOf(config)).toEqual([expect.stringMatching(new RegExp(`^ml-infra:registry.repositoryPrefix = "${prefix}": is the prefix of a pull-through cache rule \\(reserved: ecr-public, quay, docker-hub, github\\)`))]);
    });

    it("is refused even when that rule is off (turning it on later would collide)", () => {
        const config = runnersStack();
        const registry = section(config, "registry");
        registry.repositoryPrefix = "docker-hub";
        delete (registry.pullThrough as Json).dockerHub;
        expect(problemsOf(config)).toHaveLength(1);
    });

    it("build.repositoryPrefix likewise", () => {
        const build = { ...validBuild(), repositoryPrefix: "github" };
        expect(problemsOf({ [`${PROJECT}:build`]: build }, "build")).toEqual([expect.stringMatching(/^ml-infra:build.repositoryPrefix = "github": is the prefix of a pull-through cache rule/)]);
    });

    it("is bounded so <prefix>/cache/<image> fits ECR's 256 characters", () => {
        expect(MAX_REPOSITORY_PREFIX_LENGTH + "/cache/".length + 40).toBe(256);
        const config = runnersStack();
        section(config, "registry").repositoryPrefix = "a".repeat(MAX_REPOSITORY_PREFIX_LENGTH + 1);
        expect(problemsOf(config)).toEqual([expect.stringMatching(/: is 210 characters; at most 209 \(ECR repository names are at most 256 characters/)]);
        section(config, "registry").repositoryPrefix = "a".repeat(MAX_REPOSITORY_PREFIX_LENGTH);
        expect(problemsOf(config)).toEqual([]);
    });
});

describe("instance types that do not exist", () => {
    it.each([
        ["c7i.huge", /^c7i has no size "huge"; allowed: c7i.large, c7i.xlarge, .*c7i.metal-48xl$/],
        ["c7i.nano", /^c7i has no size "nano"; allowed: c7i.large/],
        ["c7x.large", /^unknown instance family "c7x"; did you mean c7a or c7g or c7i\?/],
        ["g5.large", /^g5 has no size "large"; allowed: g5.xlarge/],
    ])("instanceTypeProblem(%s)", (type, message) => {
        expect(instanceTypeProblem(type)).toMatch(message);
    });

    it("knows every default and shipped type, smallest size first", () => {
        for (const type of Object.values(DEFAULT_INSTANCE_TYPES).flat()) expect(instanceTypeProblem(type), type).toBeUndefined();
        for (const type of ["t4g.nano", "c7a.medium", "m7i-flex.large", "p6-b200.48xlarge", "c7i.metal-24xl"]) expect(instanceTypeProblem(type), type).toBeUndefined();
        expect(instanceFamilySizes("c7i")?.slice(0, 3)).toEqual(["large", "xlarge", "2xlarge"]);
    });

    it("refuses them in a runner pool, one message each and no family message besides", () => {
        const config = runnersStack();
        const pools = section(config, "runners").pools as Json;
        (pools.amd64 as Json).instanceTypes = ["c7i.huge", "c7i.nano", "c7i.4xlarge"];
        const problems = problemsOf(config);
        expect(problems).toHaveLength(2);
        expect(problems[0]).toMatch(/^ml-infra:runners.pools.amd64.instanceTypes\[0\] = "c7i.huge": c7i has no size "huge"/);
        expect(problems[1]).toMatch(/^ml-infra:runners.pools.amd64.instanceTypes\[1\] = "c7i.nano": c7i has no size "nano"/);
    });
});

describe("CPU features and hardware", () => {
    it("refuses an x86 feature on an arm64 target and an Arm one on an amd64 target", () => {
        const build = { ...validBuild(), targets: { "my-arm": { extends: "arm64-neon", cpuFeatures: ["avx512f"] }, "my-x86": { extends: "cpu-avx2", cpuFeatures: ["avx2", "sve"] } } };
        expect(problemsOf({ [`${PROJECT}:build`]: build }, "build")).toEqual([
            'ml-infra:build.targets.my-arm.cpuFeatures[0] = "avx512f": "avx512f" is an x86-64 CPU feature; this target builds linux/arm64, whose features are Arm ones as in /proc/cpuinfo (e.g. asimd, asimddp, sve, sve2, bf16, i8mm)',
            'ml-infra:build.targets.my-x86.cpuFeatures[1] = "sve": "sve" is an Arm64 CPU feature; this target builds linux/amd64, whose features are x86-64 ones as in /proc/cpuinfo (e.g. avx2, fma, avx512f, avx512bw, avx512vl)',
        ]);
    });

    it("refuses an amd64 catalog target moved to linux/arm64 with its x86 features, in one message", () => {
        const build = { ...validBuild(), targets: { "my-arm": { extends: "cpu-avx2", platform: "linux/arm64", pool: "arm64" } } };
        expect(problemsOf({ [`${PROJECT}:build`]: build }, "build")).toEqual([
            'ml-infra:build.targets.my-arm.platform = "linux/arm64": the CPU features inherited from cpu-avx2 (avx2, fma) are not linux/arm64 features; set cpuFeatures for this platform too',
        ]);
    });

    it("accepts the catalog's features, the shipped arm64-sve target and flags it does not know", () => {
        for (const spec of Object.values(CATALOG)) for (const f of spec.cpuFeatures) expect(cpuFeatureProblem(f, spec.platform), f).toBeUndefined();
        for (const f of ["asimd", "asimddp", "sve", "bf16"]) expect(cpuFeatureProblem(f, "linux/arm64")).toBeUndefined();
        expect(cpuFeatureProblem("avx10_1", "linux/amd64")).toBeUndefined();
        expect(cpuFeatureProblem("aes", "linux/arm64")).toBeUndefined();
    });

    it("knows which instance types lack a target's features (AMD before Zen 4 has no AVX-512)", () => {
        const avx512 = CATALOG["cpu-avx512"].cpuFeatures;
        for (const t of ["c5a.large", "m5a.large", "c6a.large", "m6a.xlarge", "g5.xlarge", "g6.xlarge"]) expect(missingCpuFeatures(t, avx512), t).toEqual([...avx512]);
        for (const t of ["c6i.large", "c7i.large", "m7i.large", "c7a.large", "m7a.large", "g4dn.xlarge"]) expect(hasCpuFeatures(t, avx512), t).toBe(true);
        expect(hasCpuFeatures("c6g.large", ["asimd", "asimddp", "sve"])).toBe(false);
        expect(hasCpuFeatures("c7g.large", ["asimd", "asimddp", "sve", "bf16"])).toBe(true);
        expect(missingCpuFeatures("a1.large", CATALOG["arm64-neon"].cpuFeatures)).toEqual(["asimddp"]);
        expect(hasCpuFeatures("c7i.large", ["sve"])).toBe(false);
        expect(hasCpuFeatures("inf2.xlarge", ["avx2"])).toBeUndefined();
    });
});

describe("aws:region", () => {
    it.each([["moon-1", ""], ["US-EAST-1", "; did you mean us-east-1?"], ["us-east-1 ", "; did you mean us-east-1?"]])("%s is one message, and no zone is reported against it", (region, hint) => {
        const config = runnersStack();
        config["aws:region"] = region;
        const problems = problemsOf(config);
        expect(problems).toHaveLength(1);
        expect(problems[0].startsWith(`aws:region = ${JSON.stringify(region)}: is not an AWS region name${hint} (`), problems[0]).toBe(true);
    });

    it("is checked in a stack without a network section too (a build stack)", () => {
        const config: Json = { [`${PROJECT}:build`]: validBuild(), "aws:region": "moon-1" };
        expect(problemsOf(config, "build")).toEqual([expect.stringMatching(/^aws:region = "moon-1": is not an AWS region name \(/)]);
    });

    it("takes region names, known or of the shape AWS gives new ones", () => {
        for (const r of ["us-east-1", "eu-central-2", "ap-southeast-7", "us-gov-west-1", "cn-northwest-1", "eu-south-9"]) expect(regionProblem(r), r).toBeUndefined();
        for (const r of ["moon-1", "us-moon-1", "useast1", "us-east-1a", ""]) expect(regionProblem(r), r).toBeDefined();
    });

    it("a valid region still catches zones of another", () => {
        const config = runnersStack();
        config["aws:region"] = "eu-west-1";
        expect(problemsOf(config)).toEqual([
            'ml-infra:network.availabilityZones[0] = "us-east-1a": us-east-1a is not in region eu-west-1 (aws:region)',
            'ml-infra:network.availabilityZones[1] = "us-east-1b": us-east-1b is not in region eu-west-1 (aws:region)',
        ]);
    });
});

describe("scaleToZeroSchedule", () => {
    it.each([
        ["europe/berlin", "; did you mean Europe/Berlin?"],
        ["utc", "; did you mean UTC?"],
        ["asia/kolkata", "; did you mean Asia/Kolkata?"],
        ["Europe/Berlin ", "; did you mean Europe/Berlin?"],
        ["Mars/Olympus_Mons", ""],
    ])("timeZone %s is refused", (zone, hint) => {
        const config = runnersStack();
        (section(config, "runners").scaleToZeroSchedule as Json).timeZone = zone;
        expect(problemsOf(config)).toEqual([
            `ml-infra:runners.scaleToZeroSchedule.timeZone = ${JSON.stringify(zone)}: must be an IANA time zone such as Europe/Berlin or UTC${hint}`,
        ]);
    });

    it("takes IANA names, UTC and the Etc/GMT offsets", () => {
        for (const z of ["Europe/Berlin", "UTC", "Etc/UTC", "America/New_York", "Etc/GMT+9", "Asia/Kolkata", "America/Port-au-Prince", "US/Pacific"]) expect(timeZoneProblem(z), z).toBeUndefined();
    });

    it("refuses a recurrence listed twice (spacing and case aside)", () => {
        const config = runnersStack();
        (section(config, "runners").scaleToZeroSchedule as Json).recurrences = ["0 20 * * MON-FRI", "0 6 * * SAT", "0  20 * * mon-fri"];
        expect(problemsOf(config)).toEqual([
            'ml-infra:runners.scaleToZeroSchedule.recurrences[2] = "0  20 * * mon-fri": repeats recurrences[0]: each recurrence is one scheduled action per pool; remove the duplicate',
        ]);
    });
});

describe("networks", () => {
    const network = (config: Json) => section(config, "network");

    it("refuses a NAT-less network with no endpoints and no S3 gateway: nothing in it reaches ECR, S3, logs or (runners) SSM", () => {
        const config = runnersStack();
        Object.assign(network(config), { natGateways: "none", interfaceEndpoints: [], s3GatewayEndpoint: false });
        expect(problemsOf(config)).toEqual([
            "ml-infra:network.interfaceEndpoints = []: without NAT (natGateways: none) the VPC reaches AWS services only through endpoints, and build runners pull images through ecr.api and ecr.dkr, send logs through logs and read their TLS key and take CI's tunnel through ssm, ssmmessages and ec2messages: add ecr.api, ecr.dkr, logs, ssm, ssmmessages, ec2messages, or set natGateways: single",
            "ml-infra:network.s3GatewayEndpoint = false: without NAT (natGateways: none) image layers come from S3 through this endpoint only (it is free): set it to true, or set natGateways: single",
        ]);
    });

    it("takes the default endpoints without NAT, and any endpoints with NAT", () => {
        const config = runnersStack();
        Object.assign(network(config), { natGateways: "none" });
        expect(problemsOf(config)).toEqual([]);
        Object.assign(network(config), { natGateways: "single", interfaceEndpoints: [], s3GatewayEndpoint: false });
        expect(problemsOf(config)).toEqual([]);
    });

    it.each([["perAz"], ["single"]])("refuses natGateways: %s with an explicit publicSubnets: false", (nat) => {
        const config = runnersStack();
        Object.assign(network(config), { natGateways: nat, publicSubnets: false });
        expect(problemsOf(config)).toEqual([
            `ml-infra:network.publicSubnets = false: contradicts natGateways: ${nat}: NAT gateways live in public subnets, so that creates them; remove publicSubnets: false, or set natGateways: none (endpoints only)`,
        ]);
    });

    it("a /28 VPC is one message, without a subnetBits one besides", () => {
        const config = runnersStack();
        network(config).cidr = "10.0.0.0/28";
        expect(problemsOf(config)).toEqual(['ml-infra:network.cidr = "10.0.0.0/28": a VPC\'s prefix must be /16 to /24']);
    });
});
