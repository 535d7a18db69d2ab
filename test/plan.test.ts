/** The offline plan (npm run plan) on every stack. */
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { describe, expect, it } from "vitest";
import { diffPlans, main, plan, renderDiff, renderTree, renderViolations, stableJson } from "../scripts/plan";
import { promote } from "../scripts/promote";
import { ROOT, STACKS_DIR, importProgram, stackNames } from "./harness";
import { PROJECT } from "./fixtures";

describe.each(stackNames())("offline plan of %s", (stack) => {
    it("passes the policy pack, prints a tree with counts, is deterministic, and writes no secret to --json", async () => {
        const dir = fs.mkdtempSync(path.join(os.tmpdir(), "plan-json-"));
        const log: string[] = [];
        expect(await main(["--stack", stack, "--json", "plan.json"], (l) => log.push(l), importProgram, dir)).toBe(0);
        const written = fs.readFileSync(path.join(dir, "plan.json"), "utf8");
        const tree = log[0];
        expect(tree.split("\n")[0]).toMatch(new RegExp(`^stack ${stack}: \\d+ resources$`));
        expect(tree).toMatch(/count {2}type\n/);
        expect(log).toContain("policy pack: no violations");
        const second = await plan(stack, undefined, importProgram);
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

describe("plan diff", () => {
    it("shows exactly which services change digest in a promotion", async () => {
        const before = await plan("prod", undefined, importProgram);
        const read = (s: string) => fs.readFileSync(path.join(STACKS_DIR, `Pulumi.${s}.yaml`), "utf8");
        const promoted = promote({ kind: "stack", name: "staging", text: read("staging") }, read("prod"), PROJECT);
        const file = path.join(fs.mkdtempSync(path.join(os.tmpdir(), "plan-")), "Pulumi.prod.yaml");
        fs.writeFileSync(file, promoted.text);
        const after = await plan("prod", file, importProgram);
        const diff = diffPlans(JSON.parse(stableJson(before)), after);
        expect(diff.digests.map((d) => d.service)).toEqual(promoted.changes.map((c) => c.service).sort());
        for (const d of diff.digests) expect(d.to).toBe(promoted.changes.find((c) => c.service === d.service)?.to);
        expect(renderDiff(diff)).toMatch(new RegExp(`deployed digests: ${promoted.changes.length} service\\(s\\) change`));
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
        const p = await plan("violating", file, importProgram);
        expect(p.violations.length).toBeGreaterThan(0);
        expect(new Set(p.violations.map((v) => v.policy))).toEqual(new Set(["no-open-ingress"]));
        for (const v of p.violations) expect(v.message).toMatch(/open to the internet \(0\.0\.0\.0\/1|128\.0\.0\.0\/1/);
        expect(renderViolations(p.violations)).toMatch(/^policy pack: \d+ mandatory violation\(s\)\n {2}\[no-open-ingress\] urn:pulumi:violating::ml-infra::/);
        const log: string[] = [];
        expect(await main(["--stack", "violating", "--config", file], (line) => log.push(line), importProgram)).toBe(1);
        expect(log.join("\n")).toContain("mandatory violation");
    });
});
