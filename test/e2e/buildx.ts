/**
 * buildx on the local BuildKit runners, for the real-engine suites and the
 * build-cache benchmark: the command line of a docker-build `Image` as the
 * program registers it (so a benchmark builds with exactly the cache settings
 * components/build/target-image.ts gives the provider, read from the
 * registered inputs, never restated), and BuildKit's own progress
 * (`--progress=rawjson`): every vertex with its times, whether it was cached,
 * what was pulled and when the push began.
 */
import { spawn } from "node:child_process";
import * as path from "node:path";

/** The docker-build `Image` inputs the program registers (the subset it sets). */
export interface ImageInputs {
    readonly push?: boolean;
    readonly tags?: readonly string[];
    readonly platforms?: readonly string[];
    readonly target?: string;
    readonly context?: { readonly location: string };
    readonly dockerfile?: { readonly location?: string };
    readonly buildArgs?: Readonly<Record<string, string>>;
    readonly labels?: Readonly<Record<string, string>>;
    readonly cacheFrom?: ReadonlyArray<{ readonly registry?: { readonly ref: string } }>;
    readonly cacheTo?: ReadonlyArray<{ readonly registry?: { readonly ref: string; readonly mode?: string; readonly imageManifest?: boolean; readonly ociMediaTypes?: boolean } }>;
    readonly builder?: { readonly name?: string };
}

export interface BuildxOverrides {
    /** Project root the inputs' relative paths are relative to. */
    readonly cwd: string;
    /** Another build context (a copy with a code change); the Dockerfile is then taken from it too. */
    readonly context?: string;
    /** Another builder than the inputs name. */
    readonly builder?: string;
    /** Leave out the registry cache import (a control). */
    readonly noCacheFrom?: boolean;
    /** Replace the tags (and push them). */
    readonly tags?: readonly string[];
}

/**
 * `buildx build` arguments that ask BuildKit for what docker-build asks for
 * with these inputs: the same target, platforms, build args, labels, tags,
 * registry cache import and export (type=registry, mode, image-manifest,
 * oci-mediatypes), pushed as docker-build pushes (an image exporter with
 * push, no provenance attestation: docker-build turns the default off).
 */
export function buildxArgs(inputs: ImageInputs, o: BuildxOverrides): string[] {
    const location = inputs.context?.location;
    if (!location) throw new Error("the image has no context");
    const original = path.resolve(o.cwd, location);
    const context = o.context ?? original;
    // A Dockerfile inside the context moves with it; one outside stays where it is.
    const file = path.resolve(o.cwd, inputs.dockerfile?.location ?? path.join(location, "Dockerfile"));
    const inside = file.startsWith(original + path.sep);
    const dockerfile = o.context && inside ? path.join(o.context, path.relative(original, file)) : file;
    const args = ["build", "--progress=rawjson", "--provenance=false", "--file", dockerfile];
    const builder = o.builder ?? inputs.builder?.name;
    if (builder) args.push("--builder", builder);
    if (inputs.platforms && inputs.platforms.length > 0) args.push("--platform", inputs.platforms.join(","));
    if (inputs.target) args.push("--target", inputs.target);
    for (const [k, v] of Object.entries(inputs.buildArgs ?? {}).sort(([a], [b]) => a.localeCompare(b))) args.push("--build-arg", `${k}=${v}`);
    for (const [k, v] of Object.entries(inputs.labels ?? {}).sort(([a], [b]) => a.localeCompare(b))) args.push("--label", `${k}=${v}`);
    for (const tag of o.tags ?? inputs.tags ?? []) args.push("--tag", tag);
    if (!o.noCacheFrom) for (const c of inputs.cacheFrom ?? []) if (c.registry) args.push("--cache-from", `type=registry,ref=${c.registry.ref}`);
    for (const c of inputs.cacheTo ?? []) {
        const r = c.registry;
        if (!r) continue;
        const attrs = [`type=registry`, `ref=${r.ref}`];
        if (r.mode) attrs.push(`mode=${r.mode}`);
        if (r.imageManifest !== undefined) attrs.push(`image-manifest=${r.imageManifest}`);
        if (r.ociMediaTypes !== undefined) attrs.push(`oci-mediatypes=${r.ociMediaTypes}`);
        args.push("--cache-to", attrs.join(","));
    }
    if (inputs.push) args.push("--output", "type=registry");
    args.push(context);
    return args;
}

// ------------------------------------------------------------------ progress

export interface Vertex {
    readonly digest: string;
    readonly name: string;
    readonly started?: number;
    readonly completed?: number;
    readonly cached: boolean;
    readonly error?: string;
}

export interface Status {
    readonly id: string;
    readonly vertex: string;
    readonly total?: number;
    readonly current?: number;
    readonly started?: number;
    readonly completed?: number;
}

export interface Progress {
    readonly vertices: readonly Vertex[];
    readonly statuses: readonly Status[];
    /** The build steps' output lines, in order. */
    readonly logs: readonly string[];
}

const time = (t: unknown) => (typeof t === "string" && !t.startsWith("0001-") ? Date.parse(t) : undefined);

/** Folds BuildKit's raw JSON progress (one SolveStatus per line) into the last state of every vertex and status. */
export function parseProgress(text: string): Progress {
    const vertices = new Map<string, Vertex>();
    const statuses = new Map<string, Status>();
    const logs: string[] = [];
    for (const line of text.split("\n")) {
        if (!line.startsWith("{")) continue;
        let s: { vertexes?: Array<Record<string, unknown>>; statuses?: Array<Record<string, unknown>>; logs?: Array<{ data?: string }> };
        try {
            s = JSON.parse(line) as typeof s;
        } catch {
            continue;
        }
        for (const v of s.vertexes ?? []) {
            const digest = String(v.digest);
            const prev = vertices.get(digest);
            vertices.set(digest, {
                digest,
                name: String(v.name ?? prev?.name ?? ""),
                started: prev?.started ?? time(v.started),
                completed: time(v.completed) ?? prev?.completed,
                cached: Boolean(v.cached) || (prev?.cached ?? false),
                error: typeof v.error === "string" && v.error ? v.error : prev?.error,
            });
        }
        for (const st of s.statuses ?? []) {
            const key = `${String(st.vertex)} ${String(st.id)}`;
            const prev = statuses.get(key);
            statuses.set(key, {
                id: String(st.id),
                vertex: String(st.vertex),
                total: typeof st.total === "number" ? st.total : prev?.total,
                current: typeof st.current === "number" ? st.current : prev?.current,
                started: prev?.started ?? time(st.started),
                completed: time(st.completed) ?? prev?.completed,
            });
        }
        for (const l of s.logs ?? []) if (l.data) logs.push(Buffer.from(l.data, "base64").toString("utf8"));
    }
    return { vertices: [...vertices.values()], statuses: [...statuses.values()], logs };
}

/**
 * The Dockerfile's own steps (`[stage n/m] INSTRUCTION`), without FROM, with
 * whether each was cached. A `COPY --link` is two vertices (the copy and its
 * `LINK` merge onto the stage): one step, cached when both were.
 */
export function dockerfileSteps(p: Progress): Array<{ name: string; cached: boolean; seconds: number }> {
    const steps = new Map<string, { name: string; cached: boolean; seconds: number }>();
    for (const v of p.vertices) {
        const m = /^(\[(?:[^\]]+ )?\d+\/\d+\]) (LINK )?(.*)$/.exec(v.name);
        if (!m || m[3].startsWith("FROM ")) continue;
        const seconds = v.started !== undefined && v.completed !== undefined ? (v.completed - v.started) / 1000 : 0;
        const prev = steps.get(m[1]);
        steps.set(m[1], {
            name: m[2] && prev ? prev.name : `${m[1]} ${m[3]}`,
            cached: (prev?.cached ?? true) && v.cached,
            seconds: (prev?.seconds ?? 0) + seconds,
        });
    }
    return [...steps.values()];
}

/** Milliseconds of the vertices whose names match (their union from first start to last completion), or NaN. */
export function vertexMs(p: Progress, name: RegExp): number {
    const vs = p.vertices.filter((v) => name.test(v.name) && v.started !== undefined && v.completed !== undefined);
    if (vs.length === 0) return NaN;
    return Math.max(...vs.map((v) => v.completed ?? 0)) - Math.min(...vs.map((v) => v.started ?? 0));
}

/** Blobs BuildKit downloaded (statuses `sha256:<digest>` with a size), per vertex name. */
export function pulledBlobs(p: Progress): Array<{ vertex: string; digest: string; bytes: number }> {
    const names = new Map(p.vertices.map((v) => [v.digest, v.name]));
    return p.statuses
        .filter((s) => /^sha256:[0-9a-f]{64}$/.test(s.id) && (s.total ?? s.current ?? 0) > 0)
        .map((s) => ({ vertex: names.get(s.vertex) ?? s.vertex, digest: s.id, bytes: s.total ?? s.current ?? 0 }));
}

/** When the image push began and ended (the exporter's `pushing layers` .. `pushing manifest`), epoch ms. */
export function pushWindow(p: Progress): { started?: number; completed?: number } {
    const layers = p.statuses.filter((s) => s.id === "pushing layers");
    const manifests = p.statuses.filter((s) => s.id.startsWith("pushing manifest for "));
    const started = Math.min(...layers.map((s) => s.started ?? Infinity));
    const completed = Math.max(...manifests.map((s) => s.completed ?? -Infinity), ...layers.map((s) => s.completed ?? -Infinity));
    return { started: Number.isFinite(started) ? started : undefined, completed: Number.isFinite(completed) ? completed : undefined };
}

// ------------------------------------------------------------------ running buildx

export interface BuildxRun {
    readonly code: number;
    /** Wall time of the whole command (build, export, push, cache export). */
    readonly ms: number;
    /** Epoch ms when the command was started. */
    readonly startedAt: number;
    readonly progress: Progress;
    /** What buildx printed that was not progress (errors). */
    readonly output: string;
}

/** Runs `buildx <args>` (no shell) and folds its raw JSON progress. */
export function runBuildx(buildx: string, args: readonly string[], options: { timeoutMs?: number; env?: NodeJS.ProcessEnv } = {}): Promise<BuildxRun> {
    const startedAt = Date.now();
    return new Promise((resolve) => {
        const child = spawn(buildx, [...args], { env: options.env ?? process.env, stdio: ["ignore", "pipe", "pipe"] });
        let out = "";
        child.stdout.setEncoding("utf8").on("data", (d: string) => (out += d));
        child.stderr.setEncoding("utf8").on("data", (d: string) => (out += d));
        const timer = setTimeout(() => child.kill("SIGKILL"), options.timeoutMs ?? 30 * 60_000);
        child.on("close", (code) => {
            clearTimeout(timer);
            const ms = Date.now() - startedAt;
            const other = out.split("\n").filter((l) => l.trim() && !l.startsWith("{")).join("\n");
            resolve({ code: code ?? 1, ms, startedAt, progress: parseProgress(out), output: other });
        });
    });
}

/** The error lines of a failed build: BuildKit's vertex errors, then what buildx printed. */
export function buildErrors(r: BuildxRun): string {
    return [...r.progress.vertices.filter((v) => v.error).map((v) => `${v.name}: ${v.error}`), r.output].filter(Boolean).join("\n");
}
