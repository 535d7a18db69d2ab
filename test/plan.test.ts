/** The offline plan (npm run plan) on every stack. */
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { describe, expect, it } from "vitest";
import { parse as parseYaml } from "yaml";
import { cli, diffPlans, main, plan, renderDiff, renderTree, renderViolations, stableJson } from "../scripts/plan";
import { promote } from "../scripts/promote";
import { PLAIN_HTTP_TAG } from "../components/serve/listener";
import { runPolicies } from "../policy/policies";
import { ROOT, STACKS_DIR, configProblems, importProgram, requiresPinned, stackFileConfig, stackNames } from "./harness";
import { PROJECT, digestOf, promotedStack } from "./fixtures";

/** The build stack's plan outputs as `--build-outputs` reads them (what `pulumi stack output --json -s build` gives). */
let buildOutputsFile: Promise<string> | undefined;
function buildOutputs(): Promise<string> {
    buildOutputsFile ??= plan("build", undefined, importProgram).then((p) => {
        const file = path.join(fs.mkdtempSync(path.join(os.tmpdir(), "build-outputs-")), "build-outputs.json");
        fs.writeFileSync(file, JSON.stringify(p.outputs));
        return file;
    });
    return buildOutputsFile;
}

/** A pinned-only stack (staging, prod) is planned as promotion from the build stack's outputs would leave it. */
const pinnedOnly = (stack: string) => requiresPinned(stackFileConfig(stack));

describe.each(stackNames())("offline plan of %s", (stack) => {
    it("passes the policy pack, prints a tree with counts, is deterministic, and writes no secret to --json", async () => {
        const dir = fs.mkdtempSync(path.join(os.tmpdir(), "plan-json-"));
        const log: string[] = [];
        const outputs = pinnedOnly(stack) ? ["--build-outputs", await buildOutputs()] : [];
        expect(await main(["--stack", stack, "--json", "plan.json", ...outputs], (l) => log.push(l), importProgram, dir)).toBe(0);
        const written = fs.readFileSync(path.join(dir, "plan.json"), "utf8");
        const tree = log.find((l) => l.startsWith(`stack ${stack}: `)) ?? "";
        expect(tree.split("\n")[0]).toMatch(new RegExp(`^stack ${stack}: \\d+ resources$`));
        expect(tree).toMatch(/count {2}type\n/);
        expect(log).toContain("policy pack: no violations");
        const second = await plan(stack, undefined, importProgram, pinnedOnly(stack) ? { buildOutputs: JSON.parse(fs.readFileSync(await buildOutputs(), "utf8")) as Record<string, unknown> } : {});
        expect(second.violations).toEqual([]);
        expect(renderTree(second)).toBe(tree);
        expect(written).toBe(`${stableJson({ stack: second.stack, resources: second.resources, outputs: second.outputs })}\n`);
        // Secrets: registry passwords (inputs) and runner client keys (the `runners` output).
        for (const text of [written, log.join("\n")]) {
            expect(text).not.toContain("mock-ecr-password");
            expect(text).not.toContain("PRIVATE KEY");
            expect(text).not.toMatch(/mock-runners-\w+-client-key/);
        }
    });
});

describe("a pinned-only stack", () => {
    it.each(["staging", "prod"])("%s is planned with --build-outputs as promotion would leave it, and says so; its file is not written", async (stack) => {
        const file = path.join(STACKS_DIR, `Pulumi.${stack}.yaml`);
        const before = fs.readFileSync(file, "utf8");
        const log: string[] = [];
        const outputsFile = await buildOutputs();
        expect(await main(["--stack", stack, "--build-outputs", outputsFile], (l) => log.push(l), importProgram)).toBe(0);
        expect(log[0]).toMatch(new RegExp(`^planned as promoted: \\d+ value\\(s\\) as \`npm run promote -- --from-outputs ${outputsFile.replace(/[.*+?^${}()|[\]\\/]/g, "\\$&")} --to ${stack}\` would write them \\(in memory; stacks/Pulumi\\.${stack}\\.yaml is not written\\)\n {2}classifier-cpu: ref \\(followed the build stack\\) -> `));
        expect(log[0]).toMatch(/\n {2}serve\.sidecarImages\.model-sync: \(not set\) -> 123456789012\.dkr\.ecr\.us-east-1\.amazonaws\.com\/ml\/model-sync@sha256:[a-f0-9]{64}/);
        expect(fs.readFileSync(file, "utf8")).toBe(before);
        // Every image it would run is one the build stack built, in the mock registry.
        const p = await plan(stack, undefined, importProgram, { buildOutputs: JSON.parse(fs.readFileSync(outputsFile, "utf8")) as Record<string, unknown> });
        const images = Object.values((p.outputs as { deployments: Record<string, { images: Array<{ ref: string }> }> }).deployments).flatMap((d) => d.images.map((i) => i.ref));
        expect(images.length).toBeGreaterThan(0);
        for (const ref of images) expect(ref).toMatch(/^123456789012\.dkr\.ecr\.us-east-1\.amazonaws\.com\/ml\/[a-z0-9-]+@sha256:[a-f0-9]{64}$/);
    });

    it("without --build-outputs fails with one config error per value it lacks, each saying to promote first", async () => {
        const errors: string[] = [];
        expect(await cli(["--stack", "staging"], { log: () => undefined, error: (l) => errors.push(l), load: importProgram })).toBe(2);
        const problems = errors.join("\n").split("\n  - ").slice(1);
        expect(problems.map((p) => p.split(" = ")[0]).sort()).toEqual(
            ["services[0].ref", "services[1].ref", "services[2].ref", "sidecarImages.log-router", "sidecarImages.metrics-exporter", "sidecarImages.model-sync"].map((k) => `ml-infra:serve.${k}`),
        );
        for (const p of problems) expect(p).toMatch(/= \(missing\): .*promotion writes it: npm run promote -- --from-outputs build-outputs\.json --to <this stack>/);
    });
});

describe("plan diff", () => {
    it("shows exactly which services change digest in a promotion", async () => {
        const outputs = JSON.parse(fs.readFileSync(await buildOutputs(), "utf8")) as Record<string, unknown>;
        const before = await plan("prod", undefined, importProgram, { buildOutputs: outputs });
        // A later build: new digests for the GPU and Arm servers; staging has them, prod is promoted from staging.
        const images = structuredClone(outputs.images) as Record<string, { targets: Record<string, { ref: string }> }>;
        images.inference.targets.cuda12.ref = `${images.inference.targets.cuda12.ref.split("@")[0]}@${digestOf("later-gpu")}`;
        images.inference.targets["arm64-neon"].ref = `${images.inference.targets["arm64-neon"].ref.split("@")[0]}@${digestOf("later-arm")}`;
        const staging = promotedStack("staging", { ...outputs, images }).text;
        const prod = promotedStack("prod", outputs).text;
        const promoted = promote({ kind: "stack", name: "staging", text: staging }, prod, PROJECT);
        const file = path.join(fs.mkdtempSync(path.join(os.tmpdir(), "plan-")), "Pulumi.prod.yaml");
        fs.writeFileSync(file, promoted.text);
        const after = await plan("prod", file, importProgram);
        const diff = diffPlans(JSON.parse(stableJson(before)), after);
        expect(diff.digests.map((d) => d.service)).toEqual(["classifier-arm", "classifier-gpu"]);
        expect(promoted.changes.map((c) => c.service).sort()).toEqual(["classifier-arm", "classifier-gpu"]);
        for (const d of diff.digests) expect(d.to).toBe(promoted.changes.find((c) => c.service === d.service)?.to);
        expect(renderDiff(diff)).toMatch(/deployed digests: 2 service\(s\) change/);
    });

    it("lists added, removed and changed resources", () => {
        const r = (urn: string, inputs: object) => ({ urn, type: "t", name: urn, parent: "", inputs, protect: false, retainOnDelete: false, customTimeouts: { create: "", update: "", delete: "" } });
        const diff = diffPlans({ resources: [r("a", { x: 1 }), r("b", { y: 1 })], outputs: {} }, { resources: [r("a", { x: 2 }), r("c", {})], outputs: {} });
        expect(diff).toMatchObject({ added: ["c"], removed: ["b"], changed: [{ urn: "a", keys: ["x"] }], digests: [] });
    });
});

describe("a stack built to violate a policy", () => {
    const file = path.join(ROOT, "test/fixtures/Pulumi.violating.yaml");

    it("passes the config check but fails the plan with the policy, the resource and a non-zero exit", async () => {
        // The config accepts it: a well-formed certificate ARN of this region (the stack's account is known only when the program runs).
        expect(configProblems((parseYaml(fs.readFileSync(file, "utf8")) as { config: Record<string, unknown> }).config, "violating")).toEqual([]);
        const p = await plan("violating", file, importProgram);
        expect(p.violations.map((v) => [v.policy, v.resource])).toEqual([["lb-listeners-https", "urn:pulumi:violating::ml-infra::ml-infra:serve:InferenceService$aws:lb/listener:Listener::classifier-listener"]]);
        expect(p.violations[0].message).toMatch(/uses certificate arn:aws:acm:us-east-1:210987654321:certificate\/\S+ of account 210987654321 in us-east-1, but its load balancer is in account 123456789012 in us-east-1/);
        expect(renderViolations(p.violations)).toMatch(/^policy pack: 1 mandatory violation\(s\)\n {2}\[lb-listeners-https\] urn:pulumi:violating::ml-infra::/);
        const log: string[] = [];
        expect(await main(["--stack", "violating", "--config", file], (line) => log.push(line), importProgram)).toBe(1);
        expect(log.join("\n")).toContain("mandatory violation");
    });
});

describe("the pack (AWSGuard included) on the shipped stacks' own resources", () => {
    const listeners = (p: { resources: ReadonlyArray<{ type: string; name: string; urn: string; inputs: unknown }> }) =>
        p.resources.filter((r) => r.type === "aws:lb/listener:Listener").map((r) => ({ type: r.type, name: r.name, urn: r.urn, props: r.inputs as Record<string, unknown> }));

    it("dev serves plain HTTP because its stack says so; the same listeners unmarked fail ours and AWSGuard's", async () => {
        const dev = listeners(await plan("dev", undefined, importProgram));
        expect(dev).toHaveLength(3);
        for (const l of dev) expect(l.props).toMatchObject({ protocol: "HTTP", port: 80, tags: expect.objectContaining({ [PLAIN_HTTP_TAG]: "true" }) });
        expect(runPolicies(dev)).toEqual([]);
        const unmarked = dev.map((l) => ({ ...l, props: { ...l.props, tags: {} } }));
        expect(new Set(runPolicies(unmarked).map((v) => v.policy))).toEqual(new Set(["lb-listeners-https", "alb-http-to-https-redirection"]));
    });

    it("prod serves HTTPS with its certificate and a current TLS policy; a legacy policy there fails", async () => {
        const outputs = JSON.parse(fs.readFileSync(await buildOutputs(), "utf8")) as Record<string, unknown>;
        const prod = listeners(await plan("prod", undefined, importProgram, { buildOutputs: outputs }));
        expect(prod).toHaveLength(3);
        for (const l of prod) {
            expect(l.props).toMatchObject({ protocol: "HTTPS", port: 443, sslPolicy: "ELBSecurityPolicy-TLS13-1-2-2021-06" });
            expect(l.props.certificateArn).toMatch(/^arn:aws:acm:us-east-1:123456789012:certificate\/[0-9a-f-]{36}$/);
        }
        expect(runPolicies(prod)).toEqual([]);
        const legacy = prod.map((l) => ({ ...l, props: { ...l.props, sslPolicy: "ELBSecurityPolicy-2016-08" } }));
        expect(runPolicies(legacy).map((v) => v.policy)).toEqual(["lb-listeners-https", "lb-listeners-https", "lb-listeners-https"]);
    });
});
