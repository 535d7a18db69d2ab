/**
 * Build-cache benchmark for the reference inference server (npm run bench:build).
 *
 * Measures, on the real Docker engine that scripts/docker-env.sh prepares:
 *   1. cold build: empty builder (no cache records, no cache mounts), no images, no registry cache;
 *   2. code-change rebuild with a warm local cache (the builder of 1);
 *   3. code-change rebuild after `docker builder prune -af`, from the registry (inline) cache of 1;
 *      the engine keeps its images (a persistent runner whose builder was emptied);
 *   4. control: 3 without --cache-from (the registry cache is what makes 3 fast);
 *   5. code-change rebuild on an empty builder and an empty engine (every image removed too), from the
 *      registry cache: what an ephemeral CI runner does;
 *   6. the floor of 5 on this engine: `docker pull` of the runtime image into an empty engine;
 *   7. the same app built by a naive Dockerfile (bench/build-cache/Dockerfile.naive): cold, and a code change;
 * and prints the times, the ratios, the image sizes and whether the goals are met:
 *   empty-builder rebuild >= 20x faster than cold and within 2x of the warm rebuild;
 *   runtime image <= 50% of the naive one.
 *
 * Usage: npx tsx bench/build-cache/run.ts [--target cpu-avx2] [--runs 3] [--json out.json] [--strict]
 *   --runs    repetitions of the rebuild scenarios (the median is reported)
 *   --strict  exit 1 when a goal is not met
 *
 * It prunes the builder and removes every image of the engine (it holds the
 * same lock as the e2e suite while it runs).
 */
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { CATALOG, resolveTarget, targetBuildArgs } from "../../components/shared/hardware";
import {
    LOCAL_BASE_IMAGE,
    LOCAL_REGISTRY,
    REFERENCE_CONTEXT,
    acquireEngineLock,
    buildImage,
    docker,
    dockerAvailable,
    dockerfileSteps,
    imageSize,
    pruneBuilder,
    registryDelete,
    removeAllImages,
    type BuildResult,
    type ImageSpec,
} from "../../test/e2e/docker";

const ROOT = path.resolve(__dirname, "../..");
const CONTEXT = REFERENCE_CONTEXT;
const BASE_IMAGE = LOCAL_BASE_IMAGE;
const REPO = `${LOCAL_REGISTRY}/bench/inference`;

interface Options {
    target: string;
    runs: number;
    json?: string;
    strict: boolean;
}

function parseArgs(argv: readonly string[]): Options {
    const options: Options = { target: "cpu-avx2", runs: 3, strict: false };
    for (let i = 0; i < argv.length; i++) {
        const a = argv[i];
        const value = () => {
            const v = argv[++i];
            if (v === undefined) throw new Error(`${a} needs a value`);
            return v;
        };
        if (a === "--target") options.target = value();
        else if (a === "--runs") options.runs = Math.max(1, Number(value()));
        else if (a === "--json") options.json = value();
        else if (a === "--strict") options.strict = true;
        else throw new Error(`unknown argument ${a}; usage: run.ts [--target cpu-avx2] [--runs 3] [--json out.json] [--strict]`);
    }
    if (!CATALOG[options.target]) throw new Error(`unknown target ${options.target}; catalog: ${Object.keys(CATALOG).join(", ")}`);
    return options;
}

interface Measurement {
    readonly scenario: string;
    /** Median build time over the runs, ms (push excluded). */
    readonly ms: number;
    readonly allMs: readonly number[];
    readonly pushMs: number;
    readonly stepsRun: number;
    readonly steps: number;
    readonly note: string;
}

/** Scenario names. */
const S = {
    cold: "cold: empty builder, no cache",
    warm: "code change: warm local cache",
    pruned: "code change: builder pruned, registry cache",
    control: "control: builder pruned, no --cache-from",
    ephemeral: "code change: empty engine, registry cache",
    floor: "floor: pull the runtime image, empty engine",
    naiveCold: "naive: cold",
    naiveChange: "naive: code change, warm local cache",
} as const;

const median = (xs: readonly number[]) => {
    const s = [...xs].sort((a, b) => a - b);
    return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};
const secs = (ms: number) => `${(ms / 1000).toFixed(1)} s`;
const mb = (bytes: number) => `${(bytes / 1e6).toFixed(0)} MB`;

function log(message: string): void {
    process.stderr.write(`[bench] ${message}\n`);
}

/** A copy of the build context with a one-line code change in app/server.py. */
function changedContext(dir: string, marker: string): string {
    const context = path.join(dir, `ctx-${marker.replace(/\W+/g, "-")}`);
    fs.rmSync(context, { recursive: true, force: true });
    fs.cpSync(path.join(ROOT, CONTEXT), context, { recursive: true });
    fs.appendFileSync(path.join(context, "app/server.py"), `# bench: ${marker}\n`);
    return context;
}

async function emptyEngine(): Promise<void> {
    await pruneBuilder();
    const left = await removeAllImages();
    if (left > 0) throw new Error(`${left} images could not be removed (a container still uses them?)`);
}

function measurement(scenario: string, results: readonly BuildResult[], note: string): Measurement {
    const last = results[results.length - 1];
    const steps = dockerfileSteps(last.steps);
    return {
        scenario,
        ms: median(results.map((r) => r.ms)),
        allMs: results.map((r) => r.ms),
        pushMs: last.pushMs,
        stepsRun: steps.filter((s) => !s.cached).length,
        steps: steps.length,
        note,
    };
}

async function main(): Promise<number> {
    const options = parseArgs(process.argv.slice(2));
    const available = dockerAvailable({ images: [BASE_IMAGE] });
    if (!available.ok) {
        log(`cannot run: ${available.reason}`);
        return 2;
    }
    const release = await acquireEngineLock(`build-cache benchmark (pid ${process.pid})`);
    const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "bench-build-cache-"));
    try {
        const target = resolveTarget(options.target, CATALOG[options.target]);
        const cacheRef = `${LOCAL_REGISTRY}/bench/cache:${target.name}`;
        const spec: ImageSpec = {
            context: { location: CONTEXT },
            dockerfile: { location: `${CONTEXT}/Dockerfile` },
            target: target.stage,
            platforms: [target.platform],
            buildArgs: targetBuildArgs(target, BASE_IMAGE, BASE_IMAGE),
            tags: [`${REPO}:${target.name}`],
            cacheFrom: [{ registry: { ref: cacheRef } }],
            cacheTo: [{ registry: { ref: cacheRef } }],
            push: true,
        };
        const withContext = (context: string, tag: string): ImageSpec => ({
            ...spec,
            context: { location: context },
            dockerfile: { location: path.join(context, "Dockerfile") },
            tags: [tag],
            cacheTo: [],
            push: false,
        });
        const results: Measurement[] = [];
        const engine = (await docker(["version", "--format", "{{.Server.Version}}"])).stdout.trim();
        log(`engine ${engine}, ${os.cpus().length} CPUs, target ${target.name}, ${options.runs} run(s) per rebuild scenario`);
        const rebuilds = async (label: string, prepare: () => Promise<void>, cacheFrom = true): Promise<BuildResult[]> => {
            const out: BuildResult[] = [];
            for (let i = 0; i < (cacheFrom ? options.runs : 1); i++) {
                await prepare();
                const changed = withContext(changedContext(tmp, `${label} ${i} ${Date.now()}`), `${REPO}:${label}`);
                out.push(await buildImage(cacheFrom ? changed : { ...changed, cacheFrom: [] }, { cwd: ROOT }));
            }
            return out;
        };

        log("1/7 cold build (empty builder, no images, no registry cache) ...");
        await emptyEngine();
        for (const ref of [cacheRef, `${REPO}:${target.name}`]) await registryDelete(ref);
        const cold = await buildImage(spec, { cwd: ROOT });
        results.push(measurement(S.cold, [cold], `then pushed with its inline cache in ${secs(cold.pushMs)}`));
        const runtimeSize = await imageSize(cold.tags[0]);

        log("2/7 code-change rebuilds with the warm local cache ...");
        results.push(measurement(S.warm, await rebuilds("warm", async () => {}), "the builder of the cold build"));

        log("3/7 code-change rebuilds after docker builder prune -af, from the registry cache ...");
        results.push(measurement(S.pruned, await rebuilds("pruned", pruneBuilder), "builder pruned; the engine keeps its images (persistent runner)"));

        log("4/7 control: the same without --cache-from ...");
        results.push(measurement(S.control, await rebuilds("control", pruneBuilder, false), "no registry cache: everything runs again"));

        log("5/7 code-change rebuilds on an empty builder and an empty engine, from the registry cache ...");
        results.push(measurement(S.ephemeral, await rebuilds("ephemeral", emptyEngine), "builder pruned and every image removed (ephemeral runner)"));

        log("6/7 floor: docker pull of the runtime image into an empty engine ...");
        const pulls: number[] = [];
        for (let i = 0; i < options.runs; i++) {
            await emptyEngine();
            pulls.push((await docker(["pull", "--quiet", cold.tags[0]], { timeoutMs: 5 * 60_000 })).ms);
        }
        const baseSize = await docker(["pull", "--quiet", BASE_IMAGE], { timeoutMs: 5 * 60_000 }).then(() => imageSize(BASE_IMAGE));
        results.push({ scenario: S.floor, ms: median(pulls), allMs: pulls, pushMs: 0, stepsRun: 0, steps: 0, note: "unpacking the image's layers into the engine: an empty engine cannot rebuild faster" });

        log("7/7 the naive Dockerfile: cold, then a code change ...");
        await emptyEngine();
        const naiveSpec: ImageSpec = {
            context: { location: CONTEXT },
            dockerfile: { location: "bench/build-cache/Dockerfile.naive" },
            buildArgs: { BASE_IMAGE, KERNEL_CFLAGS: spec.buildArgs?.KERNEL_CFLAGS ?? "-O2", TARGET_NAME: target.name, REQUIRED_CPU_FEATURES: target.cpuFeatures.join(" ") },
            tags: [`${REPO}:naive`],
            push: false,
        };
        const naiveCold = await buildImage(naiveSpec, { cwd: ROOT });
        results.push(measurement(S.naiveCold, [naiveCold], "one stage, COPY . . first, no cache mounts"));
        const naiveContext = changedContext(tmp, `naive ${Date.now()}`);
        const naiveWarm = await buildImage(
            { ...naiveSpec, context: { location: naiveContext }, dockerfile: { location: path.join(ROOT, "bench/build-cache/Dockerfile.naive") }, tags: [`${REPO}:naive-changed`] },
            { cwd: ROOT },
        );
        results.push(measurement(S.naiveChange, [naiveWarm], "re-runs apt and the compiler"));
        const naiveSize = await imageSize(naiveCold.tags[0]);

        // report
        const rows = results.map((r) => [r.scenario, secs(r.ms), r.allMs.length > 1 ? r.allMs.map((m) => (m / 1000).toFixed(1)).join(" / ") : "", r.steps ? `${r.stepsRun}/${r.steps}` : "-", r.note]);
        const header = ["scenario", "time", "runs (s)", "steps run", "note"];
        const widths = header.map((h, i) => Math.max(h.length, ...rows.map((row) => row[i].length)));
        const line = (cells: readonly string[]) => cells.map((c, i) => c.padEnd(widths[i])).join("  ").trimEnd();
        const out: string[] = [];
        out.push(`Build-cache benchmark: ${target.name} (${target.stage}), Docker ${engine}, ${os.cpus().length} CPUs, base ${BASE_IMAGE}`);
        out.push("");
        out.push(line(header));
        out.push(line(widths.map((w) => "-".repeat(w))));
        for (const row of rows) out.push(line(row));

        const ms = (s: string) => (results.find((r) => r.scenario === s) as Measurement).ms;
        const [coldMs, warmMs, prunedMs, ephemeralMs] = [ms(S.cold), ms(S.warm), ms(S.pruned), ms(S.ephemeral)];
        const sizeRatio = runtimeSize / naiveSize;
        const goals = [
            { goal: "empty-builder rebuild >= 20x faster than cold (builder pruned, images kept)", value: `${(coldMs / prunedMs).toFixed(1)}x`, met: coldMs / prunedMs >= 20 },
            { goal: "empty-builder rebuild within 2x of the warm rebuild (builder pruned, images kept)", value: `${(prunedMs / warmMs).toFixed(1)}x`, met: prunedMs / warmMs <= 2 },
            { goal: "empty-builder rebuild >= 20x faster than cold (ephemeral runner: no images either)", value: `${(coldMs / ephemeralMs).toFixed(1)}x`, met: coldMs / ephemeralMs >= 20 },
            { goal: "empty-builder rebuild within 2x of the warm rebuild (ephemeral runner)", value: `${(ephemeralMs / warmMs).toFixed(1)}x`, met: ephemeralMs / warmMs <= 2 },
            { goal: "runtime image <= 50% of the naive one", value: `${(sizeRatio * 100).toFixed(0)}% (${mb(runtimeSize)} vs ${mb(naiveSize)})`, met: sizeRatio <= 0.5 },
        ];
        out.push("");
        out.push(`ratios: cold / rebuild: warm ${(coldMs / warmMs).toFixed(0)}x, builder pruned ${(coldMs / prunedMs).toFixed(1)}x, ephemeral runner ${(coldMs / ephemeralMs).toFixed(1)}x`);
        out.push(`        rebuild / warm rebuild: builder pruned ${(prunedMs / warmMs).toFixed(1)}x, ephemeral runner ${(ephemeralMs / warmMs).toFixed(1)}x (floor: ${(ms(S.floor) / warmMs).toFixed(1)}x)`);
        out.push(`        registry cache vs none after a prune: ${(ms(S.control) / prunedMs).toFixed(0)}x; naive code change vs warm code change: ${(ms(S.naiveChange) / warmMs).toFixed(0)}x`);
        out.push(`sizes:  runtime image ${mb(runtimeSize)}, naive image ${mb(naiveSize)}, base ${mb(baseSize)}`);
        out.push("");
        for (const g of goals) out.push(`${g.met ? "MET    " : "NOT MET"}  ${g.goal}: ${g.value}`);
        process.stdout.write(`${out.join("\n")}\n`);

        if (options.json) {
            fs.writeFileSync(
                options.json,
                `${JSON.stringify({ engine, cpus: os.cpus().length, target: target.name, results, sizes: { runtime: runtimeSize, naive: naiveSize }, goals }, null, 2)}\n`,
            );
        }
        return options.strict && goals.some((g) => !g.met) ? 1 : 0;
    } finally {
        fs.rmSync(tmp, { recursive: true, force: true });
        release();
    }
}

main().then(
    (code) => process.exit(code),
    (error: Error) => {
        process.stderr.write(`[bench] failed: ${error.message}\n`);
        process.exit(1);
    },
);
