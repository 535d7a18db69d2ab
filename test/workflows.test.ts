/** The GitHub workflows: valid against the workflow schema, and doing what the review process relies on. */
import { execFileSync } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";
import { parse as parseYaml } from "yaml";
import { describe, expect, it } from "vitest";
import { ROOT } from "./harness";

const DIR = path.join(ROOT, ".github/workflows");
const FILES = fs.readdirSync(DIR).filter((f) => f.endsWith(".yml"));
const VALIDATOR = path.join(ROOT, "node_modules/.bin/action-validator");

interface Step {
    uses?: string;
    run?: string;
    with?: Record<string, unknown>;
    env?: Record<string, string>;
}
interface Job {
    needs?: string | string[];
    uses?: string;
    with?: Record<string, unknown>;
    if?: string;
    environment?: string;
    concurrency?: { group: string; "cancel-in-progress"?: boolean };
    strategy?: { matrix: { stack: string[] } };
    steps?: Step[];
    permissions?: Record<string, string>;
}
interface Workflow {
    on: Record<string, unknown>;
    jobs: Record<string, Job>;
}
const load = (f: string) => parseYaml(fs.readFileSync(path.join(DIR, f), "utf8")) as Workflow;
const text = (f: string) => fs.readFileSync(path.join(DIR, f), "utf8");

describe("GitHub workflows", () => {
    it.each(FILES)("%s is valid for the workflow schema (action-validator)", (file) => {
        expect(() => execFileSync(VALIDATOR, [path.join(DIR, file)], { stdio: "pipe" })).not.toThrow();
    });

    it("the validator does reject a broken workflow", () => {
        const bad = path.join(fs.mkdtempSync("/tmp/wf-"), "bad.yml");
        fs.writeFileSync(bad, "on: push\njobs:\n  x:\n    runs-on: ubuntu-latest\n    stepz: []\n");
        expect(() => execFileSync(VALIDATOR, [bad], { stdio: "pipe" })).toThrow();
    });

    describe("preview.yml (pull requests)", () => {
        const wf = load("preview.yml");
        it("runs npm ci and the README's test command", () => {
            const runs = (wf.jobs.test.steps ?? []).map((s) => s.run);
            expect(runs).toEqual(expect.arrayContaining(["npm ci", "npm test"]));
        });

        it("previews every stack with the policy pack, a diff and a PR comment, through OIDC", () => {
            const job = wf.jobs.preview;
            expect(job.strategy?.matrix.stack).toEqual(["runners", "build", "dev", "staging", "prod"]);
            const pulumi = (job.steps ?? []).find((s) => s.uses?.startsWith("pulumi/actions@"));
            expect(pulumi?.with).toMatchObject({ command: "preview", "comment-on-pr": true, diff: true, policyPacks: "policy" });
            const aws = (job.steps ?? []).find((s) => s.uses?.startsWith("aws-actions/configure-aws-credentials@"));
            expect(aws?.with?.["role-to-assume"]).toBeTruthy();
            expect(aws?.with).not.toHaveProperty("aws-access-key-id");
            expect(job.permissions?.["id-token"]).toBe("write");
            expect(job.if).toContain("github.event.pull_request.head.repo.full_name == github.repository");
        });

        it("plans every stack offline for every PR, forks included, without secrets", () => {
            const job = wf.jobs.plan;
            expect(job.if).toBeUndefined();
            expect(job.strategy?.matrix.stack).toEqual(["runners", "build", "dev", "staging", "prod"]);
            expect(JSON.stringify(job)).not.toMatch(/secrets\.|configure-aws-credentials/);
            const runs = (job.steps ?? []).map((s) => s.run ?? "").join("\n");
            expect(runs).toMatch(/npm run --silent plan -- --stack "\$\{\{ matrix.stack \}\}" --json plan.json --diff base-plan.json/);
            expect(runs).toContain("GITHUB_STEP_SUMMARY");
        });
    });

    describe("deploy.yml (main)", () => {
        const wf = load("deploy.yml");
        const up = load("pulumi-up.yml");

        it("updates runners, then build (after its limits), then dev, staging and prod, prod behind approval: the first-deployment order", () => {
            expect(wf.on).toHaveProperty("push");
            expect(wf.jobs.limits.needs).toBe("test");
            expect(wf.jobs.runners.needs).toBe("limits");
            expect(wf.jobs.build.needs).toEqual(["limits", "runners"]);
            expect(wf.jobs.dev.needs).toBe("build");
            expect(wf.jobs.staging.needs).toBe("dev");
            expect(wf.jobs.prod.needs).toBe("staging");
            expect(wf.jobs.build.with).toMatchObject({ "prepare-builders": true });
            for (const stack of ["runners", "dev", "staging", "prod"]) expect(wf.jobs[stack].with?.["prepare-builders"]).toBeUndefined();
            for (const stack of ["runners", "build", "dev", "staging", "prod"]) {
                expect(wf.jobs[stack].uses).toBe("./.github/workflows/pulumi-up.yml");
                expect(wf.jobs[stack].with?.stack).toBe(stack);
            }
            expect(wf.jobs.prod.with?.environment).toBe("production");
        });

        it("runs `pulumi up` with the policy pack, OIDC credentials and one concurrency group per stack", () => {
            const job = up.jobs.up;
            expect(job.environment).toBe("${{ inputs.environment }}");
            expect(job.concurrency).toEqual({ group: "pulumi-${{ inputs.stack }}", "cancel-in-progress": false });
            const pulumi = (job.steps ?? []).find((s) => s.uses?.startsWith("pulumi/actions@") && s.with?.command);
            expect(pulumi?.with).toMatchObject({ command: "up", policyPacks: "policy" });
            expect(text("pulumi-up.yml")).not.toMatch(/aws-access-key-id|aws-secret-access-key/);
            const steps = job.steps ?? [];
            const prepare = steps.findIndex((s) => (s.run ?? "").startsWith("scripts/ci/prepare-builders.sh"));
            expect(steps[prepare]?.run).toContain("/ml-infra/runners");
            const upStep = steps.findIndex((s) => s.with?.command === "up");
            expect(prepare).toBeGreaterThan(-1);
            expect(prepare).toBeLessThan(upStep);
            expect(fs.existsSync(path.join(ROOT, "scripts/ci/prepare-builders.sh"))).toBe(true);
        });

        it("marks what every environment deploys after its `pulumi up`, so lifecycle rules keep it", () => {
            for (const stack of ["dev", "staging", "prod"]) expect(wf.jobs[stack].with?.["mark-deployed"], stack).toBe(true);
            for (const stack of ["runners", "build"]) expect(wf.jobs[stack].with?.["mark-deployed"], stack).toBeUndefined();
            const steps = up.jobs.up.steps ?? [];
            const mark = steps.findIndex((s) => (s.run ?? "").startsWith("npx tsx scripts/ci/mark-deployed.ts --stack"));
            const upStep = steps.findIndex((s) => s.with?.command === "up");
            expect(mark).toBeGreaterThan(upStep);
            expect((steps[mark] as Step & { if?: string }).if).toBe("inputs.mark-deployed");
        });
    });
});
