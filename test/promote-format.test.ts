/**
 * npm run promote edits stack files in place: the output differs from the
 * input only in the bytes of the values it changes, whatever the file's
 * formatting (line endings, BOM, comments, blank lines, quoting, indentation,
 * key order, flow or block style).
 */
import { createHash } from "node:crypto";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { MODEL_PREFIX, REF, SIDECAR_IMAGES, promote } from "../scripts/promote";
import { PROJECT, REGISTRY, promotedStack, withSidecarImages } from "./fixtures";

const hexOf = (seed: string) => createHash("sha256").update(seed).digest("hex");
const ref = (hex: string) => `${REGISTRY}/ml/inference@sha256:${hex}`;
const refOf = (n: number) => ref(hexOf(String(n)));
/** What a build stack exports for the shipped stacks' services, and every sidecar image, with digests from `seed`. */
const buildOutputs = (seed: string) =>
    withSidecarImages(
        { images: { inference: { targets: Object.fromEntries(["cpu-avx2", "arm64-neon", "cuda12"].map((t) => [t, { ref: ref(hexOf(`${seed}/${t}`)) }])) } } },
        seed,
    );
/** A shipped pinned-only stack file as promotion from a build with digests from `seed` leaves it. */
const promoted = (stack: string, seed: string) => promotedStack(stack, buildOutputs(seed)).text;

type Quote = "plain" | "single" | "double";

interface ServiceLayout {
    readonly flow: boolean;
    readonly quote: Quote;
    /** Order of the keys besides `name`, which comes first in block style. */
    readonly order: readonly string[];
    readonly comment: boolean;
    readonly blankBefore: boolean;
    /** Spaces after "-" in block style. */
    readonly dashGap: number;
    readonly quoteOthers: boolean;
}

interface Layout {
    readonly bom: boolean;
    /** Per line: true = CRLF. */
    readonly crlf: readonly boolean[];
    readonly indent: number;
    readonly seqIndented: boolean;
    readonly finalNewline: boolean;
    readonly services: readonly ServiceLayout[];
}

const quoted = (value: string, quote: Quote) => (quote === "plain" ? value : quote === "single" ? `'${value}'` : `"${value}"`);

/** A stack file in the given layout, with these refs (by service index). */
function render(layout: Layout, refs: readonly string[]): string {
    const I = " ".repeat(layout.indent);
    const lines: string[] = ["# A hand-formatted stack file: ünïcödé and 🚀 in comments shift UTF-16 offsets.", "config:", `${I}aws:region: us-east-1   # region`];
    lines.push(`${I}${PROJECT}:serve:  # the services`, `${I}${I}requirePinned: true`, `${I}${I}services:`);
    const item = layout.seqIndented ? `${I}${I}${I}` : `${I}${I}`;
    layout.services.forEach((s, i) => {
        const other = (v: string) => (s.quoteOthers ? `"${v}"` : v);
        const values: Record<string, string> = {
            image: other("inference"),
            target: other("cpu-avx2"),
            ref: quoted(refs[i], s.quote),
            model: `{bucket: ml-models-123456789012, prefix: ${other("classifier/2026-11-01")}}`,
            cpu: "1024",
        };
        if (s.blankBefore) lines.push("");
        if (s.comment) lines.push(`${item}# service ${i} — ☃`);
        if (s.flow) {
            const pairs = [`name: ${other(`svc-${i}`)}`, ...s.order.map((k) => `${k}: ${values[k]}`)];
            lines.push(`${item}- {${pairs.join(", ")}}${s.comment ? "  # flow 🚀" : ""}`);
            return;
        }
        const gap = " ".repeat(s.dashGap);
        lines.push(`${item}-${gap}name: ${other(`svc-${i}`)}`);
        for (const k of s.order) {
            if (s.comment && k === "cpu") lines.push(`${item} ${gap}# a comment line between keys`);
            lines.push(`${item} ${gap}${k}: ${values[k]}${s.comment && k === "ref" ? "   # pinned ✓" : ""}`);
        }
    });
    lines.push(`${I}# trailing comment`);
    const text = lines.map((l, i) => l + (i === lines.length - 1 && !layout.finalNewline ? "" : layout.crlf[i % layout.crlf.length] ? "\r\n" : "\n")).join("");
    return (layout.bom ? "\uFEFF" : "") + text;
}

const serviceLayout: fc.Arbitrary<ServiceLayout> = fc.record({
    flow: fc.boolean(),
    quote: fc.constantFrom<Quote>("plain", "single", "double"),
    order: fc.shuffledSubarray(["image", "target", "ref", "model", "cpu"], { minLength: 5, maxLength: 5 }),
    comment: fc.boolean(),
    blankBefore: fc.boolean(),
    dashGap: fc.integer({ min: 1, max: 3 }),
    quoteOthers: fc.boolean(),
});

const layout: fc.Arbitrary<Layout> = fc.record({
    bom: fc.boolean(),
    crlf: fc.oneof(fc.constant([false]), fc.constant([true]), fc.array(fc.boolean(), { minLength: 1, maxLength: 7 })),
    indent: fc.integer({ min: 2, max: 4 }),
    seqIndented: fc.boolean(),
    finalNewline: fc.boolean(),
    services: fc.array(serviceLayout, { minLength: 1, maxLength: 5 }),
});

function sourceText(refs: readonly string[]): string {
    const services = refs.map((r, i) => `      - {name: svc-${i}, image: inference, target: cpu-avx2, ref: "${r}"}`).join("\n");
    return `config:\n  ${PROJECT}:serve:\n    services:\n${services}\n`;
}

describe("promote edits only the bytes of the values it changes", () => {
    it("for any layout: line endings (LF, CRLF, mixed), BOM, comments, blank lines, quoting, indentation, key order, flow and block", () => {
        fc.assert(
            fc.property(layout, fc.array(fc.boolean(), { minLength: 5, maxLength: 5 }), (l, same) => {
                const oldRefs = l.services.map((_, i) => refOf(1000 + i));
                const newRefs = l.services.map((_, i) => (same[i] ? oldRefs[i] : refOf(2000 + i)));
                const before = render(l, oldRefs);
                const result = promote({ kind: "stack", name: "staging", text: sourceText(newRefs) }, before, PROJECT, { values: [REF] });
                expect(result.text).toBe(render(l, newRefs));
                expect(result.changes.map((c) => c.service)).toEqual(l.services.flatMap((_, i) => (same[i] ? [] : [`svc-${i}`])));
                expect(result.unchanged).toEqual(l.services.flatMap((_, i) => (same[i] ? [`svc-${i}`] : [])));
            }),
            { numRuns: 150 },
        );
    });

    it("prod from staging: exactly the differing values are replaced, every other byte is the same", () => {
        const prod = promoted("prod", "build-1");
        const staging = promoted("staging", "build-2");
        const result = promote({ kind: "stack", name: "staging", text: staging }, prod, PROJECT);
        expect(result.changes.length).toBeGreaterThan(0);
        let expected = prod;
        for (const c of result.changes) expected = expected.replace(c.from as string, c.to);
        expect(result.text).toBe(expected);
        // The same file with CRLF line endings and a BOM stays CRLF with a BOM.
        const crlf = `\uFEFF${prod.replace(/\n/g, "\r\n")}`;
        const again = promote({ kind: "stack", name: "staging", text: staging }, crlf, PROJECT);
        expect(again.text).toBe(`\uFEFF${expected.replace(/\n/g, "\r\n")}`);
    });

    it("adds serve.sidecarImages where a pinned-only stack has none, after requirePinned, in the file's own line endings", () => {
        const staging = promotedStack("staging", buildOutputs("build-1")).config[`${PROJECT}:serve`] as { sidecarImages: Record<string, string> };
        const dest = `config:\r\n  aws:region: us-east-1\r\n  ${PROJECT}:serve:\r\n    requirePinned: true   # staging\r\n    services:\r\n      - {name: a, image: inference, target: cpu-avx2, ref: "${refOf(1)}"}\r\n`;
        const src = `config:\n  ${PROJECT}:serve:\n    services:\n      - {name: a, image: inference, target: cpu-avx2, ref: "${refOf(1)}"}\n    sidecarImages: {model-sync: "${staging.sidecarImages["model-sync"]}"}\n`;
        const result = promote({ kind: "stack", name: "staging", text: src }, dest, PROJECT, { values: [REF, SIDECAR_IMAGES] });
        expect(result.text).toBe(dest.replace("# staging\r\n", `# staging\r\n    sidecarImages:\r\n      model-sync: ${staging.sidecarImages["model-sync"]}\r\n`));
        const flow = `config:\n  ${PROJECT}:serve: {requirePinned: true, services: [{name: a, image: inference, target: cpu-avx2, ref: "${refOf(1)}"}]}\n`;
        expect(promote({ kind: "stack", name: "staging", text: src }, flow, PROJECT, { values: [REF, SIDECAR_IMAGES] }).text).toBe(
            flow.replace("requirePinned: true,", `requirePinned: true, sidecarImages: {model-sync: ${staging.sidecarImages["model-sync"]}},`),
        );
    });

    const D = (c: string) => ref(hexOf(c));
    const source = (refs: Record<string, string>) => ({
        kind: "stack" as const,
        name: "staging",
        text: `config:\n  ${PROJECT}:serve:\n    services:\n${Object.entries(refs)
            .map(([name, r]) => `      - {name: ${name}, image: inference, target: cpu-avx2, ref: "${r}"}`)
            .join("\n")}\n`,
    });

    it("keeps a block scalar's header and indentation, and its trailing lines", () => {
        const before = `config:\r\n  ${PROJECT}:serve:\r\n    services:\r\n      - name: a\r\n        image: inference\r\n        target: cpu-avx2\r\n        ref: >-   # folded\r\n            ${D("1")}\r\n\r\n        cpu: 1024\r\n`;
        const result = promote(source({ a: D("2") }), before, PROJECT, { values: [REF] });
        expect(result.text).toBe(before.replace(D("1"), D("2")));
    });

    it("refuses a block scalar whose value would end with a line break, naming it", () => {
        const before = `config:\n  ${PROJECT}:serve:\n    services:\n      - name: a\n        image: inference\n        target: cpu-avx2\n        ref: |\n          ${D("1")}\n`;
        expect(() => promote(source({ a: D("2") }), before, PROJECT, { destName: "prod", values: [REF] })).toThrow(/services\[0\]\.ref is a block scalar \(\|\)/);
    });

    it("adds a missing ref after target, in the map's own style and line endings", () => {
        const block = `config:\r\n  ${PROJECT}:serve:\r\n    services:\r\n      -   name: a\r\n          image: inference\r\n          target: cpu-avx2   # x86\r\n          cpu: 1024\r\n`;
        expect(promote(source({ a: D("3") }), block, PROJECT, { values: [REF] }).text).toBe(block.replace("# x86\r\n", `# x86\r\n          ref: ${D("3")}\r\n`));
        const flow = `config:\n  ${PROJECT}:serve:\n    services:\n      - {name: a, image: inference, target: cpu-avx2, cpu: 1024}\n`;
        expect(promote(source({ a: D("3") }), flow, PROJECT, { values: [REF] }).text).toBe(flow.replace("cpu-avx2,", `cpu-avx2, ref: ${D("3")},`));
        const last = `config:\n  ${PROJECT}:serve:\n    services:\n      - name: a\n        image: inference\n        target: cpu-avx2`;
        expect(promote(source({ a: D("3") }), last, PROJECT, { values: [REF] }).text).toBe(`${last}\n        ref: ${D("3")}`);
    });

    it("writes a value that cannot be plain as a quoted scalar, and keeps single and double quotes", () => {
        const dest = [
            "config:",
            `  ${PROJECT}:serve:`,
            "    services:",
            `      - {name: a, image: inference, target: cpu-avx2, ref: '${D("1")}', model: {bucket: b, prefix: p/1}}`,
            `      - {name: b, image: inference, target: cpu-avx2, ref: "${D("1")}", model: {bucket: b, prefix: 'p/2'}}`,
            `      - {name: c, image: inference, target: cpu-avx2, ref: ${D("1")}, model: {bucket: b, prefix: "p/3"}}`,
            "",
        ].join("\n");
        const src = [
            "config:",
            `  ${PROJECT}:serve:`,
            "    services:",
            `      - {name: a, image: inference, target: cpu-avx2, ref: "${D("2")}", model: {prefix: "true"}}`,
            `      - {name: b, image: inference, target: cpu-avx2, ref: "${D("2")}", model: {prefix: "it's, here"}}`,
            `      - {name: c, image: inference, target: cpu-avx2, ref: "${D("2")}", model: {prefix: "q/3"}}`,
            "",
        ].join("\n");
        const result = promote({ kind: "stack", name: "staging", text: src }, dest, PROJECT, { values: [REF, MODEL_PREFIX] });
        const lines = result.text.split("\n");
        expect(lines[3]).toBe(`      - {name: a, image: inference, target: cpu-avx2, ref: '${D("2")}', model: {bucket: b, prefix: "true"}}`);
        expect(lines[4]).toBe(`      - {name: b, image: inference, target: cpu-avx2, ref: "${D("2")}", model: {bucket: b, prefix: 'it''s, here'}}`);
        expect(lines[5]).toBe(`      - {name: c, image: inference, target: cpu-avx2, ref: ${D("2")}, model: {bucket: b, prefix: "q/3"}}`);
        expect(result.changes.map((c) => `${c.service} ${c.value}`)).toEqual(["a ref", "a model.prefix", "b ref", "b model.prefix", "c ref", "c model.prefix"]);
    });
});

describe("the promotion engine is a table of value kinds", () => {
    const D = (c: string) => ref(hexOf(c));
    const dest = [
        "config:",
        `  ${PROJECT}:serve:`,
        "    services:",
        "      - name: a",
        "        image: inference",
        "        target: cpu-avx2",
        `        ref: ${D("1")}`,
        "        model:",
        "          bucket: b",
        "          prefix: classifier/2026-10-01   # the model",
        "    # sidecar images per kind",
        "    sidecarImages:",
        `      metrics-exporter: ${D("3")}`,
        `      model-sync: ${D("4")}`,
        "",
    ].join("\n");
    const src = [
        "config:",
        `  ${PROJECT}:serve:`,
        "    services:",
        `      - {name: a, image: inference, target: cpu-avx2, ref: "${D("1")}", model: {bucket: b, prefix: classifier/2026-11-01}}`,
        `    sidecarImages: {metrics-exporter: "${D("5")}", log-router: "${D("6")}"}`,
        "",
    ].join("\n");

    it("copies per-service paths (model.prefix) and serve map entries (serve.sidecarImages) with the same guarantees", () => {
        const result = promote({ kind: "stack", name: "staging", text: src }, dest, PROJECT, { values: [REF, MODEL_PREFIX, SIDECAR_IMAGES], destName: "prod" });
        const expected = dest
            .replace("classifier/2026-10-01", "classifier/2026-11-01")
            .replace(`metrics-exporter: ${D("3")}`, `metrics-exporter: ${D("5")}`)
            .replace(`model-sync: ${D("4")}\n`, `model-sync: ${D("4")}\n      log-router: ${D("6")}\n`);
        expect(result.text).toBe(expected);
        expect(result.changes.map((c) => [c.service, c.value, c.path])).toEqual([
            ["a", "model.prefix", `${PROJECT}:serve.services[0].model.prefix`],
            ["serve.sidecarImages.metrics-exporter", "serve.sidecarImages", `${PROJECT}:serve.sidecarImages.metrics-exporter`],
            ["serve.sidecarImages.log-router", "serve.sidecarImages", `${PROJECT}:serve.sidecarImages.log-router`],
        ]);
        expect(result.notInSource).toEqual(["serve.sidecarImages.model-sync"]);
        expect(result.report).toContain("serve.sidecarImages.model-sync: not in staging; left as it is");
    });

    it("checks each kind's values (sidecar images must be pinned by digest)", () => {
        const bad = src.replace(`log-router: "${D("6")}"`, `log-router: "public.ecr.aws/x/y:latest"`);
        expect(() => promote({ kind: "stack", name: "staging", text: bad }, dest, PROJECT, { values: [REF, SIDECAR_IMAGES] })).toThrow(
            /serve\.sidecarImages\.log-router in staging: public\.ecr\.aws\/x\/y:latest is a tag \(":latest"\), not pinned by digest/,
        );
    });

    it("by default promotes ref, model.prefix and serve.sidecarImages", () => {
        const all = promote({ kind: "stack", name: "staging", text: src }, dest, PROJECT, { values: [REF, MODEL_PREFIX, SIDECAR_IMAGES], destName: "prod" });
        expect(promote({ kind: "stack", name: "staging", text: src }, dest, PROJECT, { destName: "prod" })).toEqual(all);
    });
});
