/** Secrets stay Pulumi secrets: never build args, never plain outputs, never in an error message. */
import { beforeAll, describe, expect, it } from "vitest";
import { type Evaluation, awsBuildStackNames, configProblems, evaluate } from "./harness";
import { PROJECT, validBuild } from "./fixtures";

const TOKEN = "hf_s3cr3t-token-value";

function withSecrets(images: Record<string, unknown>[]) {
    return {
        [`${PROJECT}:buildSecrets`]: { hf_token: TOKEN, pip_index: "pip-pass" },
        [`${PROJECT}:build`]: { ...validBuild(), images },
    };
}

describe("build secrets", () => {
    let ev: Evaluation;
    beforeAll(async () => {
        ev = await evaluate("build", {
            config: withSecrets([
                { name: "inference", context: "images/inference-server", targets: ["cpu-avx2"], secrets: ["hf_token"] },
                { name: "plain", context: "images/inference-server", targets: ["cpu-avx2"] },
            ]),
            // As `pulumi config set --secret` leaves them (plain build secrets are refused).
            secretKeys: [`${PROJECT}:buildSecrets`],
        });
    });

    it("reach the build only as BuildKit secrets, marked secret, and only where asked for", () => {
        const image = ev.ofType("docker-build:index:Image").find((i) => i.name === "inference-cpu-avx2-image");
        expect(image?.inputs.secrets).toEqual({ hf_token: TOKEN });
        expect(image?.secretInputs).toContain("secrets");
        const plain = ev.ofType("docker-build:index:Image").find((i) => i.name === "plain-cpu-avx2-image");
        expect(plain?.inputs.secrets).toBeUndefined();
    });

    it("never appear in build args, other inputs or outputs", () => {
        for (const r of ev.resources) {
            const { secrets: _secrets, ...rest } = r.inputs;
            expect(JSON.stringify(rest), r.name).not.toContain(TOKEN);
        }
        expect(JSON.stringify(ev.outputs)).not.toContain(TOKEN);
        expect(JSON.stringify(ev.outputs)).not.toContain("pip-pass");
    });
});

describe("secret config is never echoed", () => {
    const problems = (config: Record<string, unknown>) => configProblems(config);

    it("names a bad secret's key but not its value", () => {
        const out = problems({ [`${PROJECT}:buildSecrets`]: { "Bad-Id": TOKEN }, [`${PROJECT}:build`]: validBuild() });
        expect(out.join("\n")).toMatch(/ml-infra:buildSecrets.Bad-Id = \[secret\]/);
        expect(out.join("\n")).not.toContain(TOKEN);
    });

    it("refuses an image asking for an undefined secret, listing the ids (not values) that exist", () => {
        const out = problems(withSecrets([{ name: "inference", context: "images/inference-server", targets: ["cpu-avx2"], secrets: ["gh_token"] }]));
        expect(out).toEqual([expect.stringMatching(/images\[0\].secrets\[0\] = "gh_token": unknown build secret; .*\(defined: hf_token, pip_index\)/)]);
        expect(out.join("\n")).not.toContain(TOKEN);
    });

    it.each(["HF_TOKEN", "PIP_PASSWORD", "AWS_SECRET_ACCESS_KEY", "OPENAI_API_KEY"])("refuses a build arg named like a credential (%s)", (arg) => {
        const out = problems({ [`${PROJECT}:build`]: { ...validBuild(), images: [{ name: "x", context: "images/inference-server", targets: ["cpu-avx2"], buildArgs: { [arg]: "v" } }] } });
        expect(out.join("\n")).toMatch(new RegExp(`buildArgs.${arg} = \\[redacted\\]: is named like a secret: build args stay in the image history: pass it as a build secret`));
    });
});

describe.each(awsBuildStackNames())("secrets of build stack %s", (stack) => {
    it("exports runner client keys and certificates only inside a secret output", async () => {
        const ev = await evaluate(stack);
        if (ev.outputs.runners !== undefined) expect(ev.secretOutputs).toContain("runners");
        expect(ev.secretOutputs).not.toContain("images");
        for (const key of ev.ofType("tls:index/privateKey:PrivateKey")) expect(key.inputs).not.toHaveProperty("privateKeyPem");
        for (const image of ev.ofType("docker-build:index:Image")) expect(image.secretInputs).toContain("registries");
    });
});
