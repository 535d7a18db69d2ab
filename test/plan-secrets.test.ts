/**
 * Secrets in the offline plan: `{secure: ...}` config values (what
 * `pulumi config set --secret` writes) are evaluated with a stand-in and seen
 * by the program as secret config; secret resource inputs and secret stack
 * outputs (nested ones too) never reach the printed plan or the JSON file.
 */
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import * as aws from "@pulumi/aws";
import * as pulumi from "@pulumi/pulumi";
import { describe, expect, it } from "vitest";
import { cli, main, redactOutputs } from "../scripts/plan";
import { SECRET_STAND_IN, cliValues } from "../scripts/lib/secure-config";
import { evaluate } from "../scripts/lib/mock-runtime";
import { type ProgramLoader, STACKS_DIR, cliConfig, cliSecretKeys, importProgram } from "./harness";
import { PROJECT, promotedStack, refOf, withSidecarImages } from "./fixtures";

const read = (stack: string) => fs.readFileSync(path.join(STACKS_DIR, `Pulumi.${stack}.yaml`), "utf8");
const tmp = () => fs.mkdtempSync(path.join(os.tmpdir(), "plan-secrets-"));
const CIPHERTEXT = "v1:AAABAGNpcGhlcnRleHQtb2YtYS10b2tlbg==";
const PEM = "-----BEGIN PRIVATE KEY-----\nmock-secret-key\n-----END PRIVATE KEY-----\n";

/** The local stack with its image asking for build secret hf_token, and `secrets` as its buildSecrets value. */
function localWithBuildSecrets(secrets: string): string {
    const text = read("local");
    const withIds = text.replace(/(\n(\s+)context: images\/inference-server\n)/, "$1$2secrets: [hf_token]\n");
    expect(withIds).not.toBe(text);
    return withIds.replace("config:\n", `config:\n  ${PROJECT}:buildSecrets:${secrets}\n`);
}

async function planOf(configText: string, stack: string, load: ProgramLoader = importProgram) {
    const dir = tmp();
    fs.writeFileSync(path.join(dir, `Pulumi.${stack}.yaml`), configText);
    const log: string[] = [];
    const code = await main(["--stack", stack, "--config", `Pulumi.${stack}.yaml`, "--json", "plan.json"], (l) => log.push(l), load, dir);
    const json = fs.readFileSync(path.join(dir, "plan.json"), "utf8");
    return { code, log: log.join("\n"), json, plan: JSON.parse(json) as { resources: Array<{ type: string; inputs: Record<string, unknown> }>; outputs: Record<string, unknown> } };
}

describe("secure config values in the offline plan", () => {
    it.each([
        ["a whole key set with --secret", ` {secure: "${CIPHERTEXT}"}`],
        ["a nested value set with --secret --path", `\n    hf_token:\n      secure: ${CIPHERTEXT}`],
    ])("%s: evaluated with a stand-in, shown as [secret], never the ciphertext", async (_, secrets) => {
        const { code, json, plan } = await planOf(localWithBuildSecrets(secrets), "local");
        expect(code).toBe(0);
        expect(json).not.toContain(CIPHERTEXT);
        // The image that asks for the secret (the server, images/inference-server) gets the stand-in; the others get none.
        const images = plan.resources.filter((r) => r.type === "docker-build:index:Image");
        const asking = images.filter((r) => (r.inputs.context as { location?: string } | undefined)?.location === "images/inference-server");
        expect(asking.length).toBeGreaterThan(0);
        for (const image of asking) expect(image.inputs.secrets).toBe(SECRET_STAND_IN);
        for (const image of images.filter((r) => !asking.includes(r))) expect(image.inputs.secrets).toBeUndefined();
    });

    it("inside a structured value (serve): the value is a stand-in string that passes the schema", async () => {
        const text = promotedStack("staging", withSidecarImages({ images: { inference: { targets: Object.fromEntries(["cpu-avx2", "arm64-neon", "cuda12"].map((t) => [t, { ref: refOf("inference", t) }])) } } })).text.replace(
            "        model:\n",
            `        environment:\n          API_TOKEN:\n            secure: ${CIPHERTEXT}\n        model:\n`,
        );
        const { code, json } = await planOf(text, "staging");
        expect(code).toBe(0);
        expect(json).not.toContain(CIPHERTEXT);
        expect(json).toMatch(/API_TOKEN.{0,20}\[secret\]/);
    });

    it("the keys holding them are the keys the Pulumi CLI marks secret, and the program sees them so", async () => {
        const config = {
            [`${PROJECT}:buildSecrets`]: { secure: CIPHERTEXT },
            [`${PROJECT}:serve`]: { services: [{ environment: { A: { secure: CIPHERTEXT } } }] },
            [`${PROJECT}:build`]: { images: [{ name: "x", secrets: ["b", "a"] }, { name: "y", secrets: ["a"] }] },
            "aws:region": "us-east-1",
        };
        expect(cliSecretKeys(config)).toEqual([`${PROJECT}:buildSecrets`, `${PROJECT}:serve`]);
        const values = cliConfig(config);
        expect(JSON.parse(values[`${PROJECT}:buildSecrets`])).toEqual({ a: "[secret]", b: "[secret]" });
        expect(JSON.parse(values[`${PROJECT}:serve`])).toEqual({ services: [{ environment: { A: "[secret]" } }] });
        expect(values["aws:region"]).toBe("us-east-1");
        expect(cliValues({ [`${PROJECT}:costCenter`]: { secure: CIPHERTEXT } }, PROJECT).values).toEqual({ [`${PROJECT}:costCenter`]: "[secret]" });

        const isConfigSecret = (pulumi.runtime as unknown as { isConfigSecret(key: string): boolean }).isConfigSecret;
        const ev = await evaluate("probe", { config }, async () => ({
            buildSecrets: isConfigSecret(`${PROJECT}:buildSecrets`),
            serve: isConfigSecret(`${PROJECT}:serve`),
            region: isConfigSecret("aws:region"),
        }));
        expect(ev.outputs).toEqual({ buildSecrets: true, serve: true, region: false });
    });
});

describe("secret outputs and inputs in the offline plan", () => {
    /** A program with secrets in every place an output can hold one, and a policy violation about a secret input. */
    const program: ProgramLoader = async () => {
        new aws.vpc.SecurityGroupIngressRule("open", { securityGroupId: "sg-0123456789abcdef0", cidrIpv4: pulumi.secret("0.0.0.0/0"), ipProtocol: "tcp", fromPort: 22, toPort: 22 });
        // A secret nested inside an input: the whole input is a secret.
        new aws.ssm.Parameter("param", { type: "String", value: "public", tags: { team: "ml", token: pulumi.secret("nested-secret-tag-value") } });
        return {
            whole: pulumi.secret({ clientKey: PEM, pool: "amd64" }),
            nested: { clientKey: pulumi.secret(PEM), url: pulumi.output("https://example.internal") },
            list: [pulumi.output("public-value"), pulumi.secret("secret-in-a-list-0123")],
            derived: pulumi.secret("s3cr3t").apply((s) => ({ token: `${s}-derived-value` })),
            plain: "visible",
        };
    };

    it("are [secret] in the printed plan and the JSON file, nested ones included", async () => {
        const { code, log, json, plan } = await planOf("config: {}\n", "custom", program);
        expect(code).toBe(1); // the open ingress rule
        expect(plan.outputs).toEqual({
            whole: "[secret]",
            nested: { clientKey: "[secret]", url: "https://example.internal" },
            list: ["public-value", "[secret]"],
            derived: "[secret]",
            plain: "visible",
        });
        for (const text of [json, log]) {
            expect(text).not.toContain("BEGIN PRIVATE KEY");
            expect(text).not.toContain("mock-secret-key");
            expect(text).not.toContain("secret-in-a-list");
            expect(text).not.toContain("derived-value");
            expect(text).not.toContain("0.0.0.0/0");
            expect(text).not.toContain("nested-secret-tag-value");
        }
        // The policy pack still judged the real value; its message shows it as [secret].
        expect(log).toMatch(/\[no-open-ingress\] .*open to the internet \(\[secret\]\)/);
    });

    it("redactOutputs replaces exactly the secret paths", () => {
        const outputs = { a: { b: "x", c: ["y", "z"] }, d: "e" };
        expect(redactOutputs(outputs, [["a", "c", "1"], ["d"]])).toEqual({ a: { b: "x", c: ["y", "[secret]"] }, d: "[secret]" });
        expect(outputs.d).toBe("e");
    });

    it("cli reports bad input as one line and exit code 2", async () => {
        const errors: string[] = [];
        expect(await cli(["--stack"], { error: (l) => errors.push(l), load: program })).toBe(2);
        expect(errors).toEqual(["plan: --stack needs a value"]);
        errors.length = 0;
        expect(await cli(["--stack", "dev", "--stack", "build"], { error: (l) => errors.push(l), load: program })).toBe(2);
        expect(errors[0]).toMatch(/^plan: --stack is given twice/);
    });

    it("an output file that cannot be written is refused before the evaluation, naming --json", async () => {
        const errors: string[] = [];
        const loaded: string[] = [];
        const counting: ProgramLoader = () => {
            loaded.push("program");
            return program();
        };
        expect(await cli(["--stack", "dev", "--json", "/nonexistent/dir/x.json"], { error: (l) => errors.push(l), load: counting })).toBe(2);
        expect(errors).toEqual(["plan: --json /nonexistent/dir/x.json: no directory /nonexistent/dir to write it in"]);
        expect(loaded).toEqual([]);
    });
});
