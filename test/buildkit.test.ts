/**
 * The pure BuildKit pieces: buildkitd.toml (parsed back with a real TOML
 * parser), cloud-init, systemd units, and the commands CI runs (executed
 * against fake `aws` / `pulumi` binaries).
 */
import { execFileSync, spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import fc from "fast-check";
import { parse as parseToml } from "smol-toml";
import { describe, expect, it } from "vitest";
import { parse as parseYaml } from "yaml";
import { CLOUDWATCH_AGENT_CONFIG_PATH, cloudWatchAgentConfig, MAX_USER_DATA_BYTES, type CloudInitOptions, bootstrapScript, buildkitdUnit, cloudConfig, cloudInit, renderUnit } from "../components/runners/boot";
import { BOOTSTRAP_PATH, BUILDKITD_TOML_PATH, NVIDIA_CDI_SPEC, OS_RESERVE_GIB, TLS_PATHS, type BuildkitdOptions, buildkitImageProblem, buildkitImageRef, buildkitdConfig, pinnedImageRefs, gcPolicies, registryMirrors, renderBuildkitdToml } from "../components/runners/buildkitd";
import { MULTIARCH_BUILDER, builderName, buildxCreateCommands, certInstallCommands, multiNodeBuilderCommands, scaleUpCommand, waitHealthyCommand } from "../components/runners/ci";
import { type TomlTable, toToml } from "../components/runners/toml";
import { poolPlatform } from "../components/shared/hardware";
import { MIN_VOLUME_GIB } from "../components/runners/schema";
import { POOLS, type Pool } from "../components/shared/hardware";

const HOST = "123456789012.dkr.ecr.us-east-1.amazonaws.com";
const BUILDKIT_DIGEST = "sha256:ddd1ca44b21eda906e81ab14a3d467fa6c39cd73b9a39df1196210edcb8db59e";
const GIB = 1024 ** 3;

function options(pool: Pool, overrides: Partial<BuildkitdOptions> = {}): BuildkitdOptions {
    return {
        pool,
        port: 1234,
        volumeGiB: 200,
        maxParallelism: 6,
        registryHost: HOST,
        pullThroughPrefixes: ["docker-hub", "ecr-public", "github", "quay"],
        ...overrides,
    };
}

function initOptions(pool: Pool, overrides: Partial<CloudInitOptions> = {}): CloudInitOptions {
    return {
        ...options(pool),
        region: "us-east-1",
        image: `${HOST}/docker-hub/moby/buildkit:v0.23.2@${BUILDKIT_DIGEST}`,
        serverKeyParameter: `/ml-infra/build/buildkit/runners-${pool}/server-key`,
        caCertPem: "-----BEGIN CERTIFICATE-----\nCA\n-----END CERTIFICATE-----\n",
        serverCertPem: "-----BEGIN CERTIFICATE-----\nSERVER\n-----END CERTIFICATE-----\n",
        logGroupName: `/ml-infra/build/buildkit/runners-${pool}`,
        ...overrides,
    };
}

interface ParsedBuildkitd {
    "insecure-entitlements"?: string[];
    grpc: { address: string[]; tls: { cert: string; key: string; ca: string } };
    cdi: { disabled: boolean; specDirs?: string[]; autoAllowed?: string[] };
    worker: {
        oci: {
            platforms: string[];
            "max-parallelism": number;
            networkMode: string;
            gc: boolean;
            maxUsedSpace: number;
            minFreeSpace: number;
            gcpolicy: Array<{ maxUsedSpace?: number; all?: boolean }>;
        };
        containerd: { enabled: boolean };
    };
    registry: Record<string, { mirrors: string[] }>;
}

const parseBuildkitd = (text: string) => parseToml(text) as unknown as ParsedBuildkitd;

describe("toToml", () => {
    it("writes quoted keys, sub-tables and arrays of tables that a TOML parser reads back", () => {
        const table: TomlTable = {
            root: "/var/lib/buildkit",
            n: 9663676416,
            registry: { "docker.io": { mirrors: ["host/docker-hub"] } },
            worker: { oci: { gc: true, gcpolicy: [{ all: true, keepDuration: "48h" }, { filters: ["a==b"] }] } },
        };
        expect(parseToml(toToml(table))).toEqual(table);
    });

    it("round-trips any table it accepts (property)", () => {
        const key = fc.oneof(fc.stringMatching(/^[A-Za-z0-9_-]{1,8}$/), fc.constantFrom("docker.io", "a b", 'q"uote', "ü", "x.y.z"));
        const text = fc.string({ unit: fc.constantFrom("a", "Z", " ", '"', "\\", "\n", "\t", "\u0000", "\u007f", "é", "日", "😀"), maxLength: 12 });
        const scalar = fc.oneof(text, fc.integer({ min: -(2 ** 40), max: 2 ** 40 }), fc.boolean(), fc.array(text, { maxLength: 3 }));
        const { table } = fc.letrec((tie) => ({
            table: fc.dictionary(
                key,
                fc.oneof(
                    { depthSize: "small", withCrossShrink: true },
                    scalar,
                    tie("table"),
                    fc.array(tie("table"), { minLength: 1, maxLength: 2 }),
                ),
                { maxKeys: 4 },
            ),
        }));
        fc.assert(
            fc.property(table, (t) => {
                expect(parseToml(toToml(t as TomlTable))).toEqual(t);
            }),
            { numRuns: 300 },
        );
    });

    it("refuses what it cannot write exactly", () => {
        expect(() => toToml({ x: 1.5 })).toThrow(/safe integer/);
        expect(() => toToml({ x: "\ud800" })).toThrow(/well-formed/);
    });
});

describe("buildkitd.toml", () => {
    it.each(POOLS)("parses, names the TLS files, listens on TCP with mTLS and mirrors base images (%s)", (pool) => {
        const parsed = parseBuildkitd(renderBuildkitdToml(options(pool)));
        expect(parsed.grpc.tls).toEqual({ cert: TLS_PATHS.cert, key: TLS_PATHS.key, ca: TLS_PATHS.ca });
        expect(parsed.grpc.address).toContain("tcp://0.0.0.0:1234");
        expect(parsed.registry["docker.io"].mirrors).toEqual([`${HOST}/docker-hub`]);
        expect(parsed.registry["public.ecr.aws"].mirrors).toEqual([`${HOST}/ecr-public`]);
        expect(parsed.registry["quay.io"].mirrors).toEqual([`${HOST}/quay`]);
        expect(parsed.registry["ghcr.io"].mirrors).toEqual([`${HOST}/github`]);
        expect(parsed.worker.oci["max-parallelism"]).toBe(6);
        expect(parsed.worker.containerd.enabled).toBe(false);
    });

    it("builds only the pool's native platform (no emulation)", () => {
        expect(parseBuildkitd(renderBuildkitdToml(options("arm64"))).worker.oci.platforms).toEqual(["linux/arm64"]);
        expect(parseBuildkitd(renderBuildkitdToml(options("amd64"))).worker.oci.platforms).toEqual(["linux/amd64"]);
        expect(parseBuildkitd(renderBuildkitdToml(options("gpu"))).worker.oci.platforms).toEqual(["linux/amd64"]);
    });

    it("runs build steps in their own network namespace (IMDS hop limit 1 then keeps them off instance credentials)", () => {
        for (const pool of POOLS) expect(buildkitdConfig(options(pool)).worker.oci.networkMode).toBe("bridge");
    });

    it("enables CDI on the gpu pool only, auto-allowing NVIDIA GPUs for RUN --device (no client entitlement needed)", () => {
        const gpu = parseBuildkitd(renderBuildkitdToml(options("gpu")));
        expect(gpu.cdi.disabled).toBe(false);
        expect(gpu.cdi.specDirs).toContain(path.dirname(NVIDIA_CDI_SPEC));
        expect(gpu.cdi.autoAllowed).toEqual(["nvidia.com/gpu"]);
        expect(gpu["insecure-entitlements"]).toBeUndefined();
        for (const pool of ["amd64", "arm64"] as const) {
            const cpu = parseBuildkitd(renderBuildkitdToml(options(pool)));
            expect(cpu.cdi.disabled).toBe(true);
            expect(cpu.cdi.autoAllowed).toBeUndefined();
        }
    });

    it("mirrors only upstreams that have a pull-through rule", () => {
        const parsed = parseBuildkitd(renderBuildkitdToml(options("amd64", { pullThroughPrefixes: ["ecr-public"] })));
        expect(Object.keys(parsed.registry)).toEqual(["public.ecr.aws"]);
        expect(() => registryMirrors(HOST, ["docker"])).toThrow(/unknown pull-through prefix "docker"/);
    });

    it("bounds BuildKit's disk use below the volume, leaving the OS its share (property over volume sizes)", () => {
        fc.assert(
            fc.property(fc.constantFrom(...POOLS), fc.integer({ min: 40, max: 16384 }), (pool, volumeGiB) => {
                fc.pre(volumeGiB >= MIN_VOLUME_GIB[pool]);
                const { worker, policies } = gcPolicies(pool, volumeGiB);
                expect(worker.maxUsedSpace).toBeGreaterThan(0);
                expect(worker.maxUsedSpace + OS_RESERVE_GIB[pool] * GIB).toBeLessThan(volumeGiB * GIB);
                for (const p of policies) expect(p.maxUsedSpace ?? 0).toBeLessThanOrEqual(worker.maxUsedSpace);
                expect(policies.at(-1)?.all).toBe(true);
            }),
        );
    });

    it("derives the GC budget from the volume: a bigger volume keeps more cache", () => {
        const small = parseBuildkitd(renderBuildkitdToml(options("amd64", { volumeGiB: 100 }))).worker.oci.maxUsedSpace;
        const large = parseBuildkitd(renderBuildkitdToml(options("amd64", { volumeGiB: 400 }))).worker.oci.maxUsedSpace;
        expect(small).toBe(64 * GIB); // (100 - 20) * 0.8
        expect(large).toBe(304 * GIB); // (400 - 20) * 0.8
    });
});

describe("buildkit image", () => {
    const pinned = `docker.io/moby/buildkit:v0.23.2@${BUILDKIT_DIGEST}`;

    it("is pulled through the cache, and refused when its upstream has no rule", () => {
        expect(buildkitImageRef(pinned, HOST, ["docker-hub"])).toBe(`${HOST}/docker-hub/moby/buildkit:v0.23.2@${BUILDKIT_DIGEST}`);
        expect(buildkitImageProblem(pinned, ["ecr-public"])).toMatch(/needs the "docker-hub" pull-through rule/);
        expect(buildkitImageProblem(`${HOST}/tools/buildkit:v0.23.2@${BUILDKIT_DIGEST}`, [])).toBeUndefined();
        expect(buildkitImageProblem(`registry.example.com/buildkit:v1@${BUILDKIT_DIGEST}`, ["docker-hub"])).toMatch(/cannot reach/);
    });

    it("is refused as a mutable tag, or pinned without its tag", () => {
        expect(buildkitImageProblem("docker.io/moby/buildkit:v0.23.2", ["docker-hub"])).toMatch(/is a mutable tag: .*pin it as repo:tag@sha256:<64 hex digits>.*docker buildx imagetools inspect docker\.io\/moby\/buildkit:v0\.23\.2/);
        expect(buildkitImageProblem("docker.io/moby/buildkit:latest", ["docker-hub"])).toMatch(/mutable tag/);
        expect(buildkitImageProblem(`docker.io/moby/buildkit@${BUILDKIT_DIGEST}`, ["docker-hub"])).toMatch(/must be repo:tag@sha256:.*containers-roadmap#2837/);
        expect(() => buildkitImageRef("docker.io/moby/buildkit:v0.23.2", HOST, ["docker-hub"])).toThrow(/mutable tag/);
        expect(pinnedImageRefs(`${HOST}:443/x/buildkit:v1@${BUILDKIT_DIGEST}`)).toEqual({ byTag: `${HOST}:443/x/buildkit:v1`, byDigest: `${HOST}:443/x/buildkit@${BUILDKIT_DIGEST}` });
        expect(pinnedImageRefs(`${HOST}:443/x/buildkit@${BUILDKIT_DIGEST}`)).toBeUndefined();
    });
});

describe("systemd units", () => {
    it("runs buildkitd with the generated config and restarts it", () => {
        const text = renderUnit(buildkitdUnit("amd64"));
        expect(text).toContain(`ExecStart=/usr/local/bin/buildkitd --config ${BUILDKITD_TOML_PATH}\n`);
        expect(text).toContain("Restart=always\n");
        expect(text).toContain("[Install]\nWantedBy=multi-user.target\n");
        expect(text.indexOf("[Unit]")).toBeLessThan(text.indexOf("[Service]"));
    });
});

describe("cloud-init", () => {
    it.each(POOLS)("is a cloud-config that writes the config, certificates, units and bootstrap, then runs it (%s)", (pool) => {
        const text = cloudInit(initOptions(pool));
        expect(text.startsWith("#cloud-config\n")).toBe(true);
        const doc = parseYaml(text) as { write_files: Array<{ path: string; content: string; permissions: string }>; runcmd: string[][] };
        const byPath = Object.fromEntries(doc.write_files.map((f) => [f.path, f]));
        expect(Object.keys(byPath).sort()).toEqual(
            [
                BUILDKITD_TOML_PATH,
                TLS_PATHS.ca,
                TLS_PATHS.cert,
                "/etc/systemd/system/buildkitd.service",
                "/etc/systemd/system/buildkitd-logs.service",
                BOOTSTRAP_PATH,
                CLOUDWATCH_AGENT_CONFIG_PATH,
            ].sort(),
        );
        expect(JSON.parse(byPath[CLOUDWATCH_AGENT_CONFIG_PATH].content)).toEqual(cloudWatchAgentConfig());
        expect(byPath[BOOTSTRAP_PATH].content).toContain(`amazon-cloudwatch-agent-ctl -a fetch-config -m ec2 -s -c file:${CLOUDWATCH_AGENT_CONFIG_PATH}`);
        expect(parseBuildkitd(byPath[BUILDKITD_TOML_PATH].content).grpc.tls.key).toBe(TLS_PATHS.key);
        expect(byPath[TLS_PATHS.cert].content).toContain("SERVER");
        expect(byPath[BOOTSTRAP_PATH].permissions).toBe("0755");
        expect(doc.runcmd).toEqual([[BOOTSTRAP_PATH]]);
    });

    it("carries no private key: the server key comes from SSM at boot, into a file only root can read", () => {
        const text = cloudInit(initOptions("amd64"));
        expect(text).not.toMatch(/PRIVATE KEY/);
        const script = bootstrapScript({ ...initOptions("amd64"), pool: "amd64" });
        expect(script).toContain(`(umask 077; aws ssm get-parameter --name '/ml-infra/build/buildkit/runners-amd64/server-key' --with-decryption`);
        expect(script).toContain(`> ${TLS_PATHS.key})`);
    });

    it("installs buildkitd from the image pulled through ECR, with no emulators", () => {
        const script = bootstrapScript({ ...initOptions("arm64"), pool: "arm64" });
        // The tag through the cache first (a first pull by digest fails there), then exactly the digest, which is what runs.
        expect(script).toContain(`TAGGED='${HOST}/docker-hub/moby/buildkit:v0.23.2'`);
        expect(script).toContain(`IMAGE='${HOST}/docker-hub/moby/buildkit@${BUILDKIT_DIGEST}'`);
        expect(script.indexOf('docker pull "$TAGGED"')).toBeLessThan(script.indexOf('docker pull "$IMAGE"'));
        expect(script).toMatch(/if \[ "\$pulled" != yes \]; then\n.*\n {2}exit 1\nfi\ncid=\$\(docker create "\$IMAGE"\)/);
        expect(script).not.toMatch(/docker (create|run)[^\n]*\$TAGGED/);
        expect(script).toContain("docker cp \"$cid:/usr/bin/$bin\"");
        expect(script).not.toContain("qemu");
        expect(script).toContain("systemctl enable --now buildkitd.service buildkitd-logs.service");
    });

    it("generates the NVIDIA CDI spec on the gpu pool only", () => {
        expect(bootstrapScript({ ...initOptions("gpu"), pool: "gpu" })).toContain(`nvidia-ctk cdi generate --output=${NVIDIA_CDI_SPEC}`);
        expect(bootstrapScript({ ...initOptions("amd64"), pool: "amd64" })).not.toContain("nvidia-ctk");
    });

    it.each(POOLS)("bootstrap script is valid bash (%s)", (pool) => {
        const file = path.join(fs.mkdtempSync(path.join(os.tmpdir(), "bk-")), "bootstrap.sh");
        fs.writeFileSync(file, bootstrapScript({ ...initOptions(pool), pool }));
        expect(spawnSync("bash", ["-n", file]).status).toBe(0);
    });

    it("lists files in a fixed order and refuses user data EC2 would reject", () => {
        const paths = cloudConfig(initOptions("gpu")).write_files.map((f) => f.path);
        expect(paths).toEqual([...paths].sort());
        expect(cloudInit(initOptions("gpu"))).toBe(cloudInit(initOptions("gpu")));
        expect(() => cloudInit(initOptions("gpu", { caCertPem: "x".repeat(MAX_USER_DATA_BYTES) }))).toThrow(/at most 16384/);
    });
});

describe("CI commands", () => {
    const node = (pool: Pool) => ({ pool, endpoint: `tcp://${pool}-nlb.elb.us-east-1.amazonaws.com:1234`, serverName: `${pool}-nlb.elb.us-east-1.amazonaws.com` });

    it("names builders after their pool, and the multi-node builder ml-multiarch", () => {
        expect(POOLS.map(builderName)).toEqual(["ml-amd64", "ml-arm64", "ml-gpu"]);
        expect(MULTIARCH_BUILDER).toBe("ml-multiarch");
        expect(POOLS.map(poolPlatform)).toEqual(["linux/amd64", "linux/arm64", "linux/amd64"]);
    });

    it("creates a remote builder with the exported certificates and the load balancer as TLS server name", () => {
        expect(buildxCreateCommands(node("arm64"))).toEqual([
            "docker buildx rm ml-arm64 >/dev/null 2>&1 || true",
            'docker buildx create --name ml-arm64 --driver remote --platform linux/arm64 --driver-opt "cacert=$HOME/.ml-infra/buildkit/arm64/ca.pem,cert=$HOME/.ml-infra/buildkit/arm64/cert.pem,key=$HOME/.ml-infra/buildkit/arm64/key.pem,servername=arm64-nlb.elb.us-east-1.amazonaws.com" tcp://arm64-nlb.elb.us-east-1.amazonaws.com:1234',
        ]);
    });

    it("creates one multi-node builder: an amd64 node, then an arm64 node appended", () => {
        const commands = multiNodeBuilderCommands([node("amd64"), node("arm64")]);
        expect(commands).toHaveLength(3);
        expect(commands[1]).toMatch(/^docker buildx create --name ml-multiarch --node ml-multiarch-amd64 --driver remote --platform linux\/amd64 .* tcp:\/\/amd64-nlb\.\S+:1234$/);
        expect(commands[2]).toMatch(/^docker buildx create --name ml-multiarch --append --node ml-multiarch-arm64 --driver remote --platform linux\/arm64 .* tcp:\/\/arm64-nlb\.\S+:1234$/);
        expect(() => multiNodeBuilderCommands([node("amd64"), node("gpu")])).toThrow(/different platforms/);
        expect(() => multiNodeBuilderCommands([node("amd64")])).toThrow(/at least two/);
    });

    /** A directory of fake binaries put first on PATH; each logs its arguments. */
    function fakeBin(scripts: Record<string, string>): { env: NodeJS.ProcessEnv; log: string } {
        const dir = fs.mkdtempSync(path.join(os.tmpdir(), "fakebin-"));
        const log = path.join(dir, "calls.log");
        for (const [name, body] of Object.entries(scripts)) {
            fs.writeFileSync(path.join(dir, name), `#!/bin/sh\necho "${name} $*" >> "${log}"\n${body}\n`, { mode: 0o755 });
        }
        return { env: { ...process.env, PATH: `${dir}:${process.env.PATH}`, HOME: dir }, log };
    }
    const calls = (log: string) => (fs.existsSync(log) ? fs.readFileSync(log, "utf8") : "");

    it("scale-up raises an empty pool to one instance", () => {
        const { env, log } = fakeBin({ aws: `case "$2" in describe-auto-scaling-groups) echo 0;; esac` });
        execFileSync("sh", ["-c", scaleUpCommand({ region: "us-east-1", autoScalingGroupName: "ml-infra-build-runners-amd64" })], { env });
        expect(calls(log)).toContain("aws autoscaling set-desired-capacity --region us-east-1 --auto-scaling-group-name ml-infra-build-runners-amd64 --desired-capacity 1");
    });

    it("scale-up never lowers a busy pool (another job's build keeps its machine)", () => {
        const { env, log } = fakeBin({ aws: `case "$2" in describe-auto-scaling-groups) echo 2;; esac` });
        execFileSync("sh", ["-c", scaleUpCommand({ region: "us-east-1", autoScalingGroupName: "g" })], { env });
        expect(calls(log)).not.toContain("set-desired-capacity");
    });

    it("wait returns once the target group has a healthy target", () => {
        const { env, log } = fakeBin({ aws: "echo 1", sleep: "exit 0" });
        const result = spawnSync("sh", ["-c", waitHealthyCommand({ region: "us-east-1", targetGroupArn: "arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/tg/1" })], { env });
        expect(result.status).toBe(0);
        expect(calls(log)).toContain("aws elbv2 describe-target-health --region us-east-1 --target-group-arn arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/tg/1");
    });

    it("wait fails with a message when no target becomes healthy in time", () => {
        // `date` jumps an hour per call, so the deadline passes on the first check.
        const { env } = fakeBin({ aws: "echo 0", sleep: "exit 0", date: `f="$(dirname "$0")/t"; n=$(cat "$f" 2>/dev/null || echo 0); echo $((n + 3600)) > "$f"; echo $n` });
        const result = spawnSync("sh", ["-c", waitHealthyCommand({ region: "us-east-1", targetGroupArn: "tg", timeoutSeconds: 60 })], { env });
        expect(result.status).toBe(1);
        expect(result.stderr.toString()).toContain("no healthy buildkitd target after 60s");
    });

    const hasJq = spawnSync("jq", ["--version"]).status === 0;
    it.skipIf(!hasJq)("cert install writes the pool's CA, certificate and key from the stack output (key readable by owner only)", () => {
        // The fake CLI answers as Pulumi does: the secret output only with --show-secrets, else "[secret]".
        const plain = JSON.stringify({ gpu: { caCert: "CA-PEM" } });
        const secret = JSON.stringify({ gpu: { clientCert: "CERT-PEM", clientKey: "KEY-PEM" } });
        const { env } = fakeBin({
            pulumi: `case "$*" in *runnerCredentials*) case "$*" in *--show-secrets*) echo '${secret}';; *) echo '"[secret]"';; esac;; *" runners"*) echo '${plain}';; *) exit 1;; esac`,
        });
        for (const command of certInstallCommands({ pool: "gpu", stack: "acme/ml-infra/runners" })) execFileSync("sh", ["-c", command], { env });
        const dir = path.join(String(env.HOME), ".ml-infra/buildkit/gpu");
        expect(fs.readFileSync(path.join(dir, "ca.pem"), "utf8").trim()).toBe("CA-PEM");
        expect(fs.readFileSync(path.join(dir, "cert.pem"), "utf8").trim()).toBe("CERT-PEM");
        expect(fs.readFileSync(path.join(dir, "key.pem"), "utf8").trim()).toBe("KEY-PEM");
        expect(fs.statSync(path.join(dir, "key.pem")).mode & 0o077).toBe(0);
    });
});
