/**
 * Pulumi's mock runtime, set up the way this project's tests and the offline
 * plan need it: evaluates the real program for a stack with the config the
 * Pulumi CLI would hand it, answers the cloud with deterministic mocks
 * (account 123456789012, us-east-1) and records every resource it registers
 * (type, name, inputs, secret inputs, parent, options) and every stack output.
 * Nothing here is used by the program itself.
 */
import { createHash } from "node:crypto";
import * as fs from "node:fs";
import * as path from "node:path";
import * as pulumi from "@pulumi/pulumi";
import { parse as parseYaml } from "yaml";
import { stackName } from "../../components/shared/stack-names";
import { type PromoteResult, promote } from "../promote";
import { cliValues, encodeConfigValue } from "./secure-config";

export const ROOT = path.resolve(__dirname, "..", "..");
export const STACKS_DIR = path.join(ROOT, "stacks");
export const ACCOUNT = "123456789012";
export const REGION = "us-east-1";
export const REGISTRY_HOST = `${ACCOUNT}.dkr.ecr.${REGION}.amazonaws.com`;

export interface Registered {
    /** Position in registration order (resources are listed sorted by URN). */
    readonly order: number;
    readonly type: string;
    readonly name: string;
    readonly urn: string;
    readonly parent: string;
    /** Inputs with secrets unwrapped. */
    readonly inputs: Record<string, unknown>;
    /** Top-level inputs that were (or contained) Pulumi secrets. */
    readonly secretInputs: readonly string[];
    /** Per input, the URNs of the resources it was computed from. */
    readonly propertyDependencies: Readonly<Record<string, readonly string[]>>;
    readonly protect: boolean;
    readonly retainOnDelete: boolean;
    readonly customTimeouts: { create: string; update: string; delete: string };
}

export interface Evaluation {
    readonly resources: Registered[];
    readonly outputs: Record<string, unknown>;
    /** Stack outputs that are Pulumi secrets. */
    readonly secretOutputs: readonly string[];
    /** Paths (keys from the top) of every value in the outputs that is a Pulumi secret, nested ones included. */
    readonly secretOutputPaths: ReadonlyArray<readonly string[]>;
    /** Resources of one type. */
    ofType(type: string): Registered[];
}

export interface EvaluateOptions {
    /** Config map instead of the stack file's (`{"ml-infra:build": {...}}`; objects are JSON-encoded as the CLI does). */
    readonly config?: Record<string, unknown>;
    /** What the build stack exports, for environments that follow it through a StackReference. */
    readonly buildOutputs?: Record<string, unknown>;
    /** Which of `buildOutputs` are secrets (the StackReference reports them as secret outputs). */
    readonly buildSecretOutputs?: readonly string[];
    /** Config keys the Pulumi CLI would mark secret (default: those of `config` holding `{secure: ...}` values). */
    readonly secretKeys?: readonly string[];
    readonly preview?: boolean;
    /**
     * What each referenced stack exports, by its stack name (the last segment of
     * the reference: `org/ml-infra/runners` -> `runners`). A reference not in it
     * gets `buildOutputs`.
     */
    readonly stackOutputs?: Readonly<Record<string, ReferencedStack>>;
    /** The Pulumi organization (`pulumi.getOrganization()`). Default `organization`, as on a self-managed backend. */
    readonly organization?: string;
}

/** A referenced stack's outputs as a StackReference reads them. */
export interface ReferencedStack {
    readonly outputs: Record<string, unknown>;
    readonly secretOutputs?: readonly string[];
}

interface ProjectFile {
    name: string;
    config?: Record<string, { default?: unknown; value?: unknown }>;
}

export function projectFile(): ProjectFile {
    return parseYaml(fs.readFileSync(path.join(ROOT, "Pulumi.yaml"), "utf8")) as ProjectFile;
}

/** Names of every stack file under stacks/. */
export function stackNames(): string[] {
    return fs
        .readdirSync(STACKS_DIR)
        .filter((f) => /^Pulumi\..+\.yaml$/.test(f))
        .map((f) => f.slice("Pulumi.".length, -".yaml".length))
        .sort();
}

/** Stacks that build into ECR (a build section without `localRegistry`). */
export function awsBuildStackNames(): string[] {
    return stackNames().filter((s) => {
        const build = stackFileConfig(s)["ml-infra:build"] as { localRegistry?: string } | undefined;
        return build !== undefined && build.localRegistry === undefined;
    });
}

export function stackFileConfig(stack: string): Record<string, unknown> {
    const file = path.join(STACKS_DIR, `Pulumi.${stack}.yaml`);
    // As the Pulumi CLI reads it: YAML merge keys resolved; an empty file is an empty config.
    const doc = parseYaml(fs.readFileSync(file, "utf8"), { merge: true }) as { config?: unknown } | null;
    const config = doc?.config ?? {};
    if (config === null || typeof config !== "object" || Array.isArray(config)) throw new Error(`${file}: config is not a mapping`);
    return config as Record<string, unknown>;
}

/**
 * The config map the Pulumi CLI would hand the program: project defaults, then
 * the stack's values. Secret values (`{secure: ...}`, which need the stack's
 * secrets provider) become stand-ins: "[secret]" (see ./secure-config).
 */
export function cliConfig(stackConfig: Record<string, unknown>): Record<string, string> {
    const project = projectFile();
    const out: Record<string, string> = {};
    for (const [key, decl] of Object.entries(project.config ?? {})) {
        const full = key.includes(":") ? key : `${project.name}:${key}`;
        const v = decl.value ?? decl.default;
        if (v !== undefined) out[full] = encodeConfigValue(v);
    }
    Object.assign(out, cliValues(stackConfig, project.name).values);
    return out;
}

/** The config keys the Pulumi CLI marks secret: every key holding a `{secure: ...}` value, at any depth. */
export function cliSecretKeys(stackConfig: Record<string, unknown>): string[] {
    return cliValues(stackConfig, projectFile().name).secretKeys;
}

function fakeDigest(...parts: unknown[]): string {
    return `sha256:${createHash("sha256").update(JSON.stringify(parts)).digest("hex")}`;
}

function mockState(type: string, name: string, inputs: Record<string, unknown>, references: References): Record<string, unknown> {
    const state = { ...inputs, arn: `arn:aws:mock:${REGION}:${ACCOUNT}:${type}/${name}` };
    switch (type) {
        case "aws:ecr/repository:Repository":
            return {
                ...state,
                repositoryUrl: `${REGISTRY_HOST}/${String(inputs.name)}`,
                registryId: ACCOUNT,
                arn: `arn:aws:ecr:${REGION}:${ACCOUNT}:repository/${String(inputs.name)}`,
            };
        case "docker-build:index:Image": {
            // docker-build reports "" as the digest of an image a preview would (re)build without building it.
            if (references.preview && inputs.buildOnPreview !== true) return { ...state, digest: "", ref: "" };
            // The release tag is a hash of the build inputs: a different tag is a different image.
            const digest = fakeDigest(name, inputs.tags, inputs.buildArgs, inputs.target, inputs.platforms);
            const tags = (inputs.tags as string[] | undefined) ?? [];
            return { ...state, digest, ref: tags.length > 0 ? `${tags[0]}@${digest}` : "" };
        }
        case "docker-build:index:Index":
            return { ...state, ref: `${String(inputs.tag)}@${fakeDigest(name, inputs.sources)}` };
        case "aws:lb/loadBalancer:LoadBalancer":
            return { ...state, dnsName: `${name}.elb.${REGION}.amazonaws.com`, arnSuffix: `net/${name}/0123456789abcdef` };
        case "aws:lb/targetGroup:TargetGroup":
            return { ...state, arnSuffix: `targetgroup/${name}/0123456789abcdef` };
        case "tls:index/privateKey:PrivateKey":
            return { ...state, privateKeyPem: `-----BEGIN PRIVATE KEY-----\nmock-${name}\n-----END PRIVATE KEY-----\n` };
        case "tls:index/selfSignedCert:SelfSignedCert":
        case "tls:index/locallySignedCert:LocallySignedCert":
            return { ...state, certPem: `-----BEGIN CERTIFICATE-----\nmock-${name}\n-----END CERTIFICATE-----\n` };
        case "pulumi:pulumi:StackReference": {
            const referenced = references.byName?.[String(inputs.name).split("/").pop() ?? ""];
            if (referenced) return { ...inputs, outputs: referenced.outputs, secretOutputNames: [...(referenced.secretOutputs ?? [])] };
            return { ...inputs, outputs: references.buildOutputs ?? {}, secretOutputNames: [...(references.buildSecretOutputs ?? [])] };
        }
        default:
            return state;
    }
}

/** What StackReferences read under mocks. */
interface References {
    /** A preview: docker-build answers what it would build without building it. */
    readonly preview?: boolean;
    readonly byName?: Readonly<Record<string, ReferencedStack>>;
    readonly buildOutputs?: unknown;
    readonly buildSecretOutputs?: readonly string[];
}

const mocksFor = (references: References): pulumi.runtime.Mocks => ({
    newResource: (args) => ({
        id: `${args.name}-id`,
        state: mockState(args.type, args.name, args.inputs as Record<string, unknown>, references),
    }),
    call: (args) => {
        const inputs = args.inputs as Record<string, unknown>;
        switch (args.token) {
            case "aws:ecr/getAuthorizationToken:getAuthorizationToken":
                return { userName: "AWS", password: "mock-ecr-password", proxyEndpoint: `https://${REGISTRY_HOST}`, authorizationToken: "bW9jaw==" };
            case "aws:secretsmanager/getSecret:getSecret":
                return { ...inputs, arn: `arn:aws:secretsmanager:${REGION}:${ACCOUNT}:secret:${String(inputs.name)}-AbCdEf` };
            case "aws:index/getCallerIdentity:getCallerIdentity":
                return { accountId: ACCOUNT, arn: `arn:aws:iam::${ACCOUNT}:user/test`, userId: "test" };
            case "aws:index/getRegion:getRegion":
                return { name: REGION, region: REGION };
            default:
                return inputs;
        }
    },
});

interface RegisterRequest {
    getType(): string;
    getName(): string;
    getParent(): string;
    getProtect?(): boolean;
    getRetainondelete?(): boolean;
    getCustomtimeouts?(): { getCreate(): string; getUpdate(): string; getDelete(): string } | undefined;
    getPropertydependenciesMap?(): { forEach(f: (value: { getUrnsList(): string[] }, key: string) => void): void };
}
type Callback = (err: unknown, res?: { getUrn(): string }) => void;
interface MonitorLike {
    registerResource(req: RegisterRequest, cb: Callback): Promise<void>;
    readResource(req: RegisterRequest, cb: Callback): Promise<void>;
}
interface RpcInternals {
    deserializeProperties(obj: unknown): Record<string, unknown>;
    isRpcSecret(obj: unknown): boolean;
    unwrapRpcSecret(obj: unknown): unknown;
}
interface RuntimeInternals {
    waitForRPCs(): Promise<void>;
}

/** Waits until every outstanding resource registration has been answered. */
export function waitForRPCs(): Promise<void> {
    return (pulumi.runtime as unknown as RuntimeInternals).waitForRPCs();
}

/**
 * Resolves every Output inside a value (exports are nested records of Outputs),
 * telling `onSecret` the path of each Output that is a secret.
 */
async function settle(value: unknown, at: readonly string[] = [], onSecret: (path: readonly string[]) => void = () => undefined): Promise<unknown> {
    if (pulumi.Output.isInstance(value)) {
        // Output.promise() is internal, but unlike apply() it rejects when the value failed.
        const [secret, resolved] = await Promise.all([
            (value as unknown as { isSecret: Promise<boolean> }).isSecret,
            (value as unknown as { promise(): Promise<unknown> }).promise(),
        ]);
        if (secret) onSecret(at);
        return settle(resolved, at, onSecret);
    }
    if (Array.isArray(value)) return Promise.all(value.map((v, i) => settle(v, [...at, String(i)], onSecret)));
    if (value !== null && typeof value === "object") {
        const entries = await Promise.all(Object.entries(value).map(async ([k, v]) => [k, await settle(v, [...at, k], onSecret)] as const));
        return Object.fromEntries(entries);
    }
    return value;
}

let serial = 0;

/**
 * Runs `program` under the mock runtime as stack `stack` with the given CLI
 * config map, and records every resource it registers and what it returns
 * (Outputs inside the returned value are resolved).
 */
export async function runUnderMocks(
    stack: string,
    config: Record<string, string>,
    program: () => unknown,
    options: Pick<EvaluateOptions, "buildOutputs" | "buildSecretOutputs" | "secretKeys" | "preview" | "stackOutputs" | "organization"> = {},
): Promise<Evaluation> {
    const project = projectFile().name;
    const resources: Registered[] = [];
    const thisRun = ++serial;

    pulumi.runtime.setAllConfig(config, [...(options.secretKeys ?? [])]);
    await pulumi.runtime.setMocks(
        mocksFor({ preview: options.preview, byName: options.stackOutputs, buildOutputs: options.buildOutputs, buildSecretOutputs: options.buildSecretOutputs }),
        project,
        stack,
        options.preview ?? false,
        options.organization ?? "organization",
    );
    const monitor = pulumi.runtime.getMonitor() as unknown as MonitorLike;
    const rpc = (await import("@pulumi/pulumi/runtime/rpc")) as unknown as RpcInternals;
    const capture =
        (original: (req: RegisterRequest, cb: Callback) => Promise<void>, properties: (req: unknown) => unknown) =>
        (req: RegisterRequest, cb: Callback) =>
            original(req, (err, res) => {
                if (!err && res && thisRun === serial) {
                    const timeouts = req.getCustomtimeouts?.();
                    const raw = rpc.deserializeProperties(properties(req));
                    const inputs: Record<string, unknown> = {};
                    const secretInputs: string[] = [];
                    const propertyDependencies: Record<string, string[]> = {};
                    req.getPropertydependenciesMap?.().forEach((deps, key) => {
                        propertyDependencies[key] = deps.getUrnsList();
                    });
                    for (const [key, value] of Object.entries(raw)) {
                        if (rpc.isRpcSecret(value)) secretInputs.push(key);
                        inputs[key] = rpc.unwrapRpcSecret(value);
                    }
                    resources.push({
                        order: resources.length,
                        type: req.getType(),
                        name: req.getName(),
                        urn: res.getUrn(),
                        parent: req.getParent(),
                        inputs,
                        secretInputs,
                        propertyDependencies,
                        protect: req.getProtect?.() ?? false,
                        retainOnDelete: req.getRetainondelete?.() ?? false,
                        customTimeouts: {
                            create: timeouts?.getCreate() ?? "",
                            update: timeouts?.getUpdate() ?? "",
                            delete: timeouts?.getDelete() ?? "",
                        },
                    });
                }
                cb(err, res);
            });
    monitor.registerResource = capture(monitor.registerResource.bind(monitor), (req) => (req as { getObject(): unknown }).getObject());
    monitor.readResource = capture(monitor.readResource.bind(monitor), (req) => (req as { getProperties(): unknown }).getProperties());

    // The program exports an async function (as index.ts does): the Pulumi runtime calls it and awaits its outputs.
    const exported = await program();
    const main = typeof exported === "function" ? exported : exported !== null && typeof exported === "object" && typeof (exported as { default?: unknown }).default === "function" ? (exported as { default: unknown }).default : undefined;
    const returned = main ? await (main as () => unknown)() : exported;
    const outputs: Record<string, unknown> = {};
    const secretOutputs: string[] = [];
    const secretOutputPaths: string[][] = [];
    if (returned !== null && typeof returned === "object") {
        for (const [key, value] of Object.entries(returned)) {
            if (value === undefined) continue;
            outputs[key] = await settle(value, [key], (p) => secretOutputPaths.push([...p]));
            if (pulumi.Output.isInstance(value) && (await (value as unknown as { isSecret: Promise<boolean> }).isSecret)) secretOutputs.push(key);
        }
    }
    await waitForRPCs();
    resources.sort((a, b) => a.urn.localeCompare(b.urn));
    return { resources, outputs, secretOutputs, secretOutputPaths, ofType: (type) => resources.filter((r) => r.type === type) };
}

/** Loads the program's main module afresh and returns its exports. */
export type ProgramLoader = () => Promise<Record<string, unknown>>;

/** Plain Node: drop the project's own modules from the require cache and require index.ts again. */
export const requireProgram: ProgramLoader = async () => {
    for (const key of Object.keys(require.cache)) {
        if (key.startsWith(ROOT) && !key.includes(`${path.sep}node_modules${path.sep}`) && !key.includes(`${path.sep}scripts${path.sep}`)) {
            delete require.cache[key];
        }
    }
    return require(path.join(ROOT, "index")) as Record<string, unknown>;
};

/** Does a stack file's config deploy pinned values only (`serve.requirePinned: true`)? */
export function requiresPinned(config: Record<string, unknown>): boolean {
    const serve = config[`${projectFile().name}:serve`];
    return isObject(serve) && serve.requirePinned === true;
}

/**
 * A stack file (its text) as `npm run promote -- --from-outputs` would leave
 * it after promoting from the build stack's `outputs`, in memory: its config
 * and what promotion changed. Promote's own engine does it, with its
 * refusals (a value it would refuse throws).
 */
export function promotedFromOutputs(text: string, outputs: Record<string, unknown>, destName: string, sourceName = "build outputs"): { config: Record<string, unknown>; result: PromoteResult } {
    const result = promote({ kind: "outputs", name: sourceName, outputs }, text, projectFile().name, { destName });
    const file = parseYaml(result.text) as { config?: Record<string, unknown> } | null;
    return { config: file?.config ?? {}, result };
}

/**
 * Evaluates index.ts for `stack` (its file under stacks/, unless `options.config` replaces it).
 * A stack file that deploys pinned values only (staging, prod), given the
 * build stack's outputs, is evaluated as promotion from them would leave it
 * (promotedFromOutputs), as `npm run plan -- --build-outputs` plans it.
 */
export async function evaluate(stack: string, options: EvaluateOptions = {}, load: ProgramLoader = requireProgram): Promise<Evaluation> {
    let stackConfig = options.config ?? stackFileConfig(stack);
    if (!options.config && options.buildOutputs && requiresPinned(stackConfig)) {
        const file = path.join(STACKS_DIR, `Pulumi.${stack}.yaml`);
        stackConfig = promotedFromOutputs(fs.readFileSync(file, "utf8"), options.buildOutputs, stack).config;
    }
    const config = cliConfig(stackConfig);
    // The stacks it reads (runners, build) come from their own stack files unless their outputs are given.
    // `buildOutputs` stands for the build stack alone; every other stack it reads is evaluated from its file.
    const given = options.buildOutputs ? { build: { outputs: options.buildOutputs, secretOutputs: options.buildSecretOutputs } } : undefined;
    const stackOutputs = options.stackOutputs ?? (await cachedReferences(stack, stackConfig, load, given));
    return runUnderMocks(stack, config, load, { ...options, stackOutputs, secretKeys: options.secretKeys ?? cliSecretKeys(stackConfig) });
}

const referenceCache = new Map<string, Promise<Record<string, ReferencedStack>>>();

/** referencedStackOutputs, once per stack and config in this process (stack files do not change under a test run). */
function cachedReferences(
    stack: string,
    config: Record<string, unknown>,
    load: ProgramLoader,
    given?: Readonly<Record<string, ReferencedStack>>,
): Promise<Record<string, ReferencedStack>> {
    if (stackReferencesOf(config).length === 0) return Promise.resolve({});
    const key = JSON.stringify([stack, config, given]);
    let cached = referenceCache.get(key);
    if (!cached) {
        cached = referencedStackOutputs(stack, config, load, { given });
        referenceCache.set(key, cached);
        cached.catch(() => referenceCache.delete(key));
    }
    return cached;
}

/** A registered resource as the policy pack sees it (type, name, URN, inputs, property dependencies). */
export function policyResourceOf(r: Registered): { type: string; name: string; urn: string; props: Record<string, unknown>; propertyDependencies: Readonly<Record<string, readonly string[]>> } {
    return { type: r.type, name: r.name, urn: r.urn, props: r.inputs, propertyDependencies: r.propertyDependencies };
}

// ------------------------------------------------------------------ referenced stacks

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === "object" && v !== null && !Array.isArray(v);

/** A stack a config reads through a StackReference: the config key that names it, the full reference and its stack name. */
export interface StackReferenceOf {
    readonly key: "build.runnersStack" | "serve.buildStack";
    readonly reference: string;
    readonly stack: string;
}

/**
 * The stacks a stack's config reads, as the program names them: the runners
 * stack of a build section (unless it builds locally or on its own builder),
 * the build stack of a serve section with services that follow it. A name left
 * out is `<organization>/<project>/<stack>`.
 */
export function stackReferencesOf(config: Record<string, unknown>, organization = "organization"): StackReferenceOf[] {
    const project = projectFile().name;
    const out: StackReferenceOf[] = [];
    const of = (key: StackReferenceOf["key"], configured: unknown, fallback: string) => {
        // A name the config check refuses is not looked up: the program's config error names it.
        if (configured !== undefined && !stackName.safeParse(configured).success) return;
        const reference = typeof configured === "string" ? configured : `${organization}/${project}/${fallback}`;
        out.push({ key, reference, stack: reference.split("/").pop() ?? reference });
    };
    const build = config[`${project}:build`];
    if (isObject(build) && build.localRegistry === undefined && build.builder === undefined) of("build.runnersStack", build.runnersStack, "runners");
    const serve = config[`${project}:serve`];
    if (isObject(serve) && followsBuildStack(serve)) of("serve.buildStack", serve.buildStack, "build");
    return out;
}

/**
 * Does a serve section (as written in a stack file) follow its build stack,
 * as the program decides it (components/serve/images.ts): a service without
 * `ref`, or a sidecar kind a service runs (model-sync for every model fetch)
 * with neither its own `image` nor an entry in `sidecarImages`.
 */
export function followsBuildStack(serve: Record<string, unknown>): boolean {
    const services = Array.isArray(serve.services) ? serve.services : [];
    const pinnedKinds = isObject(serve.sidecarImages) ? Object.keys(serve.sidecarImages) : [];
    return services.some((s) => {
        if (!isObject(s) || s.ref === undefined) return true;
        if (!pinnedKinds.includes("model-sync")) return true;
        const sidecars = Array.isArray(s.sidecars) ? s.sidecars : [];
        return sidecars.some((c) => isObject(c) && c.image === undefined && !pinnedKinds.includes(String(c.kind)));
    });
}

/**
 * The outputs of every stack a config reads, by stack name, each evaluated
 * from its own stack file under `stacksDir` (and what it reads in turn).
 * `given` outputs are used as they are. Errors name the key and the file.
 */
export async function referencedStackOutputs(
    stack: string,
    config: Record<string, unknown>,
    load: ProgramLoader,
    options: { readonly stacksDir?: string; readonly given?: Readonly<Record<string, ReferencedStack>>; readonly readConfig?: (file: string) => Record<string, unknown>; readonly seen?: readonly string[] } = {},
): Promise<Record<string, ReferencedStack>> {
    const stacksDir = options.stacksDir ?? STACKS_DIR;
    const project = projectFile().name;
    const seen = [...(options.seen ?? []), stack];
    const out: Record<string, ReferencedStack> = {};
    for (const ref of stackReferencesOf(config)) {
        const given = options.given?.[ref.stack];
        if (given) {
            out[ref.stack] = given;
            continue;
        }
        const parts = ref.reference.split("/");
        if (parts.length === 3 && parts[1] !== project) {
            throw new Error(`${ref.key} ${ref.reference} is a stack of project ${parts[1]}, not ${project}: its stack file is not here; pass its outputs`);
        }
        if (seen.includes(ref.stack)) throw new Error(`${ref.key} ${ref.reference}: stacks read each other (${[...seen, ref.stack].join(" -> ")})`);
        const file = path.join(stacksDir, `Pulumi.${ref.stack}.yaml`);
        const shown = path.relative(ROOT, file) || file;
        const pass = ref.key === "serve.buildStack" ? "pass its outputs (npm run plan: --build-outputs <file>)" : "pass its outputs";
        if (!fs.existsSync(file)) throw new Error(`${ref.key} ${ref.reference} of stack ${stack}: no stack file ${shown} to evaluate it from; ${pass}`);
        const referencedConfig = options.readConfig ? options.readConfig(file) : stackFileConfig(ref.stack);
        const section = ref.key === "serve.buildStack" ? "build" : "runners";
        if (!(`${project}:${section}` in referencedConfig)) throw new Error(`${shown} (${ref.key} of stack ${stack}) has no ${project}:${section} section`);
        const nested = await referencedStackOutputs(ref.stack, referencedConfig, load, { ...options, seen });
        let ev: Evaluation;
        try {
            ev = await evaluate(ref.stack, { config: referencedConfig, stackOutputs: nested }, load);
        } catch (error) {
            throw new Error(`stack ${ref.stack} (${ref.key} of ${stack}, ${path.relative(ROOT, file)}): ${(error as Error).message}`, { cause: error });
        }
        out[ref.stack] = { outputs: ev.outputs, secretOutputs: ev.secretOutputs };
    }
    return out;
}

/** Stacks with runner pools (a `runners` section): the runners stacks. */
export function runnersStackNames(): string[] {
    return stackNames().filter((s) => stackFileConfig(s)["ml-infra:runners"] !== undefined);
}
