/** Invariants that make the program safe to run on production accounts. */
import { beforeAll, describe, expect, it } from "vitest";
import { type Evaluation, buildStackOutputs, evaluate, projectFile, stackFileConfig, stackNames } from "./harness";

const DATA_TYPES = ["aws:ecr/repository:Repository", "aws:cloudwatch/logGroup:LogGroup", "aws:s3/bucket:Bucket", "aws:s3/bucketV2:BucketV2"];

describe.each(stackNames())("stack %s", (stack) => {
    let first: Evaluation;
    let second: Evaluation;
    const config = stackFileConfig(stack);
    const protectData = (config["ml-infra:protectData"] ?? projectFile().config?.protectData?.default ?? true) !== false;

    beforeAll(async () => {
        const built = await buildStackOutputs();
        first = await evaluate(stack, { buildOutputs: built });
        second = await evaluate(stack, { buildOutputs: built });
    });

    it("has no drift: evaluating twice gives identical inputs and options for every resource", () => {
        const snapshot = (ev: Evaluation) => ev.resources.map((r) => JSON.stringify({ urn: r.urn, inputs: r.inputs, protect: r.protect, retain: r.retainOnDelete, timeouts: r.customTimeouts }));
        expect(snapshot(second)).toEqual(snapshot(first));
    });

    it(`${protectData ? "protects and retains" : "does not protect"} every resource that holds data`, () => {
        const data = first.resources.filter((r) => DATA_TYPES.includes(r.type));
        // Every AWS stack holds data (repositories, log groups); the local stack creates nothing on AWS.
        const onAws = first.resources.some((r) => r.type.startsWith("aws:"));
        if (onAws) expect(data.length, "data-holding resources").toBeGreaterThan(0);
        else expect(data).toEqual([]);
        for (const r of data) {
            expect({ name: r.name, protect: r.protect, retainOnDelete: r.retainOnDelete }).toEqual({ name: r.name, protect: protectData, retainOnDelete: protectData });
        }
    });

    it("force-deletes repositories only where data is not protected", () => {
        const repositories = first.ofType("aws:ecr/repository:Repository");
        const buildsOnAws = config["ml-infra:build"] !== undefined && (config["ml-infra:build"] as { localRegistry?: string }).localRegistry === undefined;
        expect(repositories.length > 0, "an AWS build stack has repositories, others none").toBe(buildsOnAws);
        for (const repo of repositories) {
            if (protectData) expect(repo.inputs.forceDelete).not.toBe(true);
        }
    });
});

describe("protection per stack", () => {
    it("protects data everywhere but dev", () => {
        for (const stack of stackNames()) {
            const value = stackFileConfig(stack)["ml-infra:protectData"];
            if (stack === "dev") expect(value).toBe(false);
            else expect(value).not.toBe(false);
        }
    });
});
