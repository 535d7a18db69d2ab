/**
 * npm run promote never writes outside stacks/, never writes on an error,
 * refuses YAML it cannot edit safely (anchors, aliases, merge keys), reports
 * every service, and writes atomically under a lock.
 */
import { spawn, spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { describe, expect, it } from "vitest";
import { acquireLock, lockPathOf, writeFileAtomic } from "../scripts/lib/file-lock";
import { main, promote } from "../scripts/promote";
import { ROOT, STACKS_DIR } from "./harness";
import { PROJECT, refOf, withSidecarImages } from "./fixtures";

const read = (stack: string) => fs.readFileSync(path.join(STACKS_DIR, `Pulumi.${stack}.yaml`), "utf8");
const D = (c: string) => `123456789012.dkr.ecr.us-east-1.amazonaws.com/ml/inference@sha256:${createHash("sha256").update(c).digest("hex")}`;
/** The model-fetch image every serving stack here pins. */
const MODEL_SYNC = refOf("model-sync");
/** Build outputs with the server of cpu-avx2 at `ref` and the model-sync image the stacks pin. */
const outputsWith = (ref: string) => ({ images: { inference: { targets: { "cpu-avx2": { ref } } }, "model-sync": { multiArch: { ref: MODEL_SYNC } } } });
/** The shipped stacks promoted from a build (they pin nothing until then). */
const shipped = () => {
    const built = withSidecarImages({ images: { inference: { targets: Object.fromEntries(["cpu-avx2", "arm64-neon", "cuda12"].map((t) => [t, { ref: D(t) }])) } } });
    return Object.fromEntries(["staging", "prod"].map((s) => [s, promote({ kind: "outputs", name: "b", outputs: built }, read(s), PROJECT).text]));
};

/** A project root in a temporary directory with these stack files. */
function project(stacks: Record<string, string>): { root: string; file: (stack: string) => string; snapshot: () => Record<string, string> } {
    const root = fs.mkdtempSync(path.join(os.tmpdir(), "promote-safety-"));
    fs.copyFileSync(path.join(ROOT, "Pulumi.yaml"), path.join(root, "Pulumi.yaml"));
    fs.mkdirSync(path.join(root, "stacks"));
    for (const [name, text] of Object.entries(stacks)) fs.writeFileSync(path.join(root, "stacks", `Pulumi.${name}.yaml`), text);
    const file = (stack: string) => path.join(root, "stacks", `Pulumi.${stack}.yaml`);
    /** Every file under the root (names and contents): nothing else may change. */
    const snapshot = () => {
        const out: Record<string, string> = {};
        const walk = (dir: string) => {
            for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
                const p = path.join(dir, e.name);
                if (e.isDirectory()) walk(p);
                else out[path.relative(root, p)] = e.isSymbolicLink() ? `-> ${fs.readlinkSync(p)}` : fs.readFileSync(p, "utf8");
            }
        };
        walk(root);
        return out;
    };
    return { root, file, snapshot };
}

/** A valid serving stack with these services (name -> ref, or undefined to follow the build stack). */
function servingStack(services: Record<string, string | undefined>, extra = ""): string {
    const entries = Object.entries(services)
        .map(([name, ref]) =>
            [
                `      - name: ${name}`,
                "        image: inference",
                "        target: cpu-avx2",
                ...(ref ? [`        ref: ${ref}`] : []),
                "        model:",
                "          bucket: ml-models-123456789012",
                "          prefix: classifier/2026-11-01",
            ].join("\n"),
        )
        .join("\n");
    return [
        "config:",
        "  aws:region: us-east-1",
        `  ${PROJECT}:network:`,
        "    cidr: 10.30.0.0/16",
        "    availabilityZones: [us-east-1a, us-east-1b]",
        "    natGateways: single",
        `  ${PROJECT}:serve:`,
        "    requirePinned: true",
        "    sidecarImages:",
        `      model-sync: ${MODEL_SYNC}`,
        "    clients:",
        "      cidrs: [10.30.0.0/16]",
        "    loadBalancer: {protocol: http}",
        "    services:",
        entries,
        extra,
    ].join("\n");
}

const quiet = () => undefined;

describe("promote writes only stacks/Pulumi.<name>.yaml", () => {
    it.each([
        ["../../x", /--to "\.\.\/\.\.\/x" is not a stack name/],
        ["/etc/passwd", /--to "\/etc\/passwd" is not a stack name/],
        ["a/b", /is not a stack name/],
        ["..", /is not a stack name/],
        ["prod..x", /is not a stack name/],
        ["missing", /--to missing: stacks\/Pulumi\.missing\.yaml does not exist/],
    ])("refuses --to %s with a clear error and writes nothing", (to, error) => {
        const p = project(shipped());
        const before = p.snapshot();
        expect(() => main(["--from", "staging", "--to", to], p.root, quiet)).toThrow(error);
        expect(p.snapshot()).toEqual(before);
    });

    it("refuses a symlinked stack file, and a symlinked --from", () => {
        const p = project({ staging: shipped().staging });
        const elsewhere = path.join(p.root, "elsewhere.yaml");
        fs.writeFileSync(elsewhere, shipped().prod);
        fs.symlinkSync(elsewhere, p.file("prod"));
        const before = p.snapshot();
        expect(() => main(["--from", "staging", "--to", "prod"], p.root, quiet)).toThrow(/stacks\/Pulumi\.prod\.yaml is a symbolic link/);
        expect(() => main(["--from", "prod", "--to", "staging"], p.root, quiet)).toThrow(/stacks\/Pulumi\.prod\.yaml is a symbolic link/);
        expect(p.snapshot()).toEqual(before);
    });

    it("refuses a symlinked stacks/ directory", () => {
        const p = project(shipped());
        const real = path.join(p.root, "real-stacks");
        fs.renameSync(path.join(p.root, "stacks"), real);
        fs.symlinkSync(real, path.join(p.root, "stacks"));
        const before = p.snapshot();
        expect(() => main(["--from", "staging", "--to", "prod"], p.root, quiet)).toThrow(/stacks\/ is a symbolic link/);
        expect(p.snapshot()).toEqual(before);
    });

    it("has no --dir: the stacks directory is always the project's", () => {
        expect(() => main(["--from", "staging", "--to", "prod", "--dir", "/tmp"], ROOT, quiet)).toThrow(/unknown argument --dir/);
    });
});

describe("promote refuses YAML it cannot edit in place", () => {
    const source = (refs: Record<string, string>) => ({
        kind: "stack" as const,
        name: "staging",
        text: servingStack(refs),
    });

    it("an anchored ref it would change", () => {
        const dest = servingStack({ a: D("1") }).replace(`ref: ${D("1")}`, `ref: &pinned ${D("1")}`);
        expect(() => promote(source({ a: D("2") }), dest, PROJECT, { destName: "prod" })).toThrow(
            /prod: ml-infra:serve\.services\[0\]\.ref has an anchor \(&pinned\)/,
        );
        // Unchanged, it is left alone.
        expect(promote(source({ a: D("1") }), dest, PROJECT).text).toBe(dest);
    });

    it("an alias in place of a ref it would change", () => {
        const dest = servingStack({ a: D("1"), b: D("1") }).replace(`ref: ${D("1")}`, `ref: &r ${D("1")}`).replace(`ref: ${D("1")}`, "ref: *r");
        expect(() => promote(source({ a: D("1"), b: D("2") }), dest, PROJECT, { destName: "prod" })).toThrow(/prod: ml-infra:serve\.services\[1\]\.ref is an alias \(\*r\)/);
    });

    it("an anchored service entry whose ref it would change", () => {
        const dest = servingStack({ a: D("1") }).replace("      - name: a", "      - &svc\n        name: a");
        expect(() => promote(source({ a: D("2") }), dest, PROJECT)).toThrow(/services\[0\] \(a\) has an anchor \(&svc\)/);
    });

    it("a merge key anywhere in the services list, naming it", () => {
        const dest = servingStack({ a: D("1") }).replace("        model:\n", "        <<: {cpu: 1024}\n        model:\n");
        expect(() => promote(source({ a: D("2") }), dest, PROJECT, { destName: "prod" })).toThrow(/prod: ml-infra:serve\.services\[0\] uses the merge key "<<" \(line \d+\)/);
        const nested = servingStack({ a: D("1") }).replace("          bucket: ml-models-123456789012\n", "          <<: {bucket: ml-models-123456789012}\n");
        expect(() => promote(source({ a: D("1") }), nested, PROJECT)).toThrow(/services\[0\]\.model uses the merge key "<<"/);
    });

    it("through main: nothing written, no lock or temporary file left", () => {
        const dest = servingStack({ a: D("1") }).replace(`ref: ${D("1")}`, `ref: &pinned ${D("1")}`);
        const p = project({ staging: servingStack({ a: D("2") }), prod: dest });
        const before = p.snapshot();
        expect(() => main(["--from", "staging", "--to", "prod"], p.root, quiet)).toThrow(/has an anchor/);
        expect(p.snapshot()).toEqual(before);
    });
});

describe("promote reports every service", () => {
    it("changed, unchanged, only in the destination and only in the source, each named", () => {
        const p = project({
            staging: servingStack({ a: D("2"), b: D("1"), fresh: D("3") }),
            prod: servingStack({ a: D("1"), b: D("1"), old: D("1") }),
        });
        const log: string[] = [];
        expect(main(["--from", "staging", "--to", "prod"], p.root, (l) => log.push(l))).toBe(0);
        expect(log).toEqual([
            `a: ref ${D("1")} -> ${D("2")}`,
            "b: unchanged (ref, model.prefix already equal)",
            "old: not in staging; left as it is",
            "fresh: only in staging, not in prod; not promoted (add the service to prod by hand)",
            "serve.sidecarImages.model-sync: unchanged (already equal)",
            "1 changed, 2 unchanged, 1 only in prod (not in staging): old, 1 only in staging (not in prod): fresh",
            "wrote stacks/Pulumi.prod.yaml (a ref): review and open a pull request",
        ]);
    });

    it("from build outputs: a service whose image or target the build does not export is named, not an error", () => {
        const outputs = outputsWith(D("4"));
        const dest = servingStack({ a: D("1") }).replace("target: cpu-avx2", "target: cuda12");
        const result = promote({ kind: "outputs", name: "build-outputs.json", outputs }, servingStack({ a: D("1"), b: D("1") }), PROJECT);
        expect(result.changes.map((c) => c.service)).toEqual(["a", "b"]);
        const missing = promote({ kind: "outputs", name: "build-outputs.json", outputs }, dest, PROJECT);
        expect(missing.notInSource).toEqual(["a"]);
        expect(missing.report).toEqual(["a: build-outputs.json has no images.inference.targets.cuda12; left as it is", "serve.sidecarImages.model-sync: unchanged (already equal)"]);
        expect(() => promote({ kind: "outputs", name: "x.json", outputs: { vpc: {} } }, dest, PROJECT)).toThrow(/x\.json has no "images" output/);
    });

    it("--service promotes only the services named, and refuses an unknown one", () => {
        const p = project({ staging: servingStack({ a: D("2"), b: D("2") }), prod: servingStack({ a: D("1"), b: D("1") }) });
        const log: string[] = [];
        expect(main(["--from", "staging", "--to", "prod", "--service", "b"], p.root, (l) => log.push(l))).toBe(0);
        expect(fs.readFileSync(p.file("prod"), "utf8")).toBe(servingStack({ a: D("1"), b: D("2") }));
        expect(log[0]).toBe(`b: ref ${D("1")} -> ${D("2")}`);
        expect(() => main(["--from", "staging", "--to", "prod", "--service", "nope"], p.root, quiet)).toThrow(/no service nope in prod or staging/);
    });

    it("--dry-run prints the changes and writes nothing", () => {
        const p = project({ staging: servingStack({ a: D("2") }), prod: servingStack({ a: D("1") }) });
        const before = p.snapshot();
        const log: string[] = [];
        expect(main(["--from", "staging", "--to", "prod", "--dry-run"], p.root, (l) => log.push(l))).toBe(0);
        expect(log).toEqual([`a: ref ${D("1")} -> ${D("2")}`, "serve.sidecarImages.model-sync: unchanged (already equal)", "1 changed, 1 unchanged; dry run: stacks/Pulumi.prod.yaml not written"]);
        expect(p.snapshot()).toEqual(before);
    });

    it("--from-outputs is relative to where the command runs", () => {
        const p = project({ prod: servingStack({ a: D("1") }) });
        const cwd = fs.mkdtempSync(path.join(os.tmpdir(), "promote-cwd-"));
        fs.writeFileSync(path.join(cwd, "out.json"), JSON.stringify(outputsWith(D("5"))));
        expect(main(["--from-outputs", "out.json", "--to", "prod"], p.root, quiet, { cwd })).toBe(0);
        expect(fs.readFileSync(p.file("prod"), "utf8")).toBe(servingStack({ a: D("5") }));
        fs.writeFileSync(path.join(cwd, "bad.json"), "{not json");
        expect(() => main(["--from-outputs", "bad.json", "--to", "prod"], p.root, quiet, { cwd })).toThrow(/--from-outputs bad\.json is not JSON/);
    });

    it("an outputs file without the images a pinned stack needs says so first, then what the result lacks; nothing is written", () => {
        const p = project({ prod: servingStack({ a: D("1") }).replace(/\n\s+ref: .*\n/, "\n") });
        const before = p.snapshot();
        const cwd = fs.mkdtempSync(path.join(os.tmpdir(), "promote-cwd-"));
        fs.writeFileSync(path.join(cwd, "empty.json"), JSON.stringify({ images: {} }));
        let message = "";
        try {
            main(["--from-outputs", "empty.json", "--to", "prod"], p.root, quiet, { cwd });
        } catch (error) {
            message = (error as Error).message;
        }
        expect(message.split("\n").slice(0, 2)).toEqual(["empty.json lacks what prod needs:", "  a: empty.json has no images.inference.targets.cpu-avx2; left as it is"]);
        expect(p.snapshot()).toEqual(before);
    });

    it("a flag given twice is refused, not the last one silently winning", () => {
        expect(() => main(["--from", "staging", "--to", "staging", "--to", "prod"], ROOT, quiet)).toThrow(/--to is given twice/);
        expect(() => main(["--from", "a", "--from", "b", "--to", "prod"], ROOT, quiet)).toThrow(/--from is given twice/);
    });

    it("validates the result with the program's config loader before writing (secure values included)", () => {
        const secret = `  ${PROJECT}:buildSecrets:\n    hf_token:\n      secure: v1:AAAAbase64ciphertext==\n`;
        const p = project({ staging: servingStack({ a: D("2") }), prod: `${servingStack({ a: D("1") })}\n${secret}` });
        expect(main(["--from", "staging", "--to", "prod"], p.root, quiet)).toBe(0);
        expect(fs.readFileSync(p.file("prod"), "utf8")).toBe(`${servingStack({ a: D("2") })}\n${secret}`);
        // A result the schema refuses is never written.
        const bad = servingStack({ a: D("2") }).replace("/ml/inference@", "/ml/other@");
        fs.writeFileSync(p.file("staging"), bad);
        const before = p.snapshot();
        expect(() => main(["--from", "staging", "--to", "prod"], p.root, quiet)).toThrow(/refusing to write stacks\/Pulumi\.prod\.yaml: .*repository "ml\/other" is not image "inference"/s);
        expect(p.snapshot()).toEqual(before);
    });
});

describe("promote writes atomically under a lock", () => {
    it("waits for a held lock, then fails clearly, naming the holder and the lock file", () => {
        const p = project({ staging: servingStack({ a: D("2") }), prod: servingStack({ a: D("1") }) });
        const lock = acquireLock(p.file("prod"));
        try {
            const started = Date.now();
            expect(() => main(["--from", "staging", "--to", "prod"], p.root, quiet, { lockTimeoutMs: 300 })).toThrow(
                new RegExp(`\\.Pulumi\\.prod\\.yaml\\.lock is held by pid ${process.pid} on ${os.hostname()}.*Another promote is still running`),
            );
            expect(Date.now() - started).toBeGreaterThanOrEqual(250);
            expect(fs.readFileSync(p.file("prod"), "utf8")).toBe(servingStack({ a: D("1") }));
        } finally {
            lock.release();
        }
        expect(fs.existsSync(lockPathOf(p.file("prod")))).toBe(false);
        expect(main(["--from", "staging", "--to", "prod"], p.root, quiet)).toBe(0);
        expect(fs.existsSync(lockPathOf(p.file("prod")))).toBe(false);
    });

    it("takes over a stale lock (its process is gone) and an unfinished one", () => {
        const p = project({ staging: servingStack({ a: D("2") }), prod: servingStack({ a: D("1") }) });
        const dead = spawnSync(process.execPath, ["-e", ""]).pid as number;
        fs.writeFileSync(lockPathOf(p.file("prod")), JSON.stringify({ pid: dead, host: os.hostname(), since: "2020-01-01T00:00:00Z", token: "x" }));
        expect(main(["--from", "staging", "--to", "prod"], p.root, quiet, { lockTimeoutMs: 2000 })).toBe(0);
        expect(fs.readFileSync(p.file("prod"), "utf8")).toBe(servingStack({ a: D("2") }));

        fs.writeFileSync(lockPathOf(p.file("prod")), "");
        const old = new Date(Date.now() - 60_000);
        fs.utimesSync(lockPathOf(p.file("prod")), old, old);
        fs.writeFileSync(p.file("staging"), servingStack({ a: D("3") }));
        expect(main(["--from", "staging", "--to", "prod"], p.root, quiet, { lockTimeoutMs: 2000 })).toBe(0);
        expect(fs.readFileSync(p.file("prod"), "utf8")).toBe(servingStack({ a: D("3") }));
        expect(fs.readdirSync(path.join(p.root, "stacks")).sort()).toEqual(["Pulumi.prod.yaml", "Pulumi.staging.yaml"]);
    });

    it("re-reads the file after taking the lock: a change made while it waited is kept", async () => {
        const p = project({ staging: servingStack({ a: D("2"), b: D("2") }), prod: servingStack({ a: D("1"), b: D("1") }) });
        const lockFile = lockPathOf(p.file("prod"));
        // Another process holds the lock, edits b, then releases it.
        const holder = spawn(process.execPath, [
            "-e",
            `const fs = require("fs");
             fs.writeFileSync(${JSON.stringify(lockFile)}, JSON.stringify({ pid: process.pid, host: require("os").hostname(), since: "now", token: "other" }), { flag: "wx" });
             setTimeout(() => { fs.writeFileSync(${JSON.stringify(p.file("prod"))}, ${JSON.stringify(servingStack({ a: D("1"), b: D("9") }))}); fs.rmSync(${JSON.stringify(lockFile)}); }, 300);`,
        ]);
        const exited = new Promise((resolve) => holder.on("exit", resolve));
        while (!fs.existsSync(lockFile)) await new Promise((r) => setTimeout(r, 5));
        const log: string[] = [];
        expect(main(["--from", "staging", "--to", "prod", "--service", "a"], p.root, (l) => log.push(l), { lockTimeoutMs: 5000 })).toBe(0);
        await exited;
        expect(fs.readFileSync(p.file("prod"), "utf8")).toBe(servingStack({ a: D("2"), b: D("9") }));
        expect(log.at(-1)).toBe("wrote stacks/Pulumi.prod.yaml (a ref): review and open a pull request");
    });

    it("writeFileAtomic replaces the file, keeps its mode and leaves no temporary file", () => {
        const dir = fs.mkdtempSync(path.join(os.tmpdir(), "atomic-"));
        const file = path.join(dir, "f.yaml");
        fs.writeFileSync(file, "a\n");
        fs.chmodSync(file, 0o640);
        writeFileAtomic(file, "b\r\n");
        expect(fs.readFileSync(file, "utf8")).toBe("b\r\n");
        expect(fs.statSync(file).mode & 0o777).toBe(0o640);
        expect(fs.readdirSync(dir)).toEqual(["f.yaml"]);
    });
});
