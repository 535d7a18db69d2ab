/**
 * Concurrent promotes of the same stack file, in separate processes, lose no
 * update: each waits for the lock, re-reads the file and writes atomically,
 * or fails with a clear error and changes nothing.
 */
import { type ChildProcessWithoutNullStreams, spawn } from "node:child_process";
import { createHash } from "node:crypto";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { describe, expect, it } from "vitest";
import { ROOT } from "./harness";
import { PROJECT, refOf } from "./fixtures";

const N = 8;
const ref = (n: number) => `123456789012.dkr.ecr.us-east-1.amazonaws.com/ml/inference@sha256:${createHash("sha256").update(String(n)).digest("hex")}`;

function stack(refs: readonly string[]): string {
    const services = refs
        .map((r, i) => `      - name: svc-${i}\n        image: inference\n        target: cpu-avx2\n        ref: ${r}   # svc-${i}\n        model: {bucket: ml-models-123456789012, prefix: classifier/1}\n`)
        .join("");
    return `# ${N} services\nconfig:\n  aws:region: us-east-1\n  ${PROJECT}:network:\n    cidr: 10.30.0.0/16\n    availabilityZones: [us-east-1a, us-east-1b]\n    natGateways: single\n  ${PROJECT}:serve:\n    requirePinned: true\n    sidecarImages: {model-sync: ${refOf("model-sync")}}\n    clients: {cidrs: [10.30.0.0/16]}\n    loadBalancer: {protocol: http}\n    services:\n${services}`;
}

interface Run {
    readonly index: number;
    readonly code: number | null;
    readonly stdout: string;
    readonly stderr: string;
}

/** A process that loads promote, says "ready", and runs it when told to (so all of them start at the same moment). */
function promoteProcess(root: string, args: readonly string[]): { child: ChildProcessWithoutNullStreams; ready: Promise<void>; done: Promise<Omit<Run, "index">> } {
    const code = `
        const { main } = require(${JSON.stringify(path.join(ROOT, "scripts/promote.ts"))});
        process.stdout.write("ready\\n");
        process.stdin.once("data", () => {
            let exit = 1;
            try {
                exit = main(${JSON.stringify(args)}, ${JSON.stringify(root)}, (line) => process.stdout.write(line + "\\n"));
            } catch (error) {
                process.stderr.write("promote: " + error.message + "\\n");
            }
            process.stdin.destroy();
            process.exitCode = exit;
        });`;
    const child = spawn(process.execPath, ["--import", "tsx", "-e", code], { cwd: ROOT });
    let stdout = "";
    let stderr = "";
    let markReady: () => void = () => undefined;
    const ready = new Promise<void>((resolve) => (markReady = resolve));
    child.stdout.on("data", (d: Buffer) => {
        stdout += d.toString();
        if (stdout.includes("ready\n")) markReady();
    });
    child.stderr.on("data", (d: Buffer) => (stderr += d.toString()));
    const done = new Promise<Omit<Run, "index">>((resolve) => child.on("close", (exitCode) => resolve({ code: exitCode, stdout, stderr })));
    child.on("exit", () => markReady());
    return { child, ready, done };
}

describe("concurrent promotes of one stack file", () => {
    it(`${N} processes, each promoting a different service at the same moment: every change is kept, every process reports`, async () => {
        const root = fs.mkdtempSync(path.join(os.tmpdir(), "promote-concurrent-"));
        fs.copyFileSync(path.join(ROOT, "Pulumi.yaml"), path.join(root, "Pulumi.yaml"));
        fs.mkdirSync(path.join(root, "stacks"));
        const oldRefs = Array.from({ length: N }, (_, i) => ref(100 + i));
        const newRefs = Array.from({ length: N }, (_, i) => ref(200 + i));
        fs.writeFileSync(path.join(root, "stacks/Pulumi.staging.yaml"), stack(newRefs));
        const dest = path.join(root, "stacks/Pulumi.prod.yaml");
        fs.writeFileSync(dest, stack(oldRefs));

        // Even processes wait for the lock; odd ones give up at once if it is taken (and must then say so and change nothing).
        const processes = Array.from({ length: N }, (_, i) =>
            promoteProcess(root, ["--from", "staging", "--to", "prod", "--service", `svc-${i}`, ...(i % 2 ? ["--lock-timeout", "0"] : [])]),
        );
        await Promise.all(processes.map((p) => p.ready));
        for (const p of processes) p.child.stdin.write("go\n");
        const runs: Run[] = (await Promise.all(processes.map((p) => p.done))).map((r, index) => ({ ...r, index }));

        const final = fs.readFileSync(dest, "utf8");
        const expectedRefs = runs.map((r) => (r.code === 0 ? newRefs[r.index] : oldRefs[r.index]));
        for (const r of runs) {
            if (r.index % 2 === 0 || r.code === 0) {
                expect(r, r.stderr).toMatchObject({ code: 0 });
                expect(r.stdout).toContain(`svc-${r.index}: ref ${oldRefs[r.index]} -> ${newRefs[r.index]}`);
                expect(r.stdout).toContain(`wrote stacks/Pulumi.prod.yaml (svc-${r.index} ref)`);
            } else {
                expect(r.code).toBe(1);
                expect(r.stderr).toMatch(/^promote: .*\.Pulumi\.prod\.yaml\.lock is held by pid \d+ .*Another promote is still running/);
            }
        }
        // Every reported write is in the file, byte for byte; nothing else changed.
        expect(final).toBe(stack(expectedRefs));
        expect(runs.filter((r) => r.index % 2 === 0).every((r) => r.code === 0)).toBe(true);
        expect(fs.readdirSync(path.join(root, "stacks")).sort()).toEqual(["Pulumi.prod.yaml", "Pulumi.staging.yaml"]);
    }, 60_000);
});
