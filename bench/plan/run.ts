/**
 * Plan benchmark (npm run bench:plan): evaluation time and peak memory of the
 * program under Pulumi's mock runtime for synthetic build stacks with 1, 8, 64
 * and 256 image targets, beside two baselines that use none of our components:
 *   bare: the same number of bare resources (pulumi.CustomResource, no outputs);
 *   sdk:  the same provider resources (aws.ecr.Repository, docker-build Image ...)
 *         with the same inputs, registered flat: the SDK's own cost for this graph.
 * "ours/sdk" is what our components, config validation and Outputs add.
 *
 * Each measurement runs in a fresh process so peak RSS is its own. SDK and
 * project modules are loaded before the clock starts, so the figures compare
 * evaluation, not module loading.
 */
import { execFileSync } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import * as aws from "@pulumi/aws";
import * as dockerbuild from "@pulumi/docker-build";
import * as pulumi from "@pulumi/pulumi";
import { ROOT, cliConfig, evaluate, referencedStackOutputs, requireProgram, runUnderMocks } from "../../scripts/lib/mock-runtime";

const SIZES = [1, 8, 64, 256];
const TARGETS = ["cpu-avx2", "cpu-avx512", "arm64-neon", "cuda12"];

/** A build stack with `n` image × target pairs (images of up to four targets each). */
export function syntheticBuild(n: number): Record<string, unknown> {
    const images = [];
    for (let i = 0; i * TARGETS.length < n; i++) {
        const targets = TARGETS.slice(0, Math.min(TARGETS.length, n - i * TARGETS.length));
        images.push({ name: `img-${i}`, context: "images/inference-server", targets });
    }
    return { "ml-infra:build": { images } };
}

interface Sample {
    readonly ms: number;
    readonly resources: number;
    readonly peakMiB: number;
}

type Kind = "program" | "bare" | "sdk";

/** A custom resource the program registered: what the sdk baseline registers again, flat. */
interface Recorded {
    readonly type: string;
    readonly name: string;
    readonly inputs: Record<string, unknown>;
}

type Constructor = new (name: string, args: never, opts?: pulumi.CustomResourceOptions) => pulumi.CustomResource;

/** A resource with no declared outputs, of any type token. */
class Bare extends pulumi.CustomResource {
    constructor(type: string, name: string, props: pulumi.Inputs) {
        super(type, name, props);
    }
}
const CLASSES: Record<string, Constructor> = {
    "aws:ecr/repository:Repository": aws.ecr.Repository as unknown as Constructor,
    "aws:ecr/lifecyclePolicy:LifecyclePolicy": aws.ecr.LifecyclePolicy as unknown as Constructor,
    "aws:ecr/pullThroughCacheRule:PullThroughCacheRule": aws.ecr.PullThroughCacheRule as unknown as Constructor,
    "aws:ecr/repositoryCreationTemplate:RepositoryCreationTemplate": aws.ecr.RepositoryCreationTemplate as unknown as Constructor,
    "docker-build:index:Image": dockerbuild.Image as unknown as Constructor,
    "docker-build:index:Index": dockerbuild.Index as unknown as Constructor,
};

function preloadProject(): void {
    // Compile and load our modules (not index.ts, whose evaluation is what we time), one folder per config section.
    const files = fs.readdirSync(path.join(ROOT, "components"), { recursive: true, encoding: "utf8" }).filter((f) => f.endsWith(".ts"));
    for (const file of files) require(path.join(ROOT, "components", file));
}

async function child(kind: Kind, n: number, recordedFile: string): Promise<Sample> {
    preloadProject();
    // What the build stack reads (the runners stack's outputs), evaluated before the clock starts:
    // the figure is this stack's evaluation, not its references'.
    const stackOutputs = kind === "program" ? await referencedStackOutputs("build", syntheticBuild(n), requireProgram) : undefined;
    const start = process.hrtime.bigint();
    let resources: number;
    if (kind === "program") {
        const ev = await evaluate("build", { config: syntheticBuild(n), stackOutputs }, requireProgram);
        resources = ev.resources.length;
        const custom: Recorded[] = ev.resources
            .filter((r) => !r.type.startsWith("ml-infra:"))
            .map((r) => ({ type: r.type, name: r.name, inputs: r.inputs }));
        fs.writeFileSync(recordedFile, JSON.stringify({ total: resources, custom }));
    } else {
        const recorded = JSON.parse(fs.readFileSync(recordedFile, "utf8")) as { total: number; custom: Recorded[] };
        const ev = await runUnderMocks("build", cliConfig({}), () => {
            if (kind === "bare") {
                for (let i = 0; i < recorded.total; i++) new Bare("bench:index:Bare", `bare-${i}`, { index: i });
            } else {
                for (const r of recorded.custom) {
                    const Class = CLASSES[r.type];
                    if (Class) new Class(r.name, r.inputs as never);
                    else new Bare(r.type, r.name, r.inputs);
                }
            }
            return {};
        });
        resources = ev.resources.length;
    }
    const ms = Number(process.hrtime.bigint() - start) / 1e6;
    return { ms, resources, peakMiB: process.resourceUsage().maxRSS / 1024 };
}

function run(kind: Kind, n: number, recordedFile: string): Sample {
    const out = execFileSync(process.execPath, [...process.execArgv, __filename, "--child", kind, String(n), recordedFile], {
        cwd: path.resolve(__dirname, "../.."),
        encoding: "utf8",
        maxBuffer: 64 * 1024 * 1024,
    });
    return JSON.parse(out.trim().split("\n").pop() as string) as Sample;
}

function main(): void {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "bench-plan-"));
    const rows: string[][] = [
        ["targets", "resources", "ours ms", "res/s", "ours MiB", "sdk ms", "sdk MiB", "bare ms", "bare MiB", "ours/sdk", "ours/bare"],
    ];
    let previous: { n: number; ms: number } | undefined;
    const growth: string[] = [];
    for (const n of SIZES) {
        const recorded = path.join(dir, `recorded-${n}.json`);
        const program = run("program", n, recorded);
        const sdk = run("sdk", n, recorded);
        const bare = run("bare", n, recorded);
        rows.push([
            String(n),
            String(program.resources),
            program.ms.toFixed(0),
            ((program.resources / program.ms) * 1000).toFixed(0),
            program.peakMiB.toFixed(0),
            sdk.ms.toFixed(0),
            sdk.peakMiB.toFixed(0),
            bare.ms.toFixed(0),
            bare.peakMiB.toFixed(0),
            (program.ms / sdk.ms).toFixed(2),
            (program.ms / bare.ms).toFixed(2),
        ]);
        if (previous) growth.push(`${previous.n}->${n} targets: x${(n / previous.n).toFixed(0)} size, x${(program.ms / previous.ms).toFixed(1)} time`);
        previous = { n, ms: program.ms };
    }
    const widths = rows[0].map((_, c) => Math.max(...rows.map((r) => r[c].length)));
    for (const r of rows) console.log(r.map((cell, c) => cell.padStart(widths[c])).join("  "));
    console.log("");
    for (const g of growth) console.log(g);
    console.log("goals: near-linear growth, 256 targets under 5000 ms, ours/sdk at most 2.00");
}

if (require.main !== module) {
    // imported (e.g. by a profiler): do nothing
} else if (process.argv[2] === "--child") {
    const [, , , kind, n, recordedFile] = process.argv;
    child(kind as Kind, Number(n), recordedFile).then(
        (s) => {
            console.log(JSON.stringify(s));
            process.exit(0);
        },
        (e: Error) => {
            console.error(e);
            process.exit(1);
        },
    );
} else {
    main();
}
