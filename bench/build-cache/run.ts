/**
 * Build-cache benchmark for the reference inference server (npm run bench:build).
 *
 * Builds with buildx on real BuildKit (v0.23, the local runner's code: the
 * same buildkitd.toml, TLS and remote-driver builder as the runner pools),
 * with exactly what the program asks docker-build for: the bench evaluates
 * the local stack (stacks/Pulumi.local.yaml, one image, one target) under
 * Pulumi's mock runtime and turns the registered docker-build `Image` inputs
 * into a buildx command line (test/e2e/buildx.ts), so the cache settings are
 * those of components/build/target-image.ts (registry cache export mode=max,
 * image-manifest, OCI media types, import from the same ref; push to the
 * registry on 127.0.0.1:5000), never restated here.
 *
 * Every runner here is a throw-away buildkitd started for the bench (a fresh
 * state directory, its own loopback port, CA and builder); the local stack's
 * runner is not touched. Scenarios:
 *   1. cold: a fresh runner and no registry cache;
 *   2. code change (one line of app/server.py), warm: the runner of 1;
 *   3. code change after `buildctl prune --all` on that runner (a persistent
 *      runner whose BuildKit state was emptied), from the registry cache;
 *   4. control: 3 without the registry cache import;
 *   5. code change on an ephemeral runner: a fresh buildkitd, nothing but the
 *      registry cache (its start-up is timed on its own);
 *   6. floor of 5: a fresh runner and no change at all (the fixed cost of an
 *      ephemeral runner: frontend, cache manifest, export and push);
 *   7. the naive Dockerfile (bench/build-cache/Dockerfile.naive): cold, then a
 *      code change, on a pruned runner, without registry cache;
 * and prints per scenario the median, min and max wall time of the whole
 * `buildx build` (build, export, push, cache export), the time to the first
 * byte of the push, the push itself, what BuildKit pulled, the steps that
 * ran, the ratios, the image sizes (compressed, as pushed), whether the goals
 * are met, and the figures recorded with Docker 20.10 for comparison:
 *   ephemeral rebuild >= 20x faster than cold and <= 2x the warm rebuild;
 *   runtime image <= 50% of the naive one.
 *
 * Usage: npx tsx bench/build-cache/run.ts [--target cpu-avx2] [--runs 5] [--cold-runs 3] [--json out.json] [--strict]
 *   --runs       repetitions of every rebuild scenario (median, min, max are reported)
 *   --cold-runs  repetitions of the cold build (each on a fresh runner)
 *   --strict     exit 1 when a goal is not met
 *
 * Needs root (buildkitd), `npm run tools` and `sudo npm run docker:env` (the
 * registry, the base image, the Dockerfile frontend image). Holds the same
 * lock as the real-engine suites while it runs.
 */
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { execFileSync } from "node:child_process";
import { CATALOG } from "../../components/shared/hardware";
import { ROOT, evaluate, stackFileConfig } from "../../scripts/lib/mock-runtime";
import { buildctlTcpArgs, freeLoopbackPort, removeLocalRunner, startLocalRunner, tool } from "../../scripts/lib/local-runner";
import { type BuildxRun, type ImageInputs, buildErrors, buildxArgs, dockerfileSteps, pulledBlobs, pushWindow, runBuildx, vertexMs } from "../../test/e2e/buildx";
import { LOCAL_BASE_IMAGE, LOCAL_REGISTRY, acquireEngineLock, dockerAvailable, httpRequest, registryDelete } from "../../test/e2e/docker";

const CONTEXT = "images/inference-server";
const IMAGE = "bench-inference";
const FRONTEND = (JSON.parse(fs.readFileSync(path.join(ROOT, "tools/versions.json"), "utf8")) as { tools: Record<string, { version: string; channel: string }> }).tools["dockerfile-frontend"];
const FRONTEND_IMAGE = `${LOCAL_REGISTRY}/docker/dockerfile:${FRONTEND.version}-${FRONTEND.channel}`;

/**
 * Recorded with Docker 20.10 (`docker build`, inline cache, the engine's own
 * image store) on this machine, from README's Benchmarks section; not re-measured.
 */
const DOCKER_2010_RECORDED = { coldS: 17.6, warmS: 0.3, prunedS: 0.5, emptyEngineS: 2.7, pullRuntimeS: 3.9, runtimeMB: 139, naiveMB: 426 } as const;

interface Options {
    target: string;
    runs: number;
    coldRuns: number;
    json?: string;
    strict: boolean;
}

function parseArgs(argv: readonly string[]): Options {
    const options: Options = { target: "cpu-avx2", runs: 5, coldRuns: 3, strict: false };
    for (let i = 0; i < argv.length; i++) {
        const a = argv[i];
        const value = () => {
            const v = argv[++i];
            if (v === undefined) throw new Error(`${a} needs a value`);
            return v;
        };
        if (a === "--target") options.target = value();
        else if (a === "--runs") options.runs = Math.max(1, Number(value()));
        else if (a === "--cold-runs") options.coldRuns = Math.max(1, Number(value()));
        else if (a === "--json") options.json = value();
        else if (a === "--strict") options.strict = true;
        else throw new Error(`unknown argument ${a}; usage: run.ts [--target cpu-avx2] [--runs 5] [--cold-runs 3] [--json out.json] [--strict]`);
    }
    if (!CATALOG[options.target]) throw new Error(`unknown target ${options.target}; catalog: ${Object.keys(CATALOG).join(", ")}`);
    return options;
}

function log(message: string): void {
    process.stderr.write(`[bench] ${message}\n`);
}

const median = (xs: readonly number[]) => {
    const s = [...xs].sort((a, b) => a - b);
    return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};
const secs = (ms: number) => (Number.isFinite(ms) ? `${(ms / 1000).toFixed(2)} s` : "-");
const load = () => os.loadavg().map((l) => l.toFixed(2)).join(" ");
const mb = (bytes: number) => `${(bytes / 1e6).toFixed(1)} MB`;

// ------------------------------------------------------------------ what the program builds

/** The docker-build Image inputs the program registers for the bench image on the local stack (mock runtime). */
async function programInputs(target: string): Promise<ImageInputs> {
    const local = stackFileConfig("local");
    const build = local["ml-infra:build"] as Record<string, unknown>;
    const config = { "ml-infra:build": { ...build, images: [{ name: IMAGE, context: CONTEXT, targets: [target] }] } };
    const before = process.cwd();
    process.chdir(ROOT);
    try {
        const ev = await evaluate("local", { config });
        const images = ev.ofType("docker-build:index:Image");
        if (images.length !== 1) throw new Error(`expected one docker-build Image, the program registered ${images.length}`);
        return images[0].inputs as ImageInputs;
    } finally {
        process.chdir(before);
    }
}

// ------------------------------------------------------------------ runners

interface Runner {
    readonly name: string;
    readonly stateDir: string;
    readonly port: number;
    readonly builder: string;
    readonly startMs: number;
}

const runners: Runner[] = [];
let serial = 0;

/** A throw-away runner: fresh state directory, its own port, certificates and builder. */
async function freshRunner(label: string): Promise<Runner> {
    const stateDir = fs.mkdtempSync(path.join(os.tmpdir(), `ml-bench-${label}-`));
    const port = await freeLoopbackPort();
    const builder = `ml-bench-${process.pid}-${++serial}`;
    const t0 = Date.now();
    await startLocalRunner({ stateDir, port, builder, registry: LOCAL_REGISTRY, cdi: "stand-in" });
    const runner = { name: label, stateDir, port, builder, startMs: Date.now() - t0 };
    runners.push(runner);
    return runner;
}

async function dropRunner(r: Runner): Promise<void> {
    await removeLocalRunner(r.stateDir, r.builder);
    runners.splice(runners.indexOf(r), 1);
}

/** `buildctl prune --all` on a runner: every cache record and cache mount goes. */
function prune(r: Runner): void {
    execFileSync(tool("buildctl"), [...buildctlTcpArgs(r.stateDir, r.port), "prune", "--all"], { stdio: "ignore", timeout: 5 * 60_000 });
}

// ------------------------------------------------------------------ builds

interface Build {
    readonly ms: number;
    /** From the start of the command to the first byte of the image push (BuildKit's `pushing layers` began). */
    readonly pushTtfbMs: number;
    /** The push itself (`pushing layers` .. `pushing manifest` done). */
    readonly pushMs: number;
    /** Bytes BuildKit pulled for the build, without the Dockerfile frontend image. */
    readonly pulledBytes: number;
    /** Bytes of the frontend image pulled (a fresh runner pulls it once). */
    readonly frontendBytes: number;
    /** Resolving and loading the Dockerfile frontend the syntax line names (pull and unpack on a fresh runner). */
    readonly frontendMs: number;
    /** BuildKit's `exporting cache to registry` (after the push). */
    readonly cacheExportMs: number;
    readonly stepsRun: number;
    readonly steps: number;
    readonly rerun: readonly string[];
}

function summarise(r: BuildxRun): Build {
    const steps = dockerfileSteps(r.progress);
    const push = pushWindow(r.progress);
    const blobs = pulledBlobs(r.progress);
    const frontend = (v: string) => v.startsWith("docker-image://docker.io/docker/dockerfile");
    return {
        ms: r.ms,
        pushTtfbMs: push.started !== undefined ? push.started - r.startedAt : NaN,
        pushMs: push.started !== undefined && push.completed !== undefined ? push.completed - push.started : NaN,
        pulledBytes: blobs.filter((b) => !frontend(b.vertex)).reduce((a, b) => a + b.bytes, 0),
        frontendBytes: blobs.filter((b) => frontend(b.vertex)).reduce((a, b) => a + b.bytes, 0),
        frontendMs: vertexMs(r.progress, /docker-image:\/\/docker\.io\/docker\/dockerfile:/),
        cacheExportMs: vertexMs(r.progress, /^exporting cache to registry$/),
        stepsRun: steps.filter((s) => !s.cached).length,
        steps: steps.length,
        rerun: steps.filter((s) => !s.cached).map((s) => s.name),
    };
}

/** A copy of the build context with a one-line code change in app/server.py. */
function changedContext(dir: string, marker: string): string {
    const context = path.join(dir, `ctx-${marker.replace(/\W+/g, "-")}`);
    fs.rmSync(context, { recursive: true, force: true });
    fs.cpSync(path.join(ROOT, CONTEXT), context, { recursive: true });
    fs.appendFileSync(path.join(context, "app/server.py"), `# bench: ${marker}\n`);
    return context;
}

interface Scenario {
    readonly name: string;
    readonly builds: readonly Build[];
    readonly note: string;
    /** Start-up of the fresh runners, not part of the build times. */
    readonly runnerStartMs?: readonly number[];
}

function stat(xs: readonly number[]) {
    const finite = xs.filter((x) => Number.isFinite(x));
    return finite.length === 0 ? { median: NaN, min: NaN, max: NaN } : { median: median(finite), min: Math.min(...finite), max: Math.max(...finite) };
}

// ------------------------------------------------------------------ registry sizes

const MANIFEST_TYPES = "application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json";

/** Compressed size of an image as pushed: its layers and config, from the registry's manifest. */
async function pushedSize(ref: string): Promise<number> {
    const m = /^([^/]+)\/(.+):([^:/]+)$/.exec(ref);
    if (!m) throw new Error(`not a tag: ${ref}`);
    const res = await httpRequest(`http://${m[1]}/v2/${m[2]}/manifests/${m[3]}`, { headers: { Accept: MANIFEST_TYPES }, timeoutMs: 10_000 });
    if (res.status !== 200) throw new Error(`${ref}: HTTP ${res.status}`);
    const manifest = JSON.parse(res.body) as { config: { size: number }; layers: Array<{ size: number }> };
    return manifest.config.size + manifest.layers.reduce((a, l) => a + l.size, 0);
}

// ------------------------------------------------------------------ main

async function main(): Promise<number> {
    const options = parseArgs(process.argv.slice(2));
    const available = dockerAvailable({ images: [LOCAL_BASE_IMAGE, FRONTEND_IMAGE] });
    if (!available.ok) {
        log(`cannot run: ${available.reason}`);
        return 2;
    }
    if (process.getuid?.() !== 0) {
        log("cannot run: the bench starts its own buildkitd runners, which needs root (sudo npm run bench:build)");
        return 2;
    }
    const buildx = tool("buildx");
    const inputs = await programInputs(options.target);
    const tag = inputs.tags?.[0] ?? "";
    const cacheRef = inputs.cacheTo?.[0]?.registry?.ref ?? "";
    if (!tag || !cacheRef) throw new Error("the program registered no tag or no registry cache export");
    const release = await acquireEngineLock(`build-cache benchmark (pid ${process.pid})`, 30 * 60_000);
    const loadBefore = load();
    const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "bench-build-cache-"));
    try {
        const cacheFlags = buildxArgs(inputs, { cwd: ROOT }).flatMap((a, i, all) => (a === "--cache-to" || a === "--cache-from" ? [`${a} ${all[i + 1]}`] : []));
        log(`target ${options.target} (${inputs.target}, ${inputs.platforms?.join(",")}), ${os.cpus().length} CPUs, ${options.runs} run(s) per rebuild scenario, ${options.coldRuns} cold`);
        log(`the program's cache settings (components/build/target-image.ts, via the registered docker-build Image): ${cacheFlags.join(" ")}; push ${tag}`);

        const build = async (runner: Runner, o: { context?: string; noCacheFrom?: boolean; inputs?: ImageInputs } = {}): Promise<Build> => {
            const args = buildxArgs(o.inputs ?? inputs, { cwd: ROOT, builder: runner.builder, context: o.context, noCacheFrom: o.noCacheFrom });
            const r = await runBuildx(buildx, args, { timeoutMs: 60 * 60_000 });
            if (r.code !== 0) throw new Error(`buildx build failed on ${runner.name}:\n${buildErrors(r)}`);
            return summarise(r);
        };
        const scenarios: Scenario[] = [];
        const change = (label: string, i: number) => changedContext(tmp, `${label} ${i} ${Date.now()}`);

        log("1/7 cold: fresh runners, no registry cache ...");
        const cold: Build[] = [];
        const coldStarts: number[] = [];
        let runner: Runner | undefined;
        for (let i = 0; i < options.coldRuns; i++) {
            if (runner) await dropRunner(runner);
            for (const ref of [cacheRef, tag]) await registryDelete(ref);
            runner = await freshRunner("cold");
            coldStarts.push(runner.startMs);
            cold.push(await build(runner));
        }
        if (!runner) throw new Error("no cold run");
        scenarios.push({ name: "cold: fresh runner, no registry cache", builds: cold, note: "apt, compilers, model: everything runs", runnerStartMs: coldStarts });
        const runtimeSize = await pushedSize(tag);

        log("2/7 code change, warm runner ...");
        const warm: Build[] = [];
        for (let i = 0; i < options.runs; i++) warm.push(await build(runner, { context: change("warm", i) }));
        scenarios.push({ name: "code change: warm runner", builds: warm, note: "the runner of the cold build" });

        log("3/7 code change after buildctl prune --all, from the registry cache ...");
        const pruned: Build[] = [];
        for (let i = 0; i < options.runs; i++) {
            prune(runner);
            pruned.push(await build(runner, { context: change("pruned", i) }));
        }
        scenarios.push({ name: "code change: runner pruned, registry cache", builds: pruned, note: "persistent runner, BuildKit state emptied" });

        log("4/7 control: the same without the registry cache import ...");
        prune(runner);
        const control = [await build(runner, { context: change("control", 0), noCacheFrom: true })];
        scenarios.push({ name: "control: runner pruned, no cache import", builds: control, note: "everything runs again" });

        log("5/7 code change on ephemeral runners (fresh buildkitd, nothing but the registry cache) ...");
        const ephemeral: Build[] = [];
        const ephemeralStarts: number[] = [];
        let lastContext = "";
        for (let i = 0; i < options.runs; i++) {
            const fresh = await freshRunner("ephemeral");
            ephemeralStarts.push(fresh.startMs);
            lastContext = change("ephemeral", i);
            ephemeral.push(await build(fresh, { context: lastContext }));
            await dropRunner(fresh);
        }
        scenarios.push({ name: "code change: ephemeral runner, registry cache", builds: ephemeral, note: "fresh state dir, port, TLS; runner start-up not included", runnerStartMs: ephemeralStarts });

        log("6/7 floor: ephemeral runners, nothing changed ...");
        const floor: Build[] = [];
        const floorStarts: number[] = [];
        for (let i = 0; i < options.runs; i++) {
            const fresh = await freshRunner("floor");
            floorStarts.push(fresh.startMs);
            floor.push(await build(fresh, { context: lastContext }));
            await dropRunner(fresh);
        }
        scenarios.push({ name: "floor: ephemeral runner, no change", builds: floor, note: "fixed cost: frontend, cache manifest, export, push", runnerStartMs: floorStarts });

        log("7/7 the naive Dockerfile: cold, then a code change (pruned runner, no registry cache) ...");
        prune(runner);
        const naiveTag = tag.replace(/:[^:/]+$/, ":naive");
        const naiveInputs: ImageInputs = {
            ...inputs,
            target: undefined,
            dockerfile: { location: "bench/build-cache/Dockerfile.naive" },
            buildArgs: Object.fromEntries(Object.entries(inputs.buildArgs ?? {}).filter(([k]) => ["BASE_IMAGE", "KERNEL_CFLAGS", "TARGET_NAME", "REQUIRED_CPU_FEATURES"].includes(k))),
            tags: [naiveTag],
            cacheFrom: [],
            cacheTo: [],
        };
        const naiveCold = await build(runner, { inputs: naiveInputs });
        const naiveContext = change("naive", 0);
        const naiveChange = await build(runner, { inputs: naiveInputs, context: naiveContext });
        scenarios.push({ name: "naive: cold", builds: [naiveCold], note: "one stage, COPY . . first, no cache mounts" });
        scenarios.push({ name: "naive: code change, warm runner", builds: [naiveChange], note: "re-runs apt and the compiler" });
        const naiveSize = await pushedSize(naiveTag);
        const baseSize = await pushedSize(LOCAL_BASE_IMAGE);

        // ------------------------------------------------------------ report
        const rows = scenarios.map((s) => {
            const t = stat(s.builds.map((b) => b.ms));
            const ttfb = stat(s.builds.map((b) => b.pushTtfbMs));
            const push = stat(s.builds.map((b) => b.pushMs));
            const pulled = stat(s.builds.map((b) => b.pulledBytes));
            const frontend = stat(s.builds.map((b) => b.frontendMs));
            const cacheExport = stat(s.builds.map((b) => b.cacheExportMs));
            const last = s.builds[s.builds.length - 1];
            return [
                s.name,
                secs(t.median),
                s.builds.length > 1 ? `${(t.min / 1000).toFixed(2)} / ${(t.max / 1000).toFixed(2)}` : "",
                String(s.builds.length),
                secs(ttfb.median),
                secs(push.median),
                secs(cacheExport.median),
                secs(frontend.median),
                mb(pulled.median),
                `${last.stepsRun}/${last.steps}`,
                s.runnerStartMs ? secs(median(s.runnerStartMs)) : "",
                s.note,
            ];
        });
        const header = ["scenario", "median", "min / max (s)", "runs", "push TTFB", "push", "cache export", "frontend", "pulled", "steps run", "runner start", "note"];
        const widths = header.map((h, i) => Math.max(h.length, ...rows.map((row) => row[i].length)));
        const line = (cells: readonly string[]) => cells.map((c, i) => c.padEnd(widths[i])).join("  ").trimEnd();
        const out: string[] = [];
        const version = /BuildKit version:\s+(\S+)/.exec(execFileSync(buildx, ["inspect", "--bootstrap", runner.builder], { encoding: "utf8" }))?.[1] ?? "?";
        out.push(`Build-cache benchmark: ${options.target} (${inputs.target}), BuildKit ${version} (buildx, local runners), ${os.cpus().length} CPUs, base ${LOCAL_BASE_IMAGE}`);
        out.push(`cache (from the program): ${cacheFlags.join(" ")}`);
        out.push(`load average (1, 5, 15 min) before ${loadBefore}, after ${load()}: other work on this machine slows the short rebuilds most`);
        out.push("times (medians): the whole buildx build (build, export, push, cache export); push TTFB: from its start to the first byte of the push; cache export: after the push;");
        out.push(`       frontend: resolving and loading ${FRONTEND_IMAGE.replace(LOCAL_REGISTRY, "docker.io")} (the syntax line; a fresh runner pulls ${mb(median(ephemeral.map((b) => b.frontendBytes)))}); pulled: other blobs BuildKit downloaded`);
        out.push("");
        out.push(line(header));
        out.push(line(widths.map((w) => "-".repeat(w))));
        for (const row of rows) out.push(line(row));
        const d = DOCKER_2010_RECORDED;
        out.push(
            line([
                "Docker 20.10 (recorded, README; not re-measured)",
                `cold ${d.coldS} s, warm change ${d.warmS} s, pruned builder ${d.prunedS} s, empty engine ${d.emptyEngineS} s (pull alone ${d.pullRuntimeS} s); inline cache, push not timed; image ${d.runtimeMB} MB vs naive ${d.naiveMB} MB (uncompressed)`,
            ]),
        );

        const ms = (name: string) => median((scenarios.find((s) => s.name.startsWith(name)) as Scenario).builds.map((b) => b.ms));
        const [coldMs, warmMs, prunedMs, ephemeralMs, floorMs] = [ms("cold"), ms("code change: warm"), ms("code change: runner pruned"), ms("code change: ephemeral"), ms("floor")];
        const sizeRatio = runtimeSize / naiveSize;
        const ephemeralPulled = median(ephemeral.map((b) => b.pulledBytes));
        const goals = [
            { goal: "ephemeral rebuild >= 20x faster than cold", value: `${(coldMs / ephemeralMs).toFixed(1)}x`, met: coldMs / ephemeralMs >= 20 },
            { goal: "ephemeral rebuild <= 2x the warm rebuild", value: `${(ephemeralMs / warmMs).toFixed(2)}x`, met: ephemeralMs / warmMs <= 2 },
            { goal: "runtime image <= 50% of the naive one", value: `${(sizeRatio * 100).toFixed(0)}% (${mb(runtimeSize)} vs ${mb(naiveSize)}, compressed)`, met: sizeRatio <= 0.5 },
        ];
        out.push("");
        out.push(`ratios: cold / rebuild: warm ${(coldMs / warmMs).toFixed(1)}x, runner pruned ${(coldMs / prunedMs).toFixed(1)}x, ephemeral runner ${(coldMs / ephemeralMs).toFixed(1)}x`);
        out.push(`        rebuild / warm rebuild: runner pruned ${(prunedMs / warmMs).toFixed(2)}x, ephemeral runner ${(ephemeralMs / warmMs).toFixed(2)}x (floor ${(floorMs / warmMs).toFixed(2)}x)`);
        out.push(`        registry cache vs none after a prune: ${(ms("control") / prunedMs).toFixed(1)}x; naive code change vs warm code change: ${(ms("naive: code change") / warmMs).toFixed(1)}x`);
        out.push(`pulls:  the ephemeral code change pulled ${mb(ephemeralPulled)} of layers (COPY --link: the layers below the changed one stay lazy in the registry)`);
        out.push(`re-ran: ${[...new Set(ephemeral.flatMap((b) => b.rerun))].join("; ") || "nothing"} (ephemeral code change)`);
        out.push(`sizes:  runtime image ${mb(runtimeSize)}, naive image ${mb(naiveSize)}, base ${mb(baseSize)} (compressed, as pushed)`);
        out.push("");
        for (const g of goals) out.push(`${g.met ? "MET    " : "NOT MET"}  ${g.goal}: ${g.value}`);
        process.stdout.write(`${out.join("\n")}\n`);

        if (options.json) {
            fs.writeFileSync(
                options.json,
                `${JSON.stringify({ buildkit: version, cpus: os.cpus().length, target: options.target, cache: cacheFlags, scenarios, sizes: { runtime: runtimeSize, naive: naiveSize, base: baseSize }, goals, docker2010Recorded: DOCKER_2010_RECORDED }, null, 2)}\n`,
            );
        }
        return options.strict && goals.some((g) => !g.met) ? 1 : 0;
    } finally {
        for (const r of [...runners]) await dropRunner(r).catch((e: unknown) => log(`could not remove runner ${r.stateDir}: ${String(e)}`));
        for (const ref of [cacheRef, tag, tag.replace(/:[^:/]+$/, ":naive")]) await registryDelete(ref).catch(() => false);
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
