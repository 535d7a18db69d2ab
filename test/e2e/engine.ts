/**
 * Runs the real Pulumi engine on this machine: the CLI, the language host and
 * the docker-build provider that `npm run tools` builds from Go modules, a
 * file backend in a temp directory, and a copy of the project (so a test may
 * change the server's code without touching the repository).
 *
 * Offline: plugins are found on PATH, never downloaded; no update check.
 */
import { execFile, spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { stringify as toYaml } from "yaml";

export const ROOT = path.resolve(__dirname, "../..");
/** What a project copy holds (node_modules is linked, not copied). */
const PROJECT_FILES = ["Pulumi.yaml", "index.ts", "components", "package.json", "tsconfig.json", "images"];
/** The engine's marker for a value unknown during preview. */
export const UNKNOWN = "04da6b54-80e4-46f7-96ec-b56ff0331ba9";

export interface Tools {
    readonly bin: string;
    readonly pulumi: string;
    readonly buildctl: string;
    readonly buildx: string;
}

export type Availability = { readonly ok: true; readonly tools: Tools } | { readonly ok: false; readonly reason: string };

/** The tools `npm run tools` built, and the local runner `scripts/docker-env.sh` started; the reason when something is missing. */
export function engineAvailable(builder: string): Availability {
    const bin = process.env.ML_INFRA_TOOLS_BIN ?? path.join(os.homedir(), ".cache/ml-infra/tools/bin");
    const wanted = ["pulumi", "pulumi-language-nodejs", "pulumi-resource-docker-build", "buildctl", "buildx"];
    const missing = wanted.filter((t) => !fs.existsSync(path.join(bin, t)));
    if (missing.length > 0) return { ok: false, reason: `${missing.join(", ")} not in ${bin}: run \`npm run tools\`` };
    const tools = { bin, pulumi: path.join(bin, "pulumi"), buildctl: path.join(bin, "buildctl"), buildx: path.join(bin, "buildx") };
    const inspect = spawnSync(tools.buildx, ["inspect", "--bootstrap", builder], { encoding: "utf8", timeout: 30_000 });
    if (inspect.status !== 0 || !/Status:\s+running/.test(inspect.stdout)) {
        return { ok: false, reason: `the buildx builder ${builder} of the local runner is not running: run \`sudo npm run docker:env\` (${(inspect.stderr || inspect.stdout).trim().split("\n").at(-1)})` };
    }
    return { ok: true, tools };
}

export interface CommandResult {
    readonly code: number;
    readonly stdout: string;
    readonly stderr: string;
    readonly ms: number;
}

function exec(file: string, args: readonly string[], options: { cwd: string; env: NodeJS.ProcessEnv; timeoutMs: number }): Promise<CommandResult> {
    const started = Date.now();
    return new Promise((resolve) => {
        execFile(file, [...args], { cwd: options.cwd, env: options.env, timeout: options.timeoutMs, killSignal: "SIGKILL", maxBuffer: 512 * 1024 * 1024, encoding: "utf8" }, (error, stdout, stderr) => {
            const err = error as (Error & { code?: number | string; killed?: boolean }) | null;
            const code = err ? (typeof err.code === "number" ? err.code : err.killed ? 124 : 1) : 0;
            resolve({ code, stdout, stderr, ms: Date.now() - started });
        });
    });
}

/** A step of `pulumi preview --json`. */
export interface PreviewStep {
    readonly op: string;
    readonly urn: string;
    readonly diffReasons?: readonly string[];
    readonly newState?: { readonly type: string; readonly inputs?: Record<string, unknown> };
}

export interface Preview {
    readonly steps: readonly PreviewStep[];
    readonly changeSummary?: Record<string, number>;
}

/** A copy of the project with one stack on a file backend, driven by the real CLI. */
export class PulumiProject {
    private constructor(
        readonly dir: string,
        readonly stack: string,
        readonly stackFile: string,
        private readonly env: NodeJS.ProcessEnv,
        private readonly tools: Tools,
    ) {}

    /** Copies the project into a temp directory and initialises `stack` with `config` (a stack file's `config:`). */
    static async create(tools: Tools, stack: string, config: Record<string, unknown>): Promise<PulumiProject> {
        const base = fs.mkdtempSync(path.join(os.tmpdir(), "ml-engine-"));
        const dir = path.join(base, "project");
        const backend = path.join(base, "backend");
        fs.mkdirSync(path.join(dir, "stacks"), { recursive: true });
        fs.mkdirSync(backend);
        for (const f of PROJECT_FILES) fs.cpSync(path.join(ROOT, f), path.join(dir, f), { recursive: true });
        fs.symlinkSync(path.join(ROOT, "node_modules"), path.join(dir, "node_modules"));
        const stackFile = path.join(dir, "stacks", `Pulumi.${stack}.yaml`);
        fs.writeFileSync(stackFile, toYaml({ config }));
        const env: NodeJS.ProcessEnv = {
            ...process.env,
            PATH: `${tools.bin}:${process.env.PATH ?? ""}`,
            PULUMI_HOME: path.join(base, "pulumi-home"),
            PULUMI_BACKEND_URL: `file://${backend}`,
            PULUMI_CONFIG_PASSPHRASE: "e2e-only",
            PULUMI_SKIP_UPDATE_CHECK: "true",
            PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION: "true",
            PULUMI_SKIP_CONFIRMATIONS: "true",
            NO_COLOR: "1",
        };
        const project = new PulumiProject(dir, stack, stackFile, env, tools);
        const init = await project.pulumi(["stack", "init"]);
        if (init.code !== 0) throw new Error(`pulumi stack init ${stack} failed: ${init.stderr || init.stdout}`);
        return project;
    }

    /** Replaces the stack's config (a stack file's `config:`), e.g. to remove a target. */
    writeConfig(config: Record<string, unknown>): void {
        fs.writeFileSync(this.stackFile, toYaml({ config }));
    }

    private commands = 0;

    /** Runs the CLI on this stack; with ML_INFRA_E2E_LOGS set, each command's output is kept there (`<n>-<command>.log`). */
    async pulumi(args: readonly string[], timeoutMs = 20 * 60_000): Promise<CommandResult> {
        const r = await exec(this.tools.pulumi, [...args, "--non-interactive", "--stack", this.stack], { cwd: this.dir, env: this.env, timeoutMs });
        const logs = process.env.ML_INFRA_E2E_LOGS;
        if (logs) {
            fs.mkdirSync(logs, { recursive: true });
            fs.writeFileSync(path.join(logs, `${String(++this.commands).padStart(2, "0")}-${args[0]}.log`), `${r.stdout}\n--- stderr\n${r.stderr}`);
        }
        return r;
    }

    async preview(extra: readonly string[] = []): Promise<Preview> {
        const r = await this.pulumi(["preview", "--json", ...extra]);
        if (r.code !== 0) throw new Error(`pulumi preview failed (${r.code}):\n${r.stderr}\n${r.stdout.slice(-4000)}`);
        return JSON.parse(r.stdout) as Preview;
    }

    async up(extra: readonly string[] = []): Promise<CommandResult> {
        const r = await this.pulumi(["up", "--yes", "--skip-preview", ...extra]);
        if (r.code !== 0) throw new Error(`pulumi up failed (${r.code}):\n${r.stderr}\n${r.stdout.slice(-6000)}`);
        return r;
    }

    async outputs(): Promise<Record<string, unknown>> {
        const r = await this.pulumi(["stack", "output", "--json"]);
        if (r.code !== 0) throw new Error(`pulumi stack output failed: ${r.stderr}`);
        return JSON.parse(r.stdout) as Record<string, unknown>;
    }

    /** The URNs of the stack's resources (`pulumi stack export`). */
    async resources(): Promise<Array<{ urn: string; type: string }>> {
        return (await this.state()).map(({ urn, type }) => ({ urn, type }));
    }

    /** The stack's resources with their inputs and outputs as the engine recorded them (`pulumi stack export --show-secrets`). */
    async state(): Promise<Array<{ urn: string; type: string; inputs?: Record<string, unknown>; outputs?: Record<string, unknown> }>> {
        const r = await this.pulumi(["stack", "export", "--show-secrets"]);
        if (r.code !== 0) throw new Error(`pulumi stack export failed: ${r.stderr}`);
        const state = JSON.parse(r.stdout) as { deployment?: { resources?: Array<{ urn: string; type: string; inputs?: Record<string, unknown>; outputs?: Record<string, unknown> }> } };
        return state.deployment?.resources ?? [];
    }

    remove(): void {
        fs.rmSync(path.dirname(this.dir), { recursive: true, force: true });
    }
}

/** The Dockerfile steps a `pulumi up` log shows for one resource: `[stage n/m] INSTRUCTION` and whether it was CACHED. */
export function buildStepsOf(log: string, resourceName: string): Array<{ name: string; cached: boolean; done: boolean }> {
    const steps = new Map<number, { name: string; cached: boolean; done: boolean }>();
    for (const line of log.split("\n")) {
        if (!line.includes(` ${resourceName} `)) continue;
        const m = /#(\d+) (.*)$/.exec(line.trimEnd());
        if (!m) continue;
        const id = Number(m[1]);
        const step = steps.get(id) ?? { name: "", cached: false, done: false };
        const rest = m[2].trim();
        if (rest === "CACHED") step.cached = true;
        else if (/^DONE \d/.test(rest)) step.done = true;
        else if (!step.name && /^\[/.test(rest)) step.name = rest;
        steps.set(id, step);
    }
    return [...steps.values()].filter((s) => /^\[(?:[^\]]+ )?\d+\/\d+\] /.test(s.name) && !/\] FROM /.test(s.name));
}

/** Inputs that are known in a preview (unknown values and secrets dropped, recursively). */
export function knownInputs(value: unknown): unknown {
    if (value === UNKNOWN) return undefined;
    if (Array.isArray(value)) return value.map(knownInputs);
    if (value !== null && typeof value === "object") {
        const obj = value as Record<string, unknown>;
        if ("4dabf18193072939515e22adb298388d" in obj) return undefined;
        return Object.fromEntries(Object.entries(obj).flatMap(([k, v]) => {
            const known = knownInputs(v);
            return known === undefined ? [] : [[k, known]];
        }));
    }
    return value;
}
