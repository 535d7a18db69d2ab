/**
 * Hostile and careless input: each is one clear config error naming the key,
 * the value (or [redacted] for what may be a secret) and what is allowed,
 * before anything is registered.
 */
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { credentialProblem, credentialValueProblem, isCredentialName } from "../components/shared/credentials";
import { ingressRangeProblem, isPrivateRange, parseCidr } from "../components/shared/cidr";
import { cronProblem, scheduleExpressionProblem } from "../components/shared/schedule";
import { ConfigError, loadStackConfig } from "../components/stack-config";
import { PROJECT, validBuild, validServe } from "./fixtures";
import { MAX_STACK_FILE_BYTES, readStackFileConfig } from "../scripts/plan";
import { ROOT, cliConfig, configProblems } from "./harness";

type Json = Record<string, unknown>;

const build = (patch: (b: Json & { images: Json[] }) => void = () => {}): Json => {
    const b = validBuild() as Json & { images: Json[] };
    patch(b);
    return { [`${PROJECT}:build`]: b };
};
const image = (b: Json & { images: Json[] }) => b.images[0];

/** The one problem line about `key` (fails if there is none). */
function lineAbout(problems: readonly string[], key: string): string {
    const line = problems.find((p) => p.startsWith(`${key} = `));
    expect(line, `a problem about ${key} in:\n${problems.join("\n")}`).toBeDefined();
    return line ?? "";
}

/** Problems of a raw CLI config map (keys as the Pulumi CLI hands them over), with secret keys. */
function rawProblems(all: Record<string, string>, secretKeys: readonly string[] = []): string[] {
    try {
        loadStackConfig(all, { project: PROJECT, stack: "build", projectRoot: ROOT, pathExists: fs.existsSync, isSecret: (k) => secretKeys.includes(k) });
    } catch (error) {
        if (error instanceof ConfigError) return [...error.problems];
        throw error;
    }
    return [];
}

describe("keys outside the project's namespace", () => {
    const buildJson = JSON.stringify(validBuild());
    it.each([
        ["protectData", /^protectData = "false": a config key needs a namespace; did you mean ml-infra:protectData\?/],
        ["ml_infra:protectData", /^ml_infra:protectData = "false": unknown config namespace "ml_infra"; did you mean ml-infra:protectData\?/],
        ["mlinfra:protectData", /^mlinfra:protectData = "false": unknown config namespace "mlinfra"; did you mean ml-infra:protectData\?/],
        ["kubernetes:context", /^kubernetes:context = "false": unknown config namespace "kubernetes" \(namespaces read: ml-infra, aws, pulumi/],
    ])("%s is an error, not ignored", (key, message) => {
        const problems = rawProblems({ [`${PROJECT}:build`]: buildJson, [key]: "false" });
        expect(problems).toHaveLength(1);
        expect(problems[0]).toMatch(message);
    });

    it("the providers' and Pulumi's own namespaces are read", () => {
        expect(rawProblems({ [`${PROJECT}:build`]: buildJson, "aws:region": "us-east-1", "aws:profile": "ci", "pulumi:tags": "{}" })).toEqual([]);
    });
});

describe("sections of the wrong shape", () => {
    it.each([
        ["a list", "[1,2]", /must be a mapping of keys \(allowedBaseImages, .*targets\), not a list$/],
        ["a number", "5", /= "5": must be a mapping of keys .* not a number$/],
        ["a string", "images", /must be a mapping of keys .* not a string$/],
    ])("a build section that is %s", (_, value, message) => {
        expect(lineAbout(rawProblems({ [`${PROJECT}:build`]: value }), `${PROJECT}:build`)).toMatch(message);
    });

    it("never offers the removed build.version as allowed", () => {
        expect(lineAbout(rawProblems({ [`${PROJECT}:build`]: "[]" }), `${PROJECT}:build`)).not.toContain("version");
    });
});

describe("map keys", () => {
    it("a build arg or environment name the schema refuses names the key and says why, not zod's \"Invalid key in record\"", () => {
        const problems = configProblems(build((b) => {
            image(b).buildArgs = { "1FOO": "x", "A-B": "y", "": "z", GOOD: "ok" };
        }));
        expect(problems.filter((p) => p.includes("buildArgs"))).toEqual([
            `${PROJECT}:build.images[0].buildArgs.1FOO = "x": the name "1FOO" is not allowed: names are letters, digits and _, not starting with a digit`,
            `${PROJECT}:build.images[0].buildArgs.A-B = "y": the name "A-B" is not allowed: names are letters, digits and _, not starting with a digit`,
            `${PROJECT}:build.images[0].buildArgs[""] = "z": the name "" is not allowed: names are letters, digits and _, not starting with a digit`,
        ]);
        expect(problems.join("\n")).not.toContain("Invalid key in record");
    });
});

describe("a listener certificate from another region", () => {
    it("is refused with the other config problems, at the config boundary", () => {
        const serve = { ...validServe(), loadBalancer: { certificateArn: "arn:aws:acm:eu-west-1:123456789012:certificate/12345678-1234-1234-1234-123456789012" } };
        let problems: string[] = [];
        try {
            // As index.ts loads it: the region from the aws provider's config.
            loadStackConfig({ [`${PROJECT}:serve`]: JSON.stringify(serve) }, { project: PROJECT, stack: "dev", projectRoot: ROOT, pathExists: fs.existsSync, region: "us-east-1" });
        } catch (error) {
            if (!(error instanceof ConfigError)) throw error;
            problems = error.problems.map((p) => p.replace(/^(\S+) = .*?: /, "$1: "));
        }
        expect(problems.filter((p) => p.includes("certificateArn"))).toEqual([expect.stringMatching(new RegExp(`^${PROJECT}:serve\\.loadBalancer\\.certificateArn: is a certificate in eu-west-1`))]);
    });
});

describe("the cost-center tag", () => {
    it.each([
        ["a newline", "ml\nplatform"],
        ["300 characters", "x".repeat(300)],
        ["a quote", 'ml"platform'],
    ])("with %s is refused as an AWS tag value", (_, value) => {
        expect(lineAbout(configProblems({ ...build(), [`${PROJECT}:costCenter`]: value }), `${PROJECT}:costCenter`)).toMatch(/must be 1 to 256 letters, digits, spaces and _ \. : \/ = \+ - @ \(an AWS tag value\)$/);
    });

    it("accepts what AWS accepts", () => {
        expect(configProblems({ ...build(), [`${PROJECT}:costCenter`]: "ML Platform / team-a:42" })).toEqual([]);
    });
});

describe("networks", () => {
    it.each([
        ["999.1.2.0/24", /octets must be 0 to 255/],
        ["10.0.0.1/16", /is not a network address \(host bits are set\); did you mean 10\.0\.0\.0\/16\?/],
        ["10.0.0.0/33", /must be an IPv4 CIDR|prefix length must be 0 to 32/],
        ["010.0.0.0/16", /without leading zeros/],
        ["10.0.0.0", /must be an IPv4 CIDR such as 10\.0\.0\.0\/16/],
    ])("%s is not a network", (cidr, message) => {
        expect(parseCidr(cidr).problem).toMatch(message);
        const problems = configProblems({ [`${PROJECT}:network`]: { cidr, availabilityZones: ["us-east-1a", "us-east-1b"] }, [`${PROJECT}:serve`]: validServe() });
        expect(lineAbout(problems, `${PROJECT}:network.cidr`)).toMatch(message);
    });

    it("private address space is 10/8, 172.16/12, 192.168/16 and 100.64/10, whole ranges only", () => {
        for (const r of ["10.0.0.0/8", "10.20.0.0/16", "172.31.0.0/16", "192.168.1.0/24", "100.64.0.0/10"]) expect(isPrivateRange(r), r).toBe(true);
        for (const r of ["8.0.0.0/8", "172.32.0.0/16", "10.0.0.0/7", "0.0.0.0/0", "100.128.0.0/10", "192.169.0.0/16"]) expect(isPrivateRange(r), r).toBe(false);
    });

    it.each(["8.0.0.0/8", "52.0.0.0/8", "1.2.3.4/32", "0.0.0.0/1", "172.32.0.0/11"])("ingress from public %s is refused whatever its prefix", (cidr) => {
        expect(ingressRangeProblem(cidr)).toMatch(/public address space .* private networks only/);
    });

    it("a runners stack refuses public CI ranges, and an endpoint security group open to public space", () => {
        const problems = configProblems({
            [`${PROJECT}:network`]: { mode: "existing", vpcId: "vpc-0123456789abcdef0", privateSubnetIds: ["subnet-0123456789abcdef0", "subnet-0123456789abcdef1"], endpointSecurityGroup: { vpcCidr: "8.0.0.0/8" } },
            [`${PROJECT}:runners`]: { ciSources: { cidrs: ["10.0.0.0/16", "52.0.0.0/8"] }, pools: { amd64: {} } },
        }, "runners");
        expect(lineAbout(problems, `${PROJECT}:network.endpointSecurityGroup.vpcCidr`)).toMatch(/public address space/);
        expect(lineAbout(problems, `${PROJECT}:runners.ciSources.cidrs[1]`)).toMatch(/public address space.*SSM tunnel/);
        expect(problems.some((p) => p.includes("ciSources.cidrs[0]"))).toBe(false);
    });

    it("a VPC range must be private address space", () => {
        const problems = configProblems({ [`${PROJECT}:network`]: { cidr: "52.0.0.0/16", availabilityZones: ["us-east-1a", "us-east-1b"] }, [`${PROJECT}:serve`]: validServe() });
        expect(lineAbout(problems, `${PROJECT}:network.cidr`)).toMatch(/must be private address space/);
    });
});

describe("schedules", () => {
    it.each([
        ["$(reboot) * * * *", /minute "\$\(reboot\)" must be/],
        ["0 20 * * MON-FRI; rm -rf /", /must have 5 fields/],
        ["61 * * * *", /minute "61"/],
        ["0 24 * * *", /hour "24"/],
        ["0 0 0 * *", /day of month "0"/],
        ["0 0 * 13 *", /month "13"/],
        ["0 0 * * FRI-MON", /day of week "FRI-MON"/],
        ["*/0 * * * *", /minute "\*\/0"/],
        ["0 20 * * *", undefined],
        ["0 20 * * MON-FRI", undefined],
        ["*/15 8-18 1,15 JAN-MAR 1-5", undefined],
    ])("cron %s", (expression, message) => {
        if (message) expect(cronProblem(expression)).toMatch(message);
        else expect(cronProblem(expression)).toBeUndefined();
    });

    it.each([
        ["rate(5 minutes)", undefined],
        ["rate(1 hour)", undefined],
        ["rate(1 hours)", /use "1 hour"/],
        ["rate(0 minutes)", /at least 1/],
        ["cron(0 20 ? * MON-FRI *)", undefined],
        ["cron(0 20 * * MON-FRI *)", /exactly one of day-of-month and day-of-week must be \?/],
        ["cron(0 20 ? * MON-FRI)", /needs 6 fields/],
        ["every 5 minutes", /must be rate/],
    ])("EventBridge schedule %s", (expression, message) => {
        if (message) expect(scheduleExpressionProblem(expression)).toMatch(message);
        else expect(scheduleExpressionProblem(expression)).toBeUndefined();
    });

    it("a scale-to-zero recurrence that is not cron is refused, naming it", () => {
        const problems = configProblems(
            {
                [`${PROJECT}:network`]: { availabilityZones: ["us-east-1a", "us-east-1b"] },
                [`${PROJECT}:runners`]: { scaleToZeroSchedule: { recurrences: ["0 20 * * MON-FRI", "$(reboot) * * * *"] }, pools: { amd64: {} } },
            },
            "runners",
        );
        expect(lineAbout(problems, `${PROJECT}:runners.scaleToZeroSchedule.recurrences[1]`)).toMatch(/minute "\$\(reboot\)"/);
    });
});

describe("build contexts stay inside the project", () => {
    const outside = fs.mkdtempSync(path.join(os.tmpdir(), "outside-"));
    const link = path.join(ROOT, ".tmp-escape-link");
    afterAll(() => {
        fs.rmSync(outside, { recursive: true, force: true });
        fs.rmSync(link, { force: true });
    });

    it.each([
        ["..", /must stay inside the project .*\.\. leaves it/],
        ["/", /must be a path relative to the project .* not an absolute one/],
        ["images/../..", /must stay inside the project/],
        ["/etc", /not an absolute one/],
    ])("context %s is refused", (context, message) => {
        expect(lineAbout(configProblems(build((b) => (image(b).context = context))), `${PROJECT}:build.images[0].context`)).toMatch(message);
    });

    it("a context that is a symlink out of the project is refused", () => {
        fs.writeFileSync(path.join(outside, "Dockerfile"), "FROM scratch\n");
        fs.symlinkSync(outside, link);
        expect(lineAbout(configProblems(build((b) => (image(b).context = ".tmp-escape-link"))), `${PROJECT}:build.images[0].context`)).toMatch(/is a symlink to/);
    });

    it("a Dockerfile that is a directory, and a context that is a file, are refused (no crash)", () => {
        expect(lineAbout(configProblems(build((b) => Object.assign(image(b), { context: "images", dockerfile: "inference-server" }))), `${PROJECT}:build.images[0].dockerfile`)).toMatch(/is not a file/);
        expect(lineAbout(configProblems(build((b) => Object.assign(image(b), { context: "package.json", dockerfile: "." }))), `${PROJECT}:build.images[0].context`)).toMatch(/./);
    });

    it("a Dockerfile outside the project is refused", () => {
        expect(lineAbout(configProblems(build((b) => (image(b).dockerfile = "../../../etc/passwd"))), `${PROJECT}:build.images[0].dockerfile`)).toMatch(/must stay inside the project/);
    });
});

describe("bounded sizes", () => {
    it("45,000 build args are one error, quickly", () => {
        const many = Object.fromEntries(Array.from({ length: 45_000 }, (_, i) => [`A${i}`, "x"]));
        const started = Date.now();
        const problems = configProblems(build((b) => (image(b).buildArgs = many)));
        expect(Date.now() - started).toBeLessThan(5_000);
        expect(lineAbout(problems, `${PROJECT}:build.images[0].buildArgs`)).toMatch(/has 45000 entries; at most 100$/);
        expect(problems).toHaveLength(1);
    });

    it("a 100 kB build arg value is refused", () => {
        expect(lineAbout(configProblems(build((b) => (image(b).buildArgs = { BIG: "x".repeat(100_000) }))), `${PROJECT}:build.images[0].buildArgs.BIG`)).toMatch(/at most 4096 characters/);
    });

    it("too many images and targets are refused", () => {
        const problems = configProblems(
            build((b) => {
                b.images = Array.from({ length: 201 }, (_, i) => ({ name: `img-${i}`, context: "images/inference-server", targets: ["cpu-avx2"] }));
                b.targets = Object.fromEntries(Array.from({ length: 51 }, (_, i) => [`t-${i}`, { extends: "cpu-avx2" }]));
            }),
        );
        expect(lineAbout(problems, `${PROJECT}:build.images`)).toMatch(/at most 200 images/);
        expect(lineAbout(problems, `${PROJECT}:build.targets`)).toMatch(/declares 51 targets; at most 50/);
    });
});

describe("credentials in plain config", () => {
    it.each([
        ["AWS_SECRET_ACCESS_KEY", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", true],
        ["DB_PASSWORD", "hunter2", true],
        ["MINIO_ROOT_PASSWORD", "minio123", true],
        ["HF_TOKEN", "x", true],
        ["apiKey", "x", true],
        ["OPENAI_API_KEY", "x", true],
        ["PRIVATE_KEY", "x", true],
        ["TOKENIZERS_PARALLELISM", "false", false],
        ["CACHE_KEY", "v1", false],
        ["KEYRING_BACKEND", "file", false],
        ["MODEL_DIR", "/opt/model", false],
        ["PIP_EXTRA_INDEX_URL", "https://__token__:pypi-AgEIcHlwaS5vcmc@pypi.example.com/simple", true],
        ["PIP_INDEX_URL", "https://pypi.org/simple", false],
        ["REPO", "https://ghp_abcdefghijklmnopqrstuvwxyz0123456789@github.com/org/repo", true],
        ["NOTE", "AKIAIOSFODNN7EXAMPLE", true],
        ["NOTE", "hf_abcdefghijklmnopqrstuvwxyzABCDEFGH", true],
        ["NOTE", "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U", true],
        ["NOTE", "-----BEGIN RSA PRIVATE KEY-----\nMIIE", true],
        ["NOTE", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", true],
        ["NOTE", "Zm9vYmFyYmF6cXV4MTIzNDU2Nzg5MEFCQ0RFRkdISUpL", true],
        ["DIGEST", "sha256:5b0c4e3a1c1f7a9d2e8b6c4d0f1a3e5b7c9d1e3f5a7b9c1d3e5f7a9b1c3d5e7f", false],
        ["ROLE", "arn:aws:iam::123456789012:role/inference-task", false],
        ["FLAGS", "-O3 -march=x86-64-v3 -mavx2 -mfma", false],
    ])("%s=%s is %s", (name, value, refused) => {
        expect(credentialProblem(name, value) !== undefined, `${name}=${value}`).toBe(refused);
    });

    it("names are split into words, so a word inside another is not a secret", () => {
        expect(isCredentialName("TOKENIZERS_PARALLELISM")).toBe(false);
        expect(isCredentialName("hfToken")).toBe(true);
        expect(isCredentialName("client-secret")).toBe(true);
    });

    it("a service's environment refuses credentials with how to pass them, and never shows the value", () => {
        const serve = validServe() as Json & { services: Array<Json & { sidecars?: Json[] }> };
        serve.services[0].environment = { AWS_SECRET_ACCESS_KEY: "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", DB_PASSWORD: "hunter2", LOG_LEVEL: "info" };
        const problems = configProblems({ [`${PROJECT}:network`]: { availabilityZones: ["us-east-1a", "us-east-1b"], natGateways: "single" }, [`${PROJECT}:serve`]: serve }, "dev");
        for (const key of ["AWS_SECRET_ACCESS_KEY", "DB_PASSWORD"]) {
            const line = lineAbout(problems, `${PROJECT}:serve.services[0].environment.${key}`);
            expect(line).toMatch(/= \[redacted\]: is named like a secret: .* name its ARN under secrets:/);
        }
        expect(problems.join("\n")).not.toMatch(/hunter2|wJalrXUtnFEMI/);
        expect(problems.some((p) => p.includes("LOG_LEVEL"))).toBe(false);
    });

    it("a build arg with a token in a URL is refused with how to pass a build secret", () => {
        const problems = configProblems(build((b) => (image(b).buildArgs = { PIP_EXTRA_INDEX_URL: "https://__token__:s3cr3tvalue@pypi.example.com/simple" })));
        const line = lineAbout(problems, `${PROJECT}:build.images[0].buildArgs.PIP_EXTRA_INDEX_URL`);
        expect(line).toMatch(/= \[redacted\]: is a URL with credentials in it .* pass it as a build secret/);
        expect(line).not.toContain("s3cr3tvalue");
    });

    it("a token anywhere in plain config is refused", () => {
        const problems = rawProblems({ [`${PROJECT}:build`]: JSON.stringify(validBuild()), [`${PROJECT}:costCenter`]: "ghp_abcdefghijklmnopqrstuvwxyz0123456789" });
        expect(lineAbout(problems, `${PROJECT}:costCenter`)).toMatch(/= \[redacted\]: looks like a GitHub token/);
    });

    it("build secrets written in clear are refused; set with --secret they are accepted", () => {
        const all = { [`${PROJECT}:build`]: JSON.stringify(validBuild()), [`${PROJECT}:buildSecrets`]: JSON.stringify({ hf_token: "hf_abc" }) };
        expect(lineAbout(rawProblems(all), `${PROJECT}:buildSecrets`)).toMatch(/= \[secret\]: is plain text in the stack file: set each value with pulumi config set --secret/);
        expect(rawProblems(all, [`${PROJECT}:buildSecrets`])).toEqual([]);
    });

    it("values shaped like credentials are recognised, and ordinary values are not (sample)", () => {
        for (const v of [
            "images/inference-server",
            "us-east-1",
            "ml-models-123456789012",
            "classifier/2026-11-01",
            "0 20 * * MON-FRI",
            "s3://bucket/prefix",
            "ELBSecurityPolicy-TLS13-1-2-2021-06",
            "ELBSecurityPolicy-TLS13-1-2-Res-FIPS-PQ-2025-09",
            "arn:aws:acm:us-east-1:123456789012:certificate/6f3b9a1e-2c47-4d85-b0e9-8a1f5c7d2e64",
            "ClassifierModelVersion2026NovemberRelease",
        ]) {
            expect(credentialValueProblem(v), v).toBeUndefined();
        }
    });
});

describe("stack files as the CLI reads them", () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "hostile-stacks-"));
    afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));
    const file = (name: string, text: string) => {
        const f = path.join(dir, name);
        fs.writeFileSync(f, text);
        return f;
    };

    it(".inf and .nan reach the program as their YAML text and are named, not read as null", () => {
        const config = readStackFileConfig(file("inf.yaml", `config:\n  ${PROJECT}:build:\n    images: [{name: inference, context: images/inference-server, targets: [cpu-avx2]}]\n    builder: x\n    registry:\n      keepReleasesPerTarget: .inf\n      cacheUntaggedExpireDays: .nan\n`));
        const values = cliConfig(config);
        expect(JSON.parse(values[`${PROJECT}:build`]).registry).toEqual({ keepReleasesPerTarget: ".inf", cacheUntaggedExpireDays: ".nan" });
        const problems = rawProblems(values);
        expect(lineAbout(problems, `${PROJECT}:build.registry.keepReleasesPerTarget`)).toMatch(/= "\.inf": .*expected number/);
        expect(lineAbout(problems, `${PROJECT}:build.registry.cacheUntaggedExpireDays`)).toMatch(/= "\.nan": .*expected number/);
    });

    it("a YAML merge key is resolved as the CLI resolves it: one config, no unknown `<<` key", () => {
        const text = `config:\n  ${PROJECT}:build:\n    images:\n      - &img {name: inference, context: images/inference-server, targets: [cpu-avx2]}\n      - <<: *img\n        name: other\n    builder: x\n    allowedBaseImages: ["public.ecr.aws/docker/library/debian:bookworm-slim"]\n`;
        const config = readStackFileConfig(file("merge.yaml", text));
        expect(rawProblems(cliConfig(config))).toEqual([]);
        expect((config[`${PROJECT}:build`] as { images: Array<{ name: string; context: string }> }).images[1]).toMatchObject({ name: "other", context: "images/inference-server" });
    });

    it("an empty stack file is an empty config (one clear error from the program), and a huge one is refused naming the file", () => {
        expect(readStackFileConfig(file("empty.yaml", ""))).toEqual({});
        expect(rawProblems(cliConfig({}))[0]).toMatch(/a stack needs a section to deploy/);
        const huge = file("huge.yaml", `config:\n  ${PROJECT}:costCenter: "${"x".repeat(MAX_STACK_FILE_BYTES)}"\n`);
        expect(() => readStackFileConfig(huge)).toThrow(/huge\.yaml is \d+ bytes; a stack file is at most 1024 KiB/);
    });

    it("values the Pulumi CLI (gopkg.in/yaml.v3) reads differently from the plan are refused, one line each, naming the key and how to write it", () => {
        const text = [
            "config:",
            `  ${PROJECT}:serve:`,
            "    services:",
            "      - cpu: 01024",
            "        port: 8080",
            "        replicas: 07",
            "        memory: 4_096",
            "        environment: {RELEASED: 2026-11-01, AT: 2026-11-01T10:00:00Z, KEPT: \"2026-11-01\", ID: !!str 0123, V: 1.2.3, N: 09}",
            "        model: !!omap [{bucket: b}]",
        ].join("\n");
        let message = "";
        try {
            readStackFileConfig(file("cli.yaml", `${text}\n`));
        } catch (error) {
            message = (error as Error).message;
        }
        const lines = message.split("\n");
        expect(lines[0]).toMatch(/cli\.yaml: the Pulumi CLI would read these values differently from this plan:$/);
        expect(lines.slice(1)).toEqual([
            `  ${PROJECT}:serve.services[0].cpu = 01024: a number with a leading zero, which the Pulumi CLI reads as octal (532) and this plan as 1024; write 1024 (or 532), or quote it for text`,
            `  ${PROJECT}:serve.services[0].memory = 4_096: a number with "_", which the Pulumi CLI reads as a number and this plan as text; write it without "_", or quote it for text`,
            expect.stringMatching(new RegExp(`^  ${PROJECT}:serve\\.services\\[0\\]\\.environment\\.RELEASED = 2026-11-01: a date, which the Pulumi CLI reads as a timestamp .*; quote it$`)),
            expect.stringMatching(new RegExp(`^  ${PROJECT}:serve\\.services\\[0\\]\\.environment\\.AT = 2026-11-01T10:00:00Z: a date`)),
            `  ${PROJECT}:serve.services[0].model = !!omap: has the explicit YAML tag !!omap, which the Pulumi CLI and this plan read differently; write the value without a tag`,
        ]);
        // 07 and 09 read the same in both (7, 9); quoted text and !!str are text for both.
    });

    it("a config that is a list, not a mapping, names the file", () => {
        expect(() => readStackFileConfig(file("list.yaml", "config:\n  - a\n"))).toThrow(/list\.yaml: config is not a mapping/);
    });
});

describe("an environment's clients", () => {
    it("public client ranges are refused whatever the prefix, private ones accepted", () => {
        const serve = validServe() as Json & { clients?: Json };
        serve.clients = { cidrs: ["10.0.0.0/16", ...Array.from({ length: 10 }, (_, i) => `${i + 11}.0.0.0/8`)] };
        const problems = configProblems({ [`${PROJECT}:network`]: { availabilityZones: ["us-east-1a", "us-east-1b"], natGateways: "single" }, [`${PROJECT}:serve`]: serve }, "dev");
        for (let i = 1; i <= 10; i++) expect(lineAbout(problems, `${PROJECT}:serve.clients.cidrs[${i}]`)).toMatch(/public address space/);
        expect(problems.some((p) => p.includes("clients.cidrs[0]"))).toBe(false);
    });

    it("more client ranges than a security group holds are refused", () => {
        const serve = validServe() as Json & { clients?: Json };
        serve.clients = { cidrs: Array.from({ length: 51 }, (_, i) => `10.${i}.0.0/16`) };
        const problems = configProblems({ [`${PROJECT}:network`]: { availabilityZones: ["us-east-1a", "us-east-1b"], natGateways: "single" }, [`${PROJECT}:serve`]: serve }, "dev");
        expect(lineAbout(problems, `${PROJECT}:serve.clients.cidrs`)).toMatch(/at most 50/);
    });
});
