/**
 * @pulumi/awsguard inside our pack (policy/awsguard.ts): every AWSGuard policy
 * is enforced or disabled with a reason, the enforced ones fire on @pulumi/aws
 * v7 resources, the adapter behaves like the policy SDK, and the v4 copy of
 * @pulumi/aws that AWSGuard brings stays AWSGuard's.
 */
import { spawn, spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";
import type { ResourceValidationPolicy } from "@pulumi/policy";
import { describe, expect, it } from "vitest";
import { PLAIN_HTTP_TAG } from "../components/serve/listener";
import { AWSGUARD_DISABLED, AWSGUARD_ENFORCED, AWSGUARD_POLICIES, V7_TYPES, appliesTo, awsGuardPoliciesOf, wrapAwsGuardPolicy } from "../policy/awsguard";
import { policyPackArgs } from "../policy/pack";
import { type PolicyResource, RESOURCE_POLICIES } from "../policy/policies";
import { ROOT } from "./harness";

const AREAS = ["apiGateway", "compute", "database", "elasticsearch", "network", "security", "storage"] as const;
const AWSGUARD_DIR = path.dirname(require.resolve("@pulumi/awsguard/package.json"));

/** Every policy the package defines, by name (each area module, as AWSGuard's index loads them). */
function allAwsGuardPolicies(): Map<string, ResourceValidationPolicy | { name: string; validateStack: unknown }> {
    const out = new Map<string, ResourceValidationPolicy | { name: string; validateStack: unknown }>();
    for (const area of AREAS) {
        const module = require(`@pulumi/awsguard/${area}`) as Record<string, unknown>;
        for (const [name, p] of awsGuardPoliciesOf(module)) out.set(name, p);
        // Stack policies (validateStack) are not resource policies; list them too.
        for (const v of Object.values(module)) {
            if (typeof v === "object" && v !== null && "validateStack" in v && "name" in v && typeof v.name === "string") out.set(v.name, { name: v.name, validateStack: v.validateStack });
        }
    }
    return out;
}

let n = 0;
const res = (type: string, props: Record<string, unknown>): PolicyResource => ({ type, name: `r${++n}`, urn: `urn:${type}::r${n}`, props });
const typeOf = (v: unknown): string | undefined => (v === undefined || v === null ? undefined : (v as { __pulumiType?: string }).__pulumiType);

describe("@pulumi/awsguard in the pack", () => {
    it("loads the package's seven areas (an upgrade with another area must be decided on)", () => {
        const index = fs.readFileSync(path.join(AWSGUARD_DIR, "index.js"), "utf8");
        const required = [...index.matchAll(/require\("\.\/([A-Za-z]+)"\)/g)].map((m) => m[1]).filter((m) => m !== "awsGuard");
        expect(required.sort()).toEqual([...AREAS].sort());
    });

    it("enforces or disables every AWSGuard policy, each with a one-line reason, never both", () => {
        const all = [...allAwsGuardPolicies().keys()].sort();
        expect(all).toHaveLength(26);
        const enforced = Object.keys(AWSGUARD_ENFORCED);
        const disabled = Object.keys(AWSGUARD_DISABLED);
        expect([...enforced, ...disabled].sort()).toEqual(all);
        expect(enforced.filter((name) => disabled.includes(name))).toEqual([]);
        for (const reason of [...Object.values(AWSGUARD_DISABLED), ...Object.values(AWSGUARD_ENFORCED).map((e) => e.why)]) {
            expect(reason).not.toMatch(/\n/);
            expect(reason.length).toBeGreaterThan(20);
        }
    });

    it("runs exactly the enforced ones, as mandatory resource policies of ours", () => {
        const names = RESOURCE_POLICIES.map((p) => p.name);
        for (const name of Object.keys(AWSGUARD_ENFORCED)) expect(names).toContain(name);
        for (const name of Object.keys(AWSGUARD_DISABLED)) expect(names).not.toContain(name);
        expect(AWSGUARD_POLICIES.map((p) => p.name).sort()).toEqual(Object.keys(AWSGUARD_ENFORCED).sort());
        const pack = policyPackArgs();
        for (const name of Object.keys(AWSGUARD_ENFORCED)) expect(pack.policies.find((p) => p.name === name)?.enforcementLevel).toBe("mandatory");
    });

    it("maps every v4 type token an enforced policy selects to a resource type @pulumi/aws v7 has", () => {
        const all = allAwsGuardPolicies();
        const v7Types = (token: string) => {
            const [, module, cls] = /^aws:([^/]+)\/[^:]+:(.+)$/.exec(token) ?? [];
            const v7 = require("@pulumi/aws") as Record<string, Record<string, unknown> | undefined>;
            return typeOf(v7[module]?.[cls]);
        };
        for (const name of Object.keys(AWSGUARD_ENFORCED)) {
            const p = all.get(name) as ResourceValidationPolicy;
            const validations = [p.validateResource ?? []].flat();
            expect(validations.length, name).toBeGreaterThan(0);
            for (const validate of validations) {
                const v4 = typeOf(validate) ?? "";
                const targets = [v4, ...(V7_TYPES[v4] ?? [])].filter((t) => v7Types(t) === t);
                expect(targets.length, `${name}: ${v4} has no v7 resource type`).toBeGreaterThan(0);
            }
        }
    });

    it("needs the mapping for the load balancers: AWSGuard selects v4 tokens v7 resources do not have", () => {
        const network = require("@pulumi/awsguard/network") as Record<string, ResourceValidationPolicy>;
        const validate = network.albHttpToHttpsRedirection.validateResource;
        expect(typeOf(validate)).toBe("aws:elasticloadbalancingv2/listener:Listener");
        const aws = require("@pulumi/aws") as { lb: { Listener: unknown }; alb: { Listener: unknown } };
        expect([typeOf(aws.lb.Listener), typeOf(aws.alb.Listener)]).toEqual(["aws:lb/listener:Listener", "aws:alb/listener:Listener"]);
        expect(appliesTo("aws:elasticloadbalancingv2/listener:Listener", "aws:lb/listener:Listener")).toBe(true);
        expect(appliesTo("aws:elasticloadbalancingv2/listener:Listener", "aws:lb/targetGroup:TargetGroup")).toBe(false);
        expect(appliesTo("aws:ec2/instance:Instance", "aws:ec2/instance:Instance")).toBe(true);
    });

    it("exempts only listeners whose stack chose plain HTTP from the HTTP-to-HTTPS redirection", () => {
        const check = RESOURCE_POLICIES.find((p) => p.name === "alb-http-to-https-redirection")?.check ?? (() => []);
        const http = (tags: Record<string, string>) => res("aws:lb/listener:Listener", { port: 80, protocol: "HTTP", defaultActions: [{ type: "forward", targetGroupArn: "tg" }], tags });
        expect(check(http({ [PLAIN_HTTP_TAG]: "true" }))).toEqual([]);
        expect(check(http({}))).toEqual(["Default action for HTTP listener must be a redirect using HTTPS."]);
    });

    it("wraps a policy the way the policy SDK runs it: its config defaults, not-applicable, unknown values, and no asynchronous validation", () => {
        const compute = require("@pulumi/awsguard/compute") as Record<string, ResourceValidationPolicy>;
        // encrypted-volumes has an optional kmsId (no default): without it, any key will do.
        const volumes = wrapAwsGuardPolicy(compute.encryptedVolumes, { why: "test" });
        expect(volumes.check(res("aws:ec2/instance:Instance", { rootBlockDevice: { encrypted: true, kmsKeyId: "k" } }))).toEqual([]);
        // ec2-volume-inuse: checkDeletion defaults to true.
        const inUse = wrapAwsGuardPolicy(compute.ec2VolumeInUse, { why: "test" });
        expect(inUse.check(res("aws:ec2/instance:Instance", { ebsBlockDevices: [{ volumeId: "v", deleteOnTermination: false }] }))).toEqual([
            "ECS instance's EBS volume (v) must be marked for termination on delete.",
        ]);
        // Another type: not applicable, nothing reported.
        expect(volumes.check(res("aws:ec2/launchTemplate:LaunchTemplate", {}))).toEqual([]);

        class UnknownValueError extends Error {}
        const unknown = new Proxy({} as Record<string, unknown>, {
            get: () => {
                throw new UnknownValueError("unknown");
            },
        });
        expect(volumes.check(res("aws:ec2/instance:Instance", unknown))).toEqual([]);

        const validate = Object.assign(async () => undefined, { __pulumiType: "aws:ec2/instance:Instance" });
        const asynchronous = wrapAwsGuardPolicy({ name: "async", description: "d", validateResource: validate }, { why: "test" });
        expect(() => asynchronous.check(res("aws:ec2/instance:Instance", {}))).toThrow(/asynchronous/);
        const notApplicable = Object.assign(
            (args: { notApplicable: (reason?: string) => never }) => args.notApplicable("not for this one"),
            { __pulumiType: "aws:ec2/instance:Instance" },
        );
        expect(wrapAwsGuardPolicy({ name: "na", description: "d", validateResource: notApplicable }, { why: "test" }).check(res("aws:ec2/instance:Instance", {}))).toEqual([]);
    });

    it("reports through the Pulumi policy pack like our own policies", async () => {
        const p = policyPackArgs().policies.find((x) => x.name === "alb-http-to-https-redirection") as ResourceValidationPolicy;
        const reported: string[] = [];
        const listener = res("aws:lb/listener:Listener", { port: 80, protocol: "HTTP", defaultActions: [{ type: "forward" }] });
        const validate = p.validateResource;
        if (typeof validate !== "function") throw new Error("expected one validation");
        await validate({ ...listener } as unknown as Parameters<typeof validate>[0], (m) => reported.push(m));
        expect(reported).toEqual(["Default action for HTTP listener must be a redirect using HTTPS."]);
    });
});

describe("the copy of @pulumi/aws AWSGuard brings", () => {
    const version = (dir: string) => (JSON.parse(fs.readFileSync(path.join(dir, "package.json"), "utf8")) as { version: string }).version;

    it("is AWSGuard's own (v4, nested); the program resolves v7", () => {
        const ours = path.dirname(require.resolve("@pulumi/aws/package.json", { paths: [ROOT] }));
        const theirs = path.dirname(require.resolve("@pulumi/aws/package.json", { paths: [AWSGUARD_DIR] }));
        expect(ours).toBe(path.join(ROOT, "node_modules/@pulumi/aws"));
        expect(version(ours)).toMatch(/^7\./);
        expect(theirs).toBe(path.join(AWSGUARD_DIR, "node_modules/@pulumi/aws"));
        expect(version(theirs)).toMatch(/^v?4\./);
        // One policy SDK for both (one pack server per process).
        expect(require.resolve("@pulumi/policy", { paths: [AWSGUARD_DIR] })).toBe(require.resolve("@pulumi/policy", { paths: [ROOT] }));
    });
});

describe("the pack the engine runs (policy/index.ts)", () => {
    it("loads with AWSGuard's policies in it and serves, once, printing its port", async () => {
        const child = spawn(path.join(ROOT, "node_modules/.bin/tsx"), ["index.ts"], { cwd: path.join(ROOT, "policy"), stdio: ["ignore", "pipe", "pipe"] });
        let stdout = "";
        let stderr = "";
        try {
            const port = await new Promise<string>((resolve, reject) => {
                const timer = setTimeout(() => reject(new Error(`no port after 60 s; stderr: ${stderr}`)), 60_000);
                child.stdout.on("data", (d: Buffer) => {
                    stdout += d.toString();
                    const m = /^(\d+)\s*$/m.exec(stdout);
                    if (m) {
                        clearTimeout(timer);
                        resolve(m[1]);
                    }
                });
                child.stderr.on("data", (d: Buffer) => (stderr += d.toString()));
                child.on("exit", (code) => {
                    clearTimeout(timer);
                    reject(new Error(`the pack exited (${code}): ${stderr}`));
                });
            });
            expect(Number(port)).toBeGreaterThan(0);
            expect(stderr).toBe("");
        } finally {
            child.kill();
        }
    }, 90_000);
});

describe("AwsGuard, AWSGuard's own PolicyPack class", () => {
    it("cannot be constructed beside our pack: the policy SDK serves one pack per process and exits", () => {
        const script = [
            'const { PolicyPack } = require("@pulumi/policy");',
            'new PolicyPack("ml-infra", { policies: [] });',
            'const { AwsGuard } = require("@pulumi/awsguard");',
            'new AwsGuard({ all: "mandatory" });',
            'console.log("two packs served");',
        ].join("\n");
        const run = spawnSync(process.execPath, ["-e", script], { cwd: path.join(ROOT, "policy"), encoding: "utf8", timeout: 60_000, env: { ...process.env, NODE_PATH: path.join(ROOT, "node_modules") } });
        expect(run.status).toBe(1);
        expect(run.stderr).toContain("Already serving policy pack 'ml-infra'. Only one policy pack may be defined per-process.");
        expect(run.stdout).not.toContain("two packs served");
    }, 90_000);
});
