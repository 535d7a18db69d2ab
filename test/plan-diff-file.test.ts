/**
 * A malformed --diff file is one clear error naming the file and what is
 * wrong (exit code 2), found before the program is evaluated.
 */
import { spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { describe, expect, it } from "vitest";
import { cli, readPlanFile } from "../scripts/plan";
import type { ProgramLoader } from "./harness";
import { ROOT } from "./harness";

const resource = { urn: "urn:a", type: "t", name: "a", parent: "", inputs: {}, protect: false, retainOnDelete: false, customTimeouts: { create: "", update: "", delete: "" } };
const neverEvaluated: ProgramLoader = () => {
    throw new Error("the program must not be evaluated for a bad --diff file");
};

describe("--diff reads only plan files", () => {
    it.each([
        ["not JSON", "{\"resources\": [", /--diff old\.json is not JSON \(.+\); expected a plan written by --json$/],
        ["JSON that is not a plan", "[1, 2]", /--diff old\.json is not a plan written by --json: \(the file\): .*expected object/],
        ["resources not an array", JSON.stringify({ resources: {}, outputs: {} }), /--diff old\.json is not a plan written by --json: resources: .*expected array, received object/],
        ["a resource without a string urn", JSON.stringify({ resources: [{ ...resource, urn: 7 }] }), /resources\[0\]\.urn: .*expected string, received number/],
        ["inputs of the wrong type", JSON.stringify({ resources: [resource, { ...resource, urn: "urn:b", inputs: "x" }] }), /resources\[1\]\.inputs: .*expected record/],
        ["options of the wrong type", JSON.stringify({ resources: [{ ...resource, protect: "yes", customTimeouts: null }] }), /resources\[0\]\.protect: .*expected boolean.*; resources\[0\]\.customTimeouts: .*expected object/],
        ["deployments that are not an object", JSON.stringify({ resources: [], outputs: { deployments: 3 } }), /outputs: deployments must be an object/],
        ["outputs that are not an object", JSON.stringify({ resources: [], outputs: [] }), /outputs: .*expected record/],
    ])("%s: one error naming the file and the problem, exit code 2", async (_, content, message) => {
        const dir = fs.mkdtempSync(path.join(os.tmpdir(), "plan-diff-"));
        fs.writeFileSync(path.join(dir, "old.json"), content);
        const errors: string[] = [];
        const log: string[] = [];
        expect(await cli(["--stack", "dev", "--diff", "old.json"], { log: (l) => log.push(l), error: (l) => errors.push(l), load: neverEvaluated, cwd: dir })).toBe(2);
        expect(errors).toHaveLength(1);
        expect(errors[0]).toMatch(/^plan: --diff old\.json /);
        expect(errors[0]).toMatch(message);
        expect(errors[0]).not.toMatch(/is not a function|Cannot read prop/);
        expect(log).toEqual([]);
    });

    it("a missing file is named too", async () => {
        const errors: string[] = [];
        expect(await cli(["--stack", "dev", "--diff", "nope.json"], { error: (l) => errors.push(l), load: neverEvaluated, cwd: os.tmpdir() })).toBe(2);
        expect(errors).toEqual(["plan: --diff nope.json: cannot read it (ENOENT)"]);
    });

    it("accepts what --json writes, and the empty plan CI uses when the base branch has none", () => {
        const dir = fs.mkdtempSync(path.join(os.tmpdir(), "plan-diff-"));
        const file = path.join(dir, "p.json");
        fs.writeFileSync(file, JSON.stringify({ resources: [], outputs: {} }));
        expect(readPlanFile(file)).toEqual({ resources: [], outputs: {} });
        fs.writeFileSync(file, JSON.stringify({ stack: "prod", resources: [resource], outputs: { deployments: { a: { ref: "r" } }, runners: "[secret]" } }));
        expect(readPlanFile(file).resources).toEqual([resource]);
    });

    it("the command exits 2 with the one-line error on stderr", () => {
        const dir = fs.mkdtempSync(path.join(os.tmpdir(), "plan-diff-"));
        fs.writeFileSync(path.join(dir, "old.json"), JSON.stringify({ resources: "all of them" }));
        const run = spawnSync(path.join(ROOT, "node_modules/.bin/tsx"), [path.join(ROOT, "scripts/plan.ts"), "--stack", "dev", "--diff", "old.json"], {
            cwd: dir,
            encoding: "utf8",
            env: { ...process.env, NODE_OPTIONS: "", npm_lifecycle_event: "" },
        });
        expect(run.status).toBe(2);
        expect(run.stdout).toBe("");
        expect(run.stderr.trim().split("\n")).toEqual([expect.stringMatching(/^plan: --diff old\.json is not a plan written by --json: resources: .*expected array, received string$/)]);
    });
});
