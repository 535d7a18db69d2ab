/**
 * Files the program generates, checked by the real tools that consume them:
 * cloud-init user data with `cloud-init schema`, shell scripts with
 * `shellcheck`, systemd units with `systemd-analyze verify`, buildkitd.toml
 * with a TOML parser, IAM documents against their grammar. CI installs the
 * tools (.ci/run); elsewhere a missing tool skips its test with the reason,
 * and under CI=true a missing tool fails it.
 */
import { spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { parse as parseToml } from "smol-toml";
import { beforeAll, describe, expect, it } from "vitest";
import { parse as parseYaml } from "yaml";
import { BUILDKITD_TOML_PATH } from "../components/runners/buildkitd";
import { iamDocumentProblems } from "../policy/iam-grammar";
import { type Evaluation, ROOT, evaluate, stackFileConfig, runnersStackNames } from "./harness";

const IN_CI = process.env.CI === "true";

function hasTool(tool: string): boolean {
    return spawnSync("sh", ["-c", `command -v ${tool}`]).status === 0;
}

/** Skips (or, in CI, fails) when a tool is missing. */
function needTool(tool: string, skip: (note: string) => void): void {
    if (hasTool(tool)) return;
    if (IN_CI) throw new Error(`${tool} is not installed; .ci/run must install it`);
    skip(`${tool} is not installed here (CI installs it)`);
}

function run(tool: string, args: string[]): { status: number; output: string } {
    const r = spawnSync(tool, args, { encoding: "utf8" });
    return { status: r.status ?? -1, output: `${r.stdout ?? ""}${r.stderr ?? ""}` };
}

interface WriteFile {
    path: string;
    content: string;
    permissions: string;
}
interface CloudConfig {
    write_files: WriteFile[];
}

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "generated-"));

/** Units the generated units depend on that the runner AMI provides, with the command each runs. */
const RUNNER_HOST_UNITS: ReadonlyArray<readonly [string, string]> = [["docker.service", "/usr/bin/dockerd"]];
const runnersStacks = runnersStackNames();

/** Scripts of the repository itself that CI or users run. */
const REPO_SCRIPTS = [".ci/run", "scripts/ci/prepare-builders.sh", "scripts/docker-env.sh", "images/inference-server/build/nvcc-gencode.sh", "images/inference-base/build/torch-from-source.sh", "images/inference-server/build/gpu-check.sh", "tools/build.sh"]
    .filter((f) => fs.existsSync(path.join(ROOT, f)));

describe("repository scripts", () => {
    it.for(REPO_SCRIPTS)("%s passes shellcheck", (file, ctx) => {
        needTool("shellcheck", (note) => ctx.skip(note));
        const r = run("shellcheck", ["-x", path.join(ROOT, file)]);
        expect(r.output).toBe("");
        expect(r.status).toBe(0);
    });
});

describe.each(runnersStacks)("generated files of runners stack %s", (stack) => {
    let ev: Evaluation;
    const userData: Array<{ name: string; text: string; config: CloudConfig }> = [];
    beforeAll(async () => {
        ev = await evaluate(stack);
        for (const lt of ev.ofType("aws:ec2/launchTemplate:LaunchTemplate")) {
            const text = Buffer.from(String(lt.inputs.userData), "base64").toString("utf8");
            userData.push({ name: lt.name, text, config: parseYaml(text) as CloudConfig });
        }
    });

    it("has user data to check", () => {
        const pools = Object.keys((stackFileConfig(stack)["ml-infra:runners"] as { pools?: object } | undefined)?.pools ?? {});
        expect(userData).toHaveLength(pools.length);
    });

    it("user data is valid cloud-config (cloud-init schema)", (ctx) => {
        needTool("cloud-init", (note) => ctx.skip(note));
        for (const u of userData) {
            const file = path.join(tmp, `${stack}-${u.name}.yaml`);
            fs.writeFileSync(file, u.text);
            const r = run("cloud-init", ["schema", "--config-file", file]);
            expect(r.status, `${u.name}: ${r.output}`).toBe(0);
            expect(r.output).toMatch(/Valid (cloud-config|schema)/);
        }
    });

    it("the boot scripts pass shellcheck", (ctx) => {
        needTool("shellcheck", (note) => ctx.skip(note));
        for (const u of userData) {
            const scripts = u.config.write_files.filter((f) => f.content.startsWith("#!/bin/bash") || f.content.startsWith("#!/bin/sh"));
            expect(scripts.length).toBeGreaterThan(0);
            for (const s of scripts) {
                const file = path.join(tmp, `${stack}-${u.name}-${path.basename(s.path)}.sh`);
                fs.writeFileSync(file, s.content);
                const r = run("shellcheck", [file]);
                expect(r.output, `${u.name} ${s.path}`).toBe("");
            }
        }
    });

    it("the systemd units verify (systemd-analyze verify)", (ctx) => {
        needTool("systemd-analyze", (note) => ctx.skip(note));
        for (const u of userData) {
            const units = u.config.write_files.filter((f) => f.path.startsWith("/etc/systemd/system/"));
            expect(units.length).toBeGreaterThan(0);
            // A root with the system's targets and stand-ins for the units' commands.
            const root = fs.mkdtempSync(path.join(tmp, "root-"));
            fs.mkdirSync(path.join(root, "usr/lib/systemd"), { recursive: true });
            fs.cpSync("/usr/lib/systemd/system", path.join(root, "usr/lib/systemd/system"), { recursive: true });
            // Units the runner's AMI has (the boot script installs docker when it is missing) but this host may not.
            for (const [unitName, exec] of RUNNER_HOST_UNITS) {
                const file = path.join(root, "usr/lib/systemd/system", unitName);
                if (fs.existsSync(file)) continue;
                fs.writeFileSync(file, `[Unit]\nDescription=stand-in for the runner AMI's ${unitName}\n\n[Service]\nExecStart=${exec}\n`);
                fs.mkdirSync(path.join(root, path.dirname(exec)), { recursive: true });
                fs.writeFileSync(path.join(root, exec), "#!/bin/sh\n", { mode: 0o755 });
            }
            for (const unit of units) {
                fs.mkdirSync(path.join(root, path.dirname(unit.path)), { recursive: true });
                fs.writeFileSync(path.join(root, unit.path), unit.content);
                for (const m of unit.content.matchAll(/^Exec\w+=[-@+!]*(\/\S+)/gm)) {
                    const stub = path.join(root, m[1]);
                    fs.mkdirSync(path.dirname(stub), { recursive: true });
                    fs.writeFileSync(stub, "#!/bin/sh\n", { mode: 0o755 });
                }
            }
            for (const unit of units) {
                const r = run("systemd-analyze", ["verify", "--man=no", `--root=${root}`, unit.path]);
                expect(r.output, `${u.name} ${unit.path}`).toBe("");
                expect(r.status).toBe(0);
            }
        }
    });

    it("buildkitd.toml parses as TOML", () => {
        for (const u of userData) {
            const toml = u.config.write_files.find((f) => f.path === BUILDKITD_TOML_PATH);
            expect(() => parseToml(String(toml?.content))).not.toThrow();
        }
    });

    it("every IAM document follows the grammar", () => {
        let checked = 0;
        for (const r of ev.resources) {
            if (r.type === "aws:iam/role:Role") {
                expect(iamDocumentProblems(JSON.parse(String(r.inputs.assumeRolePolicy)), "trust"), r.name).toEqual([]);
                checked++;
            }
            if (r.type === "aws:iam/rolePolicy:RolePolicy" || r.type === "aws:iam/policy:Policy") {
                expect(iamDocumentProblems(JSON.parse(String(r.inputs.policy)), "identity"), r.name).toEqual([]);
                checked++;
            }
        }
        expect(checked).toBeGreaterThan(0);
    });
});

describe("the tools do catch mistakes", () => {
    it("shellcheck flags an unquoted variable", (ctx) => {
        needTool("shellcheck", (note) => ctx.skip(note));
        const file = path.join(tmp, "bad.sh");
        fs.writeFileSync(file, '#!/bin/sh\nrm -rf $1/tmp\n');
        expect(run("shellcheck", [file]).status).not.toBe(0);
    });

    it("cloud-init schema flags an unknown module key", (ctx) => {
        needTool("cloud-init", (note) => ctx.skip(note));
        const file = path.join(tmp, "bad.yaml");
        fs.writeFileSync(file, "#cloud-config\nwrite_files:\n  - path: /x\n    permissions: 644\n    contnet: y\n");
        expect(run("cloud-init", ["schema", "--config-file", file]).status).not.toBe(0);
    });

    it("systemd-analyze verify reports a misspelt directive", (ctx) => {
        needTool("systemd-analyze", (note) => ctx.skip(note));
        const file = path.join(tmp, "bad.service");
        fs.writeFileSync(file, "[Service]\nExecStart=/bin/true\nRestrat=always\n");
        expect(run("systemd-analyze", ["verify", "--man=no", file]).output).toMatch(/Unknown key 'Restrat'/);
    });
});
