/**
 * The offline plan of a stack that follows a build stack reads that build
 * stack's own file (serve.buildStack's last segment) or a given outputs file,
 * and no other stack file; it runs from any working directory.
 */
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { callerCwd } from "../scripts/lib/cli-paths";
import { main, plan } from "../scripts/plan";
import { stackReferencesOf } from "../scripts/lib/mock-runtime";
import { STACKS_DIR, importProgram } from "./harness";
import { CATALOG } from "../components/shared/hardware";
import { PROJECT, digestOf, withSidecarImages } from "./fixtures";

const read = (stack: string) => fs.readFileSync(path.join(STACKS_DIR, `Pulumi.${stack}.yaml`), "utf8");
const tmp = (prefix: string) => fs.mkdtempSync(path.join(os.tmpdir(), prefix));
const REGISTRY = "123456789012.dkr.ecr.us-east-1.amazonaws.com";
const digest = (c: string) => digestOf(c);

/** A small build stack (the images dev deploys, nothing else) with this repository prefix. */
const BASES = [...new Set(["cpu-avx2", "arm64-neon", "cuda12"].flatMap((t) => [CATALOG[t].baseImage, CATALOG[t].runtimeBaseImage ?? CATALOG[t].baseImage]))];
/** The sidecar images dev runs (model-fetch: model-sync), each a multi-arch index. */
const SIDECAR_IMAGES = ["model-sync", "metrics-exporter", "log-router"]
    .map((name) => `      - name: ${name}\n        context: images/inference-server\n        targets: [cpu-avx2, arm64-neon]\n        multiArch: {amd64: cpu-avx2, arm64: arm64-neon}\n`)
    .join("");
const buildStack = (prefix: string) =>
    `config:\n  aws:region: us-east-1\n  ${PROJECT}:build:\n    repositoryPrefix: ${prefix}\n    builder: ci-builder\n    allowedBaseImages: ${JSON.stringify(BASES)}\n    images:\n      - name: inference\n        context: images/inference-server\n        targets: [cpu-avx2, arm64-neon, cuda12]\n${SIDECAR_IMAGES}`;

/** dev, following `buildStack`. */
const devFollowing = (buildStack: string) => read("dev").replace(`${PROJECT}:serve:\n`, `${PROJECT}:serve:\n    buildStack: ${buildStack}\n`);

/** The deployed refs of a plan, by service. */
const deployed = (outputs: unknown) =>
    Object.fromEntries(Object.entries((outputs as { deployments: Record<string, { ref: string }> }).deployments).map(([s, d]) => [s, d.ref]));

describe("a stack that follows a build stack", () => {
    it("is planned against serve.buildStack's own stack file; other stack files (even broken ones) are not read", async () => {
        const dir = tmp("plan-stacks-");
        // Alphabetically first: a broken file, then a valid build stack that is not the one dev follows.
        fs.writeFileSync(path.join(dir, "Pulumi.aaa.yaml"), "config: [this is not: valid yaml\n");
        fs.writeFileSync(path.join(dir, "Pulumi.build.yaml"), buildStack("ml"));
        fs.writeFileSync(path.join(dir, "Pulumi.zbuild.yaml"), buildStack("zz"));
        fs.writeFileSync(path.join(dir, "Pulumi.dev.yaml"), devFollowing(`organization/${PROJECT}/zbuild`));
        const p = await plan("dev", undefined, importProgram, { stacksDir: dir });
        const refs = Object.values(deployed(p.outputs));
        expect(refs.length).toBeGreaterThan(0);
        for (const ref of refs) expect(ref).toMatch(new RegExp(`^${REGISTRY}/zz/inference@sha256:[a-f0-9]{64}$`));
    });

    it.each([["../../etc/passwd"], ["org/proj/stack/extra"], ["org/.."], ["x".repeat(101)]])("a serve.buildStack that is not a stack name (%s) is one config error naming the key, not a missing stack file", async (name) => {
        const dir = tmp("plan-badref-");
        fs.writeFileSync(path.join(dir, "Pulumi.dev.yaml"), devFollowing(JSON.stringify(name)));
        const error = await plan("dev", undefined, importProgram, { stacksDir: dir }).then(() => undefined, (e: unknown) => e as Error);
        expect(error?.message).toMatch(/Invalid stack configuration:\n {2}- ml-infra:serve\.buildStack = ".{1,80}: must be a stack name: \[org\/\]\[project\/\]stack/);
        expect(error?.message.split("\n").filter((l) => l.includes("serve.buildStack"))).toHaveLength(1);
        expect(error?.message).not.toMatch(/no stack file/);
    });

    it("or against --build-outputs (the JSON of `pulumi stack output --json`), with paths relative to where it runs", async () => {
        const cwd = tmp("plan-cwd-");
        const targets = { "cpu-avx2": "a", "arm64-neon": "b", cuda12: "c" };
        const images = { inference: { targets: Object.fromEntries(Object.entries(targets).map(([t, c]) => [t, { ref: `${REGISTRY}/ml/inference@${digest(c)}` }])) } };
        fs.writeFileSync(path.join(cwd, "outputs.json"), JSON.stringify({ ...withSidecarImages({ images }), runners: "[secret]" }));
        // Following a build stack whose file does not exist: only the outputs file can satisfy it.
        fs.writeFileSync(path.join(cwd, "Pulumi.dev.yaml"), devFollowing("organization/ml-infra/nowhere"));
        const log: string[] = [];
        const code = await main(["--stack", "dev", "--config", "Pulumi.dev.yaml", "--build-outputs", "outputs.json", "--json", "plan.json"], (l) => log.push(l), importProgram, cwd);
        expect(code).toBe(0);
        const written = JSON.parse(fs.readFileSync(path.join(cwd, "plan.json"), "utf8")) as { outputs: unknown };
        expect(deployed(written.outputs)).toEqual({
            "classifier-cpu": `${REGISTRY}/ml/inference@${digest("a")}`,
            "classifier-arm": `${REGISTRY}/ml/inference@${digest("b")}`,
            "classifier-gpu": `${REGISTRY}/ml/inference@${digest("c")}`,
        });
    });

    it("names the file in every error about a stack file, and never falls back to another build stack", async () => {
        const dir = tmp("plan-errors-");
        fs.writeFileSync(path.join(dir, "Pulumi.build.yaml"), "config:\n  ml-infra:build: {version: [\n");
        fs.writeFileSync(path.join(dir, "Pulumi.other.yaml"), buildStack("ml"));
        fs.writeFileSync(path.join(dir, "Pulumi.dev.yaml"), devFollowing("organization/ml-infra/build"));
        await expect(plan("dev", undefined, importProgram, { stacksDir: dir })).rejects.toThrow(/Pulumi\.build\.yaml is not valid YAML/);

        fs.writeFileSync(path.join(dir, "Pulumi.dev.yaml"), devFollowing("organization/ml-infra/gone"));
        await expect(plan("dev", undefined, importProgram, { stacksDir: dir })).rejects.toThrow(/Pulumi\.dev\.yaml\): serve\.buildStack organization\/ml-infra\/gone of stack dev: no stack file .*Pulumi\.gone\.yaml .*--build-outputs/);

        fs.writeFileSync(path.join(dir, "Pulumi.dev.yaml"), devFollowing("organization/other-project/build"));
        await expect(plan("dev", undefined, importProgram, { stacksDir: dir })).rejects.toThrow(/is a stack of project other-project, not ml-infra/);

        fs.writeFileSync(path.join(dir, "Pulumi.dev.yaml"), devFollowing("other"));
        fs.writeFileSync(path.join(dir, "Pulumi.other.yaml"), read("prod"));
        await expect(plan("dev", undefined, importProgram, { stacksDir: dir })).rejects.toThrow(/Pulumi\.dev\.yaml\): .*Pulumi\.other\.yaml \(serve\.buildStack of stack dev\) has no ml-infra:build section/);

        fs.writeFileSync(path.join(dir, "Pulumi.dev.yaml"), "config:\n  - a list\n");
        await expect(plan("dev", undefined, importProgram, { stacksDir: dir })).rejects.toThrow(/Pulumi\.dev\.yaml: config is not a mapping/);
        await expect(plan("missing", undefined, importProgram, { stacksDir: dir })).rejects.toThrow(/Pulumi\.missing\.yaml: no such stack file/);
        await expect(plan("../dev", undefined, importProgram, { stacksDir: dir })).rejects.toThrow(/--stack "\.\.\/dev" is not a stack name/);
    });

    it("reads the stack names a config references ([org/][project/]stack, defaults <organization>/<project>/build and .../runners)", () => {
        const serve = (buildStack?: string) => ({ [`${PROJECT}:serve`]: { buildStack, services: [{ name: "a" }] } });
        expect(stackReferencesOf(serve("build")).map((r) => r.stack)).toEqual(["build"]);
        expect(stackReferencesOf(serve("org/build2")).map((r) => r.stack)).toEqual(["build2"]);
        expect(stackReferencesOf(serve(`org/${PROJECT}/b`)).map((r) => r.stack)).toEqual(["b"]);
        expect(stackReferencesOf(serve()).map((r) => r.reference)).toEqual([`organization/${PROJECT}/build`]);
        expect(stackReferencesOf({ [`${PROJECT}:build`]: {} }, "acme").map((r) => r.reference)).toEqual([`acme/${PROJECT}/runners`]);
        expect(stackReferencesOf({ [`${PROJECT}:build`]: { builder: "mine" } })).toEqual([]);
    });
});

describe("the plan runs from any working directory", () => {
    const start = process.cwd();
    afterEach(() => process.chdir(start));

    it("evaluates the program in the project root (build contexts resolve) and writes --json where it was run", async () => {
        const cwd = tmp("plan-anywhere-");
        process.chdir(cwd);
        const log: string[] = [];
        // The local stack builds from images/inference-server (relative to the project root).
        // No cwd argument: relative paths are relative to the process's working directory.
        expect(await main(["--stack", "local", "--json", "out.json"], (l) => log.push(l), importProgram)).toBe(0);
        expect(process.cwd()).toBe(fs.realpathSync(cwd));
        expect(log[0].split("\n")[0]).toMatch(/^stack local: \d+ resources$/);
        const written = JSON.parse(fs.readFileSync(path.join(cwd, "out.json"), "utf8")) as { resources: Array<{ type: string }> };
        expect(written.resources.some((r) => r.type === "docker-build:index:Image")).toBe(true);
    });

    it("takes the caller's directory from npm (INIT_CWD) only when run as that very npm script", () => {
        const dir = tmp("plan-caller-");
        expect(callerCwd("plan", { INIT_CWD: dir, npm_lifecycle_event: "plan" })).toBe(dir);
        expect(callerCwd("promote", { INIT_CWD: dir, npm_lifecycle_event: "promote" })).toBe(dir);
        expect(callerCwd("plan", { INIT_CWD: dir, npm_lifecycle_event: "test" })).toBe(process.cwd());
        expect(callerCwd("plan", {})).toBe(process.cwd());
    });
});
