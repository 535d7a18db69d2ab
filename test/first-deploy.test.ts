/**
 * A first deployment from an empty AWS account, in the order the README gives:
 * the runners stack, then (CI having made its builders through SSM tunnels)
 * the build stack, reading the runners stack, then dev, reading the build
 * stack. Each of the problems that stopped a first deployment has a test here
 * that fails on the old behaviour:
 *   1. CI outside the VPC reaches the pools through an SSM tunnel (no ingress from outside);
 *   2. a security group is referenced only where it can exist (an existing VPC);
 *   3. every stack deploys in order, and prepare-builders fails loudly;
 *   4. CI reads plain outputs; credentials only with --show-secrets;
 *   5. the referenced stacks are named from the organization and the project;
 *   6. the pull-through creation templates work without (or with exactly) a role;
 *   7. the build job and its credentials last as long as the longest target needs.
 */
import { spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { beforeAll, describe, expect, it } from "vitest";
import { creationTemplateRolePolicy, creationTemplateTrustPolicy } from "../components/registry/iam";
import { registryLocationOf } from "../components/shared/image-refs";
import { iamDocumentProblems } from "../policy/iam-grammar";
import { buildLimits, longestBuild } from "../scripts/ci/build-limits";
import { type Evaluation, REGISTRY_HOST, ROOT, configProblems, evaluate, stackFileConfig } from "./harness";
import { runPolicies } from "../policy/policies";
import { policyResourceOf } from "../scripts/lib/mock-runtime";
import { collectRejections } from "./harness";

const IN_CI = process.env.CI === "true";
const network = (mode: "create" | "existing") =>
    mode === "create"
        ? { availabilityZones: ["us-east-1a", "us-east-1b"], natGateways: "single" }
        : { mode: "existing", vpcId: "vpc-0123456789abcdef0", privateSubnetIds: ["subnet-0123456789abcdef0", "subnet-0123456789abcdef1"] };

// ------------------------------------------------------------------ 3. the sequence

describe("a first deployment, stack by stack, each reading the one before", () => {
    let runners: Evaluation;
    let build: Evaluation;
    let dev: Evaluation;

    beforeAll(async () => {
        runners = await evaluate("runners", { stackOutputs: {} });
        build = await evaluate("build", { stackOutputs: { runners: { outputs: runners.outputs, secretOutputs: runners.secretOutputs } } });
        dev = await evaluate("dev", { stackOutputs: { build: { outputs: build.outputs, secretOutputs: build.secretOutputs } } });
    });

    it("runners: needs no other stack, builds no image, exports the pools and the registry", () => {
        expect(runners.ofType("pulumi:pulumi:StackReference")).toEqual([]);
        expect(runners.ofType("docker-build:index:Image")).toEqual([]);
        expect(Object.keys(runners.outputs.runners as object).sort()).toEqual(["amd64", "arm64", "gpu"]);
        expect(runners.outputs.registry).toMatchObject({ host: REGISTRY_HOST, repositoryPrefix: "ml" });
    });

    it("build: reads the runners stack, builds every target on its pool's builder, creates no runner", () => {
        expect(build.ofType("pulumi:pulumi:StackReference").map((r) => r.inputs.name)).toEqual(["organization/ml-infra/runners"]);
        const builders = build.ofType("docker-build:index:Image").map((r) => (r.inputs.builder as { name: string }).name);
        expect(new Set(builders)).toEqual(new Set(Object.values(runners.outputs.runners as Record<string, { builder: string }>).map((p) => p.builder)));
        expect(build.resources.filter((r) => r.type === "ml-infra:build:BuildRunnerPool")).toEqual([]);
    });

    it("dev: reads the build stack and deploys its digests, the servers' and every sidecar's, from its registry", () => {
        expect(dev.ofType("pulumi:pulumi:StackReference").map((r) => r.inputs.name)).toEqual(["organization/ml-infra/build"]);
        const built = JSON.stringify(build.outputs.images);
        for (const d of Object.values(dev.outputs.deployments as Record<string, { ref: string; source: string; images: Array<{ container: string; ref: string }> }>)) {
            expect(d.source).toBe("build-stack");
            expect(d.ref).toMatch(/@sha256:[0-9a-f]{64}$/);
            for (const i of d.images) {
                expect(i.ref.startsWith(`${REGISTRY_HOST}/ml/`), `${i.container}: ${i.ref}`).toBe(true);
                expect(built, `${i.container}: ${i.ref} is one the build stack exports`).toContain(i.ref);
            }
        }
    });

    it("every stack passes the policy pack", () => {
        for (const ev of [runners, build, dev]) expect(runPolicies(ev.resources.map(policyResourceOf))).toEqual([]);
    });

    it("the build stack before the runners stack is refused before anything is registered, naming the key and the order", async () => {
        const messages = await collectRejections(() => evaluate("build", { stackOutputs: { runners: { outputs: {} } } }));
        expect(messages[0]).toMatch(/ml-infra:build\.runnersStack = "organization\/ml-infra\/runners": runners stack organization\/ml-infra\/runners exports no runners and no registry: deploy it first \(pulumi up -s runners\)/);
    });

    it("a build target on a pool the runners stack lacks is refused before anything is registered", async () => {
        const onlyAmd64 = { ...(runners.outputs.runners as Record<string, unknown>) };
        delete onlyAmd64.gpu;
        const messages = await collectRejections(() => evaluate("build", { stackOutputs: { runners: { outputs: { ...runners.outputs, runners: onlyAmd64 } } } }));
        expect(messages[0]).toMatch(/ml-infra:build\.images\[0\]\.targets\[4\]: target cuda12 builds on the gpu pool, which runners stack organization\/ml-infra\/runners does not have/);
    });

    it("runners and build in one stack are refused: the builders would not exist when the images build", () => {
        const config = { ...stackFileConfig("runners"), "ml-infra:build": stackFileConfig("build")["ml-infra:build"] };
        expect(configProblems(config, "all").join("\n")).toMatch(/^ml-infra:build = .*: runners and build are separate stacks/m);
    });
});

// ------------------------------------------------------------------ 5. stack names

describe("referenced stacks are named from the organization and the project", () => {
    it("on Pulumi Cloud (organization acme) and on a self-managed backend (organization)", async () => {
        for (const organization of ["acme", "organization"]) {
            const r = await evaluate("runners", { stackOutputs: {}, organization });
            const b = await evaluate("build", { organization, stackOutputs: { runners: { outputs: r.outputs } } });
            expect(b.ofType("pulumi:pulumi:StackReference").map((x) => x.inputs.name)).toEqual([`${organization}/ml-infra/runners`]);
            const d = await evaluate("dev", { organization, stackOutputs: { build: { outputs: b.outputs } } });
            expect(d.ofType("pulumi:pulumi:StackReference").map((x) => x.inputs.name)).toEqual([`${organization}/ml-infra/build`]);
            // CI reads the certificates from the runners stack by its full name.
            const gpu = (r.outputs.runners as Record<string, { certInstallCommands: string[] }>).gpu;
            expect(gpu.certInstallCommands.join("\n")).toContain(`--stack '${organization}/ml-infra/runners'`);
        }
    });
});

// ------------------------------------------------------------------ 2. references only where they exist

describe("a security group is referenced only in a VPC that has it", () => {
    const runnersWith = (mode: "create" | "existing") => ({
        "ml-infra:network": network(mode),
        "ml-infra:registry": { pullThrough: { dockerHub: { secretName: "ecr-pullthroughcache/docker-hub" } } },
        "ml-infra:runners": { ciSources: { securityGroupIds: ["sg-0123456789abcdef0"] }, pools: { amd64: {} } },
    });
    const serveWith = (mode: "create" | "existing") => ({
        "ml-infra:network": { ...network(mode), ...(mode === "create" ? { natGateways: "single" } : {}) },
        "ml-infra:serve": { ...(stackFileConfig("dev")["ml-infra:serve"] as object), clients: { securityGroupIds: ["sg-0123456789abcdef0"] } },
    });

    it.each([
        ["runners.ciSources.securityGroupIds", runnersWith],
        ["serve.clients.securityGroupIds", serveWith],
    ] as const)("%s: refused in a VPC the stack creates, naming the key and what to use instead", (key, make) => {
        const problems = configProblems(make("create"), "x");
        expect(problems).toEqual([expect.stringMatching(new RegExp(`^ml-infra:${key.replace(/\./g, "\\.")}\\[0\\] = "sg-0123456789abcdef0": can only reference a group in an existing VPC \\(network\\.mode: existing\\): .*CIDRs`))]);
    });

    it.each([
        ["runners.ciSources.securityGroupIds", runnersWith],
        ["serve.clients.securityGroupIds", serveWith],
    ] as const)("%s: accepted in an existing VPC the stack names", (_key, make) => {
        expect(configProblems(make("existing"), "x")).toEqual([]);
    });

    it("no shipped stack references a group in a VPC it creates", () => {
        for (const stack of ["runners", "dev", "staging", "prod"]) {
            const config = stackFileConfig(stack);
            const created = (config["ml-infra:network"] as { mode?: string } | undefined)?.mode !== "existing";
            const text = JSON.stringify(config);
            if (created) expect(text, stack).not.toMatch(/"securityGroupIds":\["sg-/);
        }
    });
});

// ------------------------------------------------------------------ 1. the tunnel

describe("CI outside the VPC reaches every pool through an SSM tunnel, and nothing from outside the VPC reaches a pool", () => {
    let runners: Evaluation;
    beforeAll(async () => {
        runners = await evaluate("runners", { stackOutputs: {} });
    });

    it("each pool's builder dials 127.0.0.1 on its own port over mutual TLS, and the server certificate holds that address", () => {
        const pools = runners.outputs.runners as Record<string, { tunnelPort: number; buildxCreateCommands: string[]; inVpcBuildxCreateCommands: string[]; tunnelCommands: string[] }>;
        const ports = Object.values(pools).map((p) => p.tunnelPort);
        expect(new Set(ports).size).toBe(ports.length);
        for (const [pool, p] of Object.entries(pools)) {
            expect(p.buildxCreateCommands[1]).toMatch(new RegExp(`--driver remote .*cacert=.*,cert=.*,key=.*,servername=127\\.0\\.0\\.1" tcp://127\\.0\\.0\\.1:${p.tunnelPort}$`));
            expect(p.tunnelCommands.join("\n")).toContain("--document-name AWS-StartPortForwardingSessionToRemoteHost");
            expect(p.inVpcBuildxCreateCommands[1]).toMatch(/tcp:\/\/runners-.*\.elb\..*:1234$/);
            const csr = runners.ofType("tls:index/certRequest:CertRequest").find((r) => r.name === `runners-${pool}-server-csr`);
            expect(csr?.inputs.ipAddresses).toEqual(["127.0.0.1"]);
        }
    });

    it("the load balancer admits the runners themselves (the tunnel's agent) and no address outside the VPC; its targets are reached without client-IP preservation", () => {
        const rules = runners.ofType("aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule").filter((r) => r.name.startsWith("runners-"));
        for (const r of rules) expect(r.inputs.cidrIpv4, r.name).toBeUndefined();
        expect(rules.filter((r) => r.name.endsWith("-lb-from-tunnel"))).toHaveLength(3);
        for (const tg of runners.ofType("aws:lb/targetGroup:TargetGroup")) expect(tg.inputs.preserveClientIp).toBe("false");
        for (const lb of runners.ofType("aws:lb/loadBalancer:LoadBalancer")) expect(lb.inputs.internal).toBe(true);
    });

    it("the tunnel commands run: they pick a healthy runner, start the session in the background and wait for the port", () => {
        const dir = fs.mkdtempSync(path.join(os.tmpdir(), "tunnel-"));
        const log = path.join(dir, "calls.log");
        // aws: the group has one healthy runner; `ssm start-session` listens on the local port the way the plugin does.
        const pool = (runners.outputs.runners as Record<string, { tunnelCommands: string[]; tunnelPort: number }>).amd64;
        const port = 20000 + (process.pid % 20000);
        fs.writeFileSync(
            path.join(dir, "aws"),
            `#!/bin/bash\necho "aws $*" >> "${log}"\ncase "$1 $2" in\n  "autoscaling describe-auto-scaling-groups") echo i-0123456789abcdef0;;\n  "ssm start-session") exec node -e 'require("net").createServer((s) => s.end()).listen(${port}, "127.0.0.1"); setTimeout(() => process.exit(0), 4000)';;\nesac\n`,
            { mode: 0o755 },
        );
        const commands = pool.tunnelCommands.map((c) => c.replaceAll(`127.0.0.1/${pool.tunnelPort}`, `127.0.0.1/${port}`));
        const r = spawnSync("bash", ["-euo", "pipefail", "-c", commands.join("\n")], { env: { ...process.env, PATH: `${dir}:${process.env.PATH}`, HOME: dir }, encoding: "utf8", timeout: 30_000 });
        expect(r.status, r.stderr).toBe(0);
        const calls = fs.readFileSync(log, "utf8");
        expect(calls).toContain("ssm start-session --region us-east-1 --target i-0123456789abcdef0 --document-name AWS-StartPortForwardingSessionToRemoteHost");
        expect(fs.existsSync(path.join(dir, ".ml-infra/buildkit/amd64/tunnel.pid"))).toBe(true);
    });
});

// ------------------------------------------------------------------ 4. outputs CI can read

describe("CI reads only outputs that exist, and reads secrets only with --show-secrets", () => {
    let runners: Evaluation;
    beforeAll(async () => {
        runners = await evaluate("runners", { stackOutputs: {} });
    });

    /** Every `pulumi stack output` a text runs: the output's name and whether it asks for secrets. */
    const reads = (text: string) =>
        [...text.matchAll(/pulumi stack output\b([^|\n;)]*)/g)].map((m) => {
            const args = m[1];
            const name = args.replace(/--stack\s+\S+/, "").replace(/--\S+/g, "").replace(/"[^"]*"|'[^']*'/g, "").trim().split(/\s+/).filter(Boolean).pop();
            return { name, showSecrets: args.includes("--show-secrets"), text: m[0] };
        });

    it("the runners output is plain, the credentials are secret and in no plain output", () => {
        expect(runners.secretOutputs).toContain("runnerCredentials");
        expect(runners.secretOutputs).not.toContain("runners");
        const plain = JSON.stringify(Object.fromEntries(Object.entries(runners.outputs).filter(([k]) => !runners.secretOutputs.includes(k))));
        expect(plain).not.toMatch(/PRIVATE KEY/);
    });

    it("every snippet of the README, the CI scripts and the commands the stack exports reads an output that exists, plain, or asks for --show-secrets", () => {
        const sources: Array<[string, string]> = [
            ["README.md", fs.readFileSync(path.join(ROOT, "README.md"), "utf8")],
            ["scripts/ci/prepare-builders.sh", fs.readFileSync(path.join(ROOT, "scripts/ci/prepare-builders.sh"), "utf8")],
            ["runners output", JSON.stringify(runners.outputs.runners)],
        ];
        let checked = 0;
        for (const [where, text] of sources) {
            for (const read of reads(text)) {
                if (read.name === undefined || !/^[a-zA-Z]+$/.test(read.name) || !["runners", "runnerCredentials", "registry", "multiArchBuilder", "vpc", "images", "deployments"].includes(read.name)) continue;
                checked++;
                if (["runners", "runnerCredentials", "registry", "multiArchBuilder", "vpc"].includes(read.name)) {
                    expect(Object.keys(runners.outputs), `${where}: ${read.text}`).toContain(read.name);
                    if (runners.secretOutputs.includes(read.name)) expect(read.showSecrets, `${where}: ${read.text} reads a secret output`).toBe(true);
                }
            }
        }
        expect(checked).toBeGreaterThan(3);
    });

    const hasJq = spawnSync("jq", ["--version"]).status === 0;
    it.skipIf(!hasJq && !IN_CI)("prepare-builders.sh fails loudly when there is no runners stack, and when a builder cannot be made", () => {
        const dir = fs.mkdtempSync(path.join(os.tmpdir(), "prepare-"));
        const script = path.join(ROOT, "scripts/ci/prepare-builders.sh");
        const runnersJson = JSON.stringify({ amd64: { builder: "ml-amd64", scaleUpCommand: "true", waitHealthyCommand: "true", certInstallCommands: ["true"], tunnelCommands: ["true"], buildxCreateCommands: ["false"] } });
        const bin = (pulumi: string, docker: string) => {
            fs.writeFileSync(path.join(dir, "pulumi"), `#!/bin/sh\n${pulumi}\n`, { mode: 0o755 });
            fs.writeFileSync(path.join(dir, "docker"), `#!/bin/sh\n${docker}\n`, { mode: 0o755 });
            return { ...process.env, PATH: `${dir}:${process.env.PATH}`, HOME: dir };
        };
        const run = (env: NodeJS.ProcessEnv) => spawnSync("bash", [script, "acme/ml-infra/runners"], { env, encoding: "utf8" });

        const none = run(bin("echo 'error: stack not found' >&2; exit 255", "exit 0"));
        expect(none.status).toBe(1);
        expect(none.stderr).toContain("deploy the runners stack first");

        const broken = run(bin(`echo '${runnersJson}'`, "exit 0"));
        expect(broken.status).toBe(1);
        expect(broken.stderr).toContain("pool amd64: cannot create builder ml-amd64");

        const unreachable = run(bin(`echo '${runnersJson.replace('["false"]', '["true"]')}'`, "echo 'Status: inactive'"));
        expect(unreachable.status).toBe(1);
        expect(unreachable.stderr).toContain("pool amd64: builder ml-amd64 does not reach buildkitd through the tunnel");

        const ok = run(bin(`echo '${runnersJson.replace('["false"]', '["true"]')}'`, "echo 'Status:   running'"));
        expect(ok.status, ok.stderr).toBe(0);
        expect(ok.stdout).toContain("pool amd64: builder ml-amd64 is running");
    });
});

// ------------------------------------------------------------------ 6. creation templates

describe("pull-through creation templates that can create their repositories", () => {
    it("with a customer key: a role ECR assumes, allowed to create the prefixes' repositories and use that key only", async () => {
        const key = "arn:aws:kms:us-east-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab";
        const config = { ...stackFileConfig("runners"), "ml-infra:registry": { ...(stackFileConfig("runners")["ml-infra:registry"] as object), kmsKeyArn: key } };
        const ev = await evaluate("runners", { config, stackOutputs: {} });
        const role = ev.ofType("aws:iam/role:Role").find((r) => r.name === "registry-template-role");
        expect(role).toBeDefined();
        const trust = JSON.parse(String(role?.inputs.assumeRolePolicy)) as { Statement: Array<{ Principal: unknown }> };
        expect(trust.Statement.map((s) => s.Principal)).toEqual([{ Service: "ecr.amazonaws.com" }]);
        for (const t of ev.ofType("aws:ecr/repositoryCreationTemplate:RepositoryCreationTemplate")) {
            expect(t.inputs.encryptionConfigurations).toEqual([{ encryptionType: "KMS", kmsKey: key }]);
            expect(t.inputs.customRoleArn).toBe(`arn:aws:mock:us-east-1:123456789012:aws:iam/role:Role/registry-template-role`);
        }
        expect(runPolicies(ev.resources.map(policyResourceOf))).toEqual([]);
    });

    it("the role's documents are exactly what AWS documents, scoped, and valid IAM", () => {
        const location = registryLocationOf("123456789012", "us-east-1");
        const key = "arn:aws:kms:us-east-1:123456789012:key/k";
        const policy = creationTemplateRolePolicy({ location, prefixes: ["quay", "docker-hub"], kmsKeyArn: key });
        expect(policy.Statement).toEqual([
            { Sid: "CreatePullThroughRepositories", Effect: "Allow", Action: ["ecr:CreateRepository"], Resource: ["arn:aws:ecr:us-east-1:123456789012:repository/docker-hub/*", "arn:aws:ecr:us-east-1:123456789012:repository/quay/*"] },
            { Sid: "EncryptWithTheKey", Effect: "Allow", Action: ["kms:CreateGrant", "kms:DescribeKey", "kms:RetireGrant"], Resource: [key] },
        ]);
        expect(iamDocumentProblems(policy, "identity")).toEqual([]);
        expect(iamDocumentProblems(creationTemplateTrustPolicy(location), "trust")).toEqual([]);
    });

    it("an alias is refused as the templates' key (IAM grants key use on the key's ARN)", () => {
        const config = { ...stackFileConfig("runners"), "ml-infra:registry": { kmsKeyArn: "arn:aws:kms:us-east-1:123456789012:alias/ecr" } };
        expect(configProblems(config, "runners").join("\n")).toMatch(/ml-infra:registry\.kmsKeyArn = .*must be a KMS key ARN .*not an alias/);
    });
});

// ------------------------------------------------------------------ 7. long builds

describe("long builds: the job and its credentials last as long as the longest target", () => {
    it("sizes the build job from the longest target of the build stack", () => {
        const { minutes, target } = longestBuild(stackFileConfig("build"), "build");
        expect(target).toBe("cuda11-source");
        expect(buildLimits(minutes, target, true)).toEqual({ timeoutMinutes: minutes + 45, roleDurationSeconds: (minutes + 45) * 60 });
        expect(buildLimits(10, "x", true).roleDurationSeconds).toBe(3600);
    });

    it("fails fast, naming the target and what to do, when a build cannot fit its job or a role session", () => {
        expect(() => buildLimits(360, "cuda11-source", true)).toThrow(/target cuda11-source may build for 360 minutes; .*405, but a GitHub-hosted job stops at 360\. Run the build job on a self-hosted runner \(repository variable ML_INFRA_BUILD_RUNS_ON\)/);
        expect(() => buildLimits(700, "huge", false)).toThrow(/an IAM role session lasts at most 720/);
        expect(() => buildLimits(360, "cuda11-source", false)).not.toThrow();
    });

    it("the CLI prints the limits for the workflow and exits 1 with the reason when they cannot be met", () => {
        const ok = spawnSync(process.execPath, [path.join(ROOT, "node_modules/tsx/dist/cli.mjs"), path.join(ROOT, "scripts/ci/build-limits.ts"), "--stack", "build"], { encoding: "utf8", cwd: ROOT });
        expect(ok.status, ok.stderr).toBe(0);
        expect(ok.stdout).toMatch(/^timeout-minutes=\d+\nrole-duration-seconds=\d+\n$/);
    });

    it("the deploy workflow feeds them to the build job's timeout and its credentials", () => {
        const deploy = fs.readFileSync(path.join(ROOT, ".github/workflows/deploy.yml"), "utf8");
        const up = fs.readFileSync(path.join(ROOT, ".github/workflows/pulumi-up.yml"), "utf8");
        expect(deploy).toContain("timeout-minutes: ${{ fromJSON(needs.limits.outputs.timeout-minutes) }}");
        expect(deploy).toContain("role-duration-seconds: ${{ fromJSON(needs.limits.outputs.role-duration-seconds) }}");
        expect(up).toContain("timeout-minutes: ${{ inputs.timeout-minutes }}");
        expect(up).toContain("role-duration-seconds: ${{ inputs.role-duration-seconds }}");
    });
});
