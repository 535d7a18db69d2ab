import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { parse as parseYaml } from "yaml";
import { beforeAll, describe, expect, it } from "vitest";
import { PROMOTED_VALUES, main, promote, sidecarKindsNeeded } from "../scripts/promote";
import { ROOT, STACKS_DIR, buildStackOutputs } from "./harness";
import { DIGEST_B, PROJECT, REGISTRY, digestOf, refOf, withSidecarImages } from "./fixtures";

const read = (stack: string) => fs.readFileSync(path.join(STACKS_DIR, `Pulumi.${stack}.yaml`), "utf8");
type Service = { name: string; image: string; target: string; ref?: string; model: { prefix: string } };
type Serve = { services: Service[]; sidecarImages?: Record<string, string> };
const serveOf = (text: string) => (parseYaml(text) as { config: Record<string, Serve> }).config[`${PROJECT}:serve`];
const services = (text: string) => serveOf(text).services;
type Images = Record<string, { targets: Record<string, { ref: string }>; multiArch?: { ref: string } }>;

/** Lines that differ between two texts of the same length in lines. */
function changedLines(before: string, after: string): Array<[string, string]> {
    const a = before.split("\n");
    const b = after.split("\n");
    expect(b.length).toBe(a.length);
    return a.flatMap((line, i) => (line === b[i] ? [] : [[line, b[i]] as [string, string]]));
}

/** Outputs of the build stack file, and (where it builds no sidecar image yet) made-up sidecar images. */
let built: Record<string, unknown>;
/** A second build with other digests for every image. */
let rebuilt: Record<string, unknown>;
beforeAll(async () => {
    built = withSidecarImages(await buildStackOutputs());
    const images = structuredClone(built.images) as Images;
    for (const [name, image] of Object.entries(images)) {
        for (const [target, t] of Object.entries(image.targets)) t.ref = refOf(name, `rebuilt/${name}/${target}`);
        if (image.multiArch) image.multiArch.ref = refOf(name, `rebuilt/${name}/index`);
    }
    rebuilt = { ...built, images };
});

const fromOutputs = (outputs: unknown, name = "build-outputs.json") => ({ kind: "outputs", name, outputs }) as const;

describe("npm run promote", () => {
    it("promotes everything staging needs from the build stack's outputs: each service's ref and serve.sidecarImages for every kind it runs", () => {
        const result = promote(fromOutputs(built), read("staging"), PROJECT, { destName: "staging" });
        const images = built.images as Images;
        for (const s of services(result.text)) expect(s.ref).toBe(images[s.image].targets[s.target].ref);
        const kinds = sidecarKindsNeeded(serveOf(read("staging")) as unknown as Record<string, unknown>);
        expect(kinds).toEqual(expect.arrayContaining(["model-sync", "metrics-exporter", "log-router"]));
        expect(serveOf(result.text).sidecarImages).toEqual(Object.fromEntries(kinds.map((k) => [k, images[k].multiArch?.ref])));
        expect(result.changes.map((c) => `${c.service} ${c.value}`).sort()).toEqual(
            [...services(read("staging")).map((s) => `${s.name} ref`), ...kinds.map((k) => `serve.sidecarImages.${k} serve.sidecarImages`)].sort(),
        );
        // Only lines are added (the refs, the sidecarImages map); every other line stays as it was.
        const before = read("staging").split("\n");
        expect(result.text.split("\n").filter((line) => !/^\s+(ref|sidecarImages|model-sync|metrics-exporter|log-router):/.test(line))).toEqual(before);
        expect(result.report).toContain(`serve.sidecarImages.model-sync: (not set) -> ${images["model-sync"].multiArch?.ref}`);
    });

    it("copies staging into prod: refs, model prefixes and sidecar images, changing exactly the lines that differ", () => {
        const staging = promote(fromOutputs(rebuilt), read("staging"), PROJECT).text.replaceAll("prefix: classifier/2026-11-01", "prefix: classifier/2026-12-01");
        const prod = promote(fromOutputs(built), read("prod"), PROJECT).text;
        const result = promote({ kind: "stack", name: "staging", text: staging }, prod, PROJECT, { destName: "prod" });

        const want = serveOf(staging);
        for (const s of services(result.text)) {
            const from = want.services.find((x) => x.name === s.name);
            expect([s.ref, s.model.prefix]).toEqual([from?.ref, from?.model.prefix]);
        }
        expect(serveOf(result.text).sidecarImages).toEqual(want.sidecarImages);
        const lines = changedLines(prod, result.text);
        expect(lines).toHaveLength(result.changes.length);
        expect(result.changes.length).toBe(services(prod).length * 2 + Object.keys(want.sidecarImages ?? {}).length);
        for (const [before, after] of lines) {
            expect(before.trim()).toMatch(/^(ref|model-sync|metrics-exporter|log-router): \S+@sha256:[a-f0-9]{64}$|^prefix: classifier\/2026-11-01$/);
            expect(after.trim()).toMatch(/^(ref|model-sync|metrics-exporter|log-router): \S+@sha256:[a-f0-9]{64}$|^prefix: classifier\/2026-12-01$/);
        }
        // Comments and everything else survive.
        expect(result.text).toContain("# prod deploys exactly what staging verified");
    });

    it("promotes the server digest, the model prefix and the sidecar images by default", () => {
        expect(PROMOTED_VALUES.map((v) => v.label)).toEqual(["ref", "model.prefix", "serve.sidecarImages"]);
    });

    it("is idempotent", () => {
        const source = { kind: "stack", name: "staging", text: promote(fromOutputs(built), read("staging"), PROJECT).text } as const;
        const once = promote(source, read("prod"), PROJECT);
        const twice = promote(source, once.text, PROJECT);
        expect(twice.changes).toEqual([]);
        expect(twice.text).toBe(once.text);
        expect(promote(fromOutputs(built), promote(fromOutputs(built), read("staging"), PROJECT).text, PROJECT).changes).toEqual([]);
    });

    it("reports a sidecar image the build stack's outputs lack, and leaves it", () => {
        const images = { ...(built.images as Images) };
        delete images["log-router"];
        const result = promote(fromOutputs({ images }), read("staging"), PROJECT);
        expect(result.report).toContain("serve.sidecarImages.log-router: build-outputs.json has no images.log-router.multiArch.ref (the build stack builds the log-router sidecar image as amd64 + arm64); left as it is");
        expect(result.notInSource).toContain("serve.sidecarImages.log-router");
        expect(serveOf(result.text).sidecarImages?.["log-router"]).toBeUndefined();
    });

    it("refuses to copy between services that deploy different images or targets", () => {
        const staging = promote(fromOutputs(built), read("staging"), PROJECT).text.replace("target: cuda12", "target: cpu-avx512");
        expect(() => promote({ kind: "stack", name: "staging", text: staging }, read("prod"), PROJECT)).toThrow(
            /classifier-gpu deploys inference\/cpu-avx512 in staging but inference\/cuda12/,
        );
    });

    it("refuses to promote from a stack that follows the build stack", () => {
        expect(() => promote({ kind: "stack", name: "dev", text: read("dev") }, read("staging"), PROJECT)).toThrow(/no pinned ref in dev/);
    });

    describe("through main, on a copy of the project's stack files", () => {
        let dir: string;
        const file = (s: string) => path.join(dir, "stacks", `Pulumi.${s}.yaml`);
        beforeAll(() => {
            dir = fs.mkdtempSync(path.join(os.tmpdir(), "promote-"));
            fs.mkdirSync(path.join(dir, "stacks"));
            fs.copyFileSync(path.join(ROOT, "Pulumi.yaml"), path.join(dir, "Pulumi.yaml"));
            for (const s of ["staging", "prod"]) fs.writeFileSync(file(s), read(s));
            fs.writeFileSync(path.join(dir, "build-outputs.json"), JSON.stringify(built));
        });

        it("writes the file only when not a dry run, after validating it, and says what it changed", () => {
            const log: string[] = [];
            expect(main(["--from-outputs", "build-outputs.json", "--to", "staging", "--dry-run"], dir, (l) => log.push(l), { cwd: dir })).toBe(0);
            expect(fs.readFileSync(file("staging"), "utf8")).toBe(read("staging"));
            expect(log.at(-1)).toMatch(/^\d+ changed, \d+ unchanged.*; dry run: stacks\/Pulumi\.staging\.yaml not written$/);

            log.length = 0;
            expect(main(["--from-outputs", "build-outputs.json", "--to", "staging"], dir, (l) => log.push(l), { cwd: dir })).toBe(0);
            expect(log.at(-1)).toMatch(/^wrote stacks\/Pulumi\.staging\.yaml \(classifier-cpu ref, .*serve\.sidecarImages\.model-sync serve\.sidecarImages.*\): review and open a pull request$/);
            expect(main(["--from", "staging", "--to", "prod"], dir, (l) => log.push(l))).toBe(0);
            const written = fs.readFileSync(file("prod"), "utf8");
            expect(services(written).map((s) => s.ref)).toEqual(services(fs.readFileSync(file("staging"), "utf8")).map((s) => s.ref));
            expect(serveOf(written).sidecarImages).toEqual(serveOf(fs.readFileSync(file("staging"), "utf8")).sidecarImages);
        });

        it.each([
            ["a digest of the wrong image", (t: string) => t.replace(/ml\/inference@sha256:[a-f0-9]{64}/, `ml/other@${DIGEST_B}`), /repository "ml\/other" is not image "inference"/],
            ["a placeholder digest", (t: string) => t.replace(/ml\/inference@sha256:[a-f0-9]{64}/, `ml/inference@sha256:${"0".repeat(63)}1`), /classifier-cpu in staging: .* has a bad digest: digest sha256:000000000000… has a run of 63 "0"s: a placeholder/],
            ["an upper-case digest", (t: string) => t.replace(/(ml\/inference@sha256:)([a-f0-9]{64})/, (_m, a: string, b: string) => `${a}${b.toUpperCase()}`), /is upper-case/],
            ["a foreign registry", (t: string) => t.replace(/ref: \S+\/ml\/inference@/, "ref: ghcr.io/someone/inference@"), /refusing to write stacks\/Pulumi\.prod\.yaml: .*ghcr\.io is not this stack's registry/s],
            ["another region's registry", (t: string) => t.replaceAll(".dkr.ecr.us-east-1.", ".dkr.ecr.eu-west-1."), /refusing to write .*is a registry in eu-west-1; this stack \(aws:region us-east-1\) deploys only from its own registry/s],
            ["a second registry in one stack", (t: string) => t.replace(/ref: 123456789012\.dkr\.ecr\.us-east-1\./, "ref: 210987654321.dkr.ecr.us-east-1."), /refusing to write .*210987654321\.dkr\.ecr\.us-east-1\.amazonaws\.com is not the registry the stack's other images come from/s],
            ["one digest for two targets", (t: string) => {
                const first = /ref: (\S+)/.exec(t)?.[1] ?? "";
                let n = 0;
                return t.replace(/ref: \S+/g, (m) => (n++ === 1 ? `ref: ${first}` : m));
            }, /refusing to write .*is also inference\/cpu-avx2/s],
        ])("refuses %s from its source, and writes nothing", (_what, spoil, message) => {
            const staging = fs.readFileSync(file("staging"), "utf8");
            const prod = fs.readFileSync(file("prod"), "utf8");
            fs.writeFileSync(file("staging"), spoil(staging));
            try {
                expect(() => main(["--from", "staging", "--to", "prod"], dir, () => undefined)).toThrow(message);
                expect(fs.readFileSync(file("prod"), "utf8")).toBe(prod);
            } finally {
                fs.writeFileSync(file("staging"), staging);
            }
        });

        it("refuses build outputs that lack what a pinned-only stack needs, naming the missing value and writing nothing", () => {
            const images = { ...(built.images as Images) };
            delete images["metrics-exporter"];
            fs.writeFileSync(path.join(dir, "partial.json"), JSON.stringify({ images }));
            const before = fs.readFileSync(file("staging"), "utf8");
            fs.writeFileSync(file("staging"), read("staging"));
            try {
                expect(() => main(["--from-outputs", "partial.json", "--to", "staging"], dir, () => undefined, { cwd: dir })).toThrow(
                    /refusing to write stacks\/Pulumi\.staging\.yaml: the result is not a valid stack config: .*ml-infra:serve\.sidecarImages\.metrics-exporter = \(missing\)/s,
                );
                expect(fs.readFileSync(file("staging"), "utf8")).toBe(read("staging"));
            } finally {
                fs.writeFileSync(file("staging"), before);
            }
        });
    });

    it("refuses build outputs whose digests are not pinned or are placeholders", () => {
        const images = structuredClone(built.images) as Images;
        images["model-sync"].multiArch = { ref: `${REGISTRY}/ml/model-sync@sha256:${"ab".repeat(32)}` };
        expect(() => promote(fromOutputs({ images }), read("staging"), PROJECT)).toThrow(/serve\.sidecarImages\.model-sync in build-outputs\.json: .* repeats "ab": a placeholder/);
        images["model-sync"].multiArch = { ref: `${REGISTRY}/ml/model-sync:latest` };
        expect(() => promote(fromOutputs({ images }), read("staging"), PROJECT)).toThrow(/is a tag \(":latest"\), not pinned by digest/);
        const tagged = structuredClone(built.images) as Images;
        tagged.inference.targets["cpu-avx2"].ref = `${REGISTRY}/ml/inference@${digestOf("x").toUpperCase().replace("SHA256", "sha256")}`;
        expect(() => promote(fromOutputs({ images: tagged }), read("staging"), PROJECT)).toThrow(/not pinned by digest|upper-case/);
    });

    it("rejects bad arguments with the usage", () => {
        expect(() => main(["--to", "prod"], ROOT)).toThrow(/usage: promote/);
        expect(() => main(["--from", "staging", "--from-outputs", "x.json", "--to", "prod"], ROOT)).toThrow(/usage: promote/);
        expect(() => main(["--from"], ROOT)).toThrow(/--from needs a value/);
    });
});
