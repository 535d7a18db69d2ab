import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { parse as parseYaml } from "yaml";
import { describe, expect, it } from "vitest";
import { main, promote } from "../scripts/promote";
import { ROOT, STACKS_DIR, evaluate } from "./harness";
import { DIGEST_B, PROJECT } from "./fixtures";

const read = (stack: string) => fs.readFileSync(path.join(STACKS_DIR, `Pulumi.${stack}.yaml`), "utf8");
type Service = { name: string; image: string; target: string; ref?: string };
const services = (text: string) =>
    ((parseYaml(text) as { config: Record<string, { services: Service[] }> }).config[`${PROJECT}:serve`]).services;

/** Lines that differ between two texts of the same length in lines. */
function changedLines(before: string, after: string): Array<[string, string]> {
    const a = before.split("\n");
    const b = after.split("\n");
    expect(b.length).toBe(a.length);
    return a.flatMap((line, i) => (line === b[i] ? [] : [[line, b[i]] as [string, string]]));
}

describe("npm run promote", () => {
    it("copies staging's digests into prod, changing exactly the ref lines that differ", () => {
        const staging = read("staging");
        const prod = read("prod");
        const result = promote({ kind: "stack", name: "staging", text: staging }, prod, PROJECT);

        const stagingRefs = Object.fromEntries(services(staging).map((s) => [s.name, s.ref]));
        const differing = services(prod).filter((s) => s.ref !== stagingRefs[s.name]).map((s) => s.name);
        expect(differing.length).toBeGreaterThan(0);
        expect(result.changes.map((c) => c.service)).toEqual(differing);
        for (const s of services(result.text)) expect(s.ref).toBe(stagingRefs[s.name]);

        const lines = changedLines(prod, result.text);
        expect(lines).toHaveLength(differing.length);
        for (const [before, after] of lines) {
            expect(before.trim()).toMatch(/^ref: \S+@sha256:[a-f0-9]{64}$/);
            expect(after.trim()).toMatch(/^ref: \S+@sha256:[a-f0-9]{64}$/);
        }
        // Comments and everything else survive.
        expect(result.text).toContain("# prod deploys exactly what staging verified.");
    });

    it("is idempotent", () => {
        const source = { kind: "stack", name: "staging", text: read("staging") } as const;
        const once = promote(source, read("prod"), PROJECT);
        const twice = promote(source, once.text, PROJECT);
        expect(twice.changes).toEqual([]);
        expect(twice.text).toBe(once.text);
    });

    it("promotes the build stack's outputs into staging", async () => {
        const built = await evaluate("build");
        const result = promote({ kind: "outputs", name: "build", outputs: built.outputs }, read("staging"), PROJECT);
        const images = built.outputs.images as Record<string, { targets: Record<string, { ref: string }> }>;
        for (const s of services(result.text)) expect(s.ref).toBe(images[s.image].targets[s.target].ref);
        expect(changedLines(read("staging"), result.text).length).toBe(result.changes.length);
    });

    it("refuses to copy between services that deploy different images or targets", () => {
        const staging = read("staging").replace("target: cuda12", "target: cpu-avx512");
        expect(() => promote({ kind: "stack", name: "staging", text: staging }, read("prod"), PROJECT)).toThrow(
            /classifier-gpu deploys inference\/cpu-avx512 in staging but inference\/cuda12/,
        );
    });

    it("refuses to promote from a stack that follows the build stack", () => {
        expect(() => promote({ kind: "stack", name: "dev", text: read("dev") }, read("staging"), PROJECT)).toThrow(/no pinned ref in dev/);
    });

    it("writes the file only when not a dry run, and validates it first", () => {
        const dir = fs.mkdtempSync(path.join(os.tmpdir(), "promote-"));
        fs.mkdirSync(path.join(dir, "stacks"));
        fs.copyFileSync(path.join(ROOT, "Pulumi.yaml"), path.join(dir, "Pulumi.yaml"));
        for (const s of ["staging", "prod"]) fs.writeFileSync(path.join(dir, "stacks", `Pulumi.${s}.yaml`), read(s));
        const log: string[] = [];

        expect(main(["--from", "staging", "--to", "prod", "--dry-run"], dir, (l) => log.push(l))).toBe(0);
        expect(fs.readFileSync(path.join(dir, "stacks/Pulumi.prod.yaml"), "utf8")).toBe(read("prod"));
        expect(log.at(-1)).toMatch(/^\d+ changed, \d+ unchanged/);

        expect(main(["--from", "staging", "--to", "prod"], dir, (l) => log.push(l))).toBe(0);
        const written = fs.readFileSync(path.join(dir, "stacks/Pulumi.prod.yaml"), "utf8");
        expect(services(written).map((s) => s.ref)).toEqual(services(read("staging")).map((s) => s.ref));

        // A source digest of the wrong image would make an invalid prod file: refused, nothing written.
        const badStaging = read("staging").replace(/ml\/inference@sha256:[a-f0-9]{64}/, `ml/other@${DIGEST_B}`);
        fs.writeFileSync(path.join(dir, "stacks/Pulumi.staging.yaml"), badStaging);
        expect(() => main(["--from", "staging", "--to", "prod"], dir, () => undefined)).toThrow(/is not image "inference"/);
        expect(fs.readFileSync(path.join(dir, "stacks/Pulumi.prod.yaml"), "utf8")).toBe(written);
    });

    it("rejects bad arguments with the usage", () => {
        expect(() => main(["--to", "prod"], ROOT)).toThrow(/usage: promote/);
        expect(() => main(["--from", "staging", "--from-outputs", "x.json", "--to", "prod"], ROOT)).toThrow(/usage: promote/);
        expect(() => main(["--from"], ROOT)).toThrow(/--from needs a value/);
    });
});
