/**
 * Where every image an environment runs comes from, and what makes a
 * reference acceptable (pure).
 *
 * A task runs three kinds of image: the server (`services[].ref`, or the
 * build stack's `images.<image>.targets.<target>.ref`), the model-fetch init
 * container (the `model-sync` image) and its sidecars (one build-stack image
 * per kind, SIDECAR_CATALOGUE[kind].buildImage). Each is, in this order:
 *
 *   server:        services[].ref ?? build stack images.<image>.targets.<target>.ref
 *   model-fetch:   serve.sidecarImages.model-sync ?? build stack images.model-sync (multi-arch, else a target of the service's platform)
 *   sidecar kind:  sidecars[].image ?? serve.sidecarImages.<kind> ?? build stack images.<buildImage> (likewise)
 *
 * Every reference must be `<registry>/<repository>@sha256:<64 lower-case hex>`
 * with a digest a build could have produced (refProblem, digestProblem), from
 * the stack's own ECR registry (`<account>.dkr.ecr.<region>.amazonaws.com`,
 * the deploying account in the stack's region) in a repository
 * `<prefix>/<image>` with one prefix for the whole stack, unless
 * `serve.allowedImages` names its repository on purpose. One digest is one
 * image x target or one sidecar kind: the same digest in two places is a
 * copy-paste mistake. Where the build stack's outputs are known, a digest they
 * do not hold was not built here and is refused.
 *
 * The checks run twice, both before anything is registered: once with the
 * config alone (checkServe: format, placeholders, registry shape, one
 * registry and prefix, duplicates, pinned values a requirePinned stack must
 * have), and once with what the program reads first (the deploying account,
 * the region, the build stack's outputs): resolveServeImages.
 */
import { ecrLocation } from "../shared/image-refs";
import { certificateProblem } from "./listener";
import type { Key, KeyPath } from "../shared/problems";
import type { HardwareTarget } from "../shared/hardware";
import { MODEL_FETCH_CONTAINER, MODEL_FETCH_KIND, SERVER_CONTAINER, SIDECAR_CATALOGUE, SIDECAR_KINDS, type SidecarKind, resolveSidecar } from "./sidecars";

// ---------------------------------------------------------------- digests

/** A run of this many identical hex digits in a digest marks a placeholder. */
export const PLACEHOLDER_RUN = 16;
/** A digest that repeats a pattern of at most this many digits is a placeholder. */
export const PLACEHOLDER_MAX_PERIOD = 32;
/** A digest with fewer distinct hex digits than this is a placeholder. */
export const PLACEHOLDER_MIN_DISTINCT = 6;

const short = (hex: string) => `sha256:${hex.slice(0, 12)}…`;

/**
 * Why `digest` cannot be a sha256 digest a build produced; undefined when it
 * can. Beyond the form (`sha256:` and exactly 64 lower-case hex digits), a
 * digest is refused as a placeholder when it
 *   - is all zeros;
 *   - has a run of 16 or more identical digits (a random digest has one with
 *     probability below 1e-16);
 *   - repeats a pattern of at most 32 digits ("ab12" x 16, or two equal
 *     halves; below 1e-38);
 *   - uses fewer than 6 distinct hex digits (below 1e-28).
 * A real sha256 output practically never trips any of these; hand-made
 * digests ("000…01", "a" x 64, "a1b2c3d4…" twice) always do.
 */
export function digestProblem(digest: string): string | undefined {
    if (!digest.startsWith("sha256:")) return `digest ${JSON.stringify(digest)} is not sha256:<64 hex digits>`;
    const hex = digest.slice("sha256:".length);
    if (/[^0-9a-fA-F]/.test(hex)) return `digest ${JSON.stringify(digest)} has characters that are not hex digits; a sha256 digest is 64 lower-case hex digits`;
    if (/[A-F]/.test(hex)) return `digest ${short(hex)} is upper-case; registries write sha256 digests in lower case (64 hex digits): copy it as the build stack exports it`;
    if (hex.length !== 64) return `digest ${short(hex)} has ${hex.length} hex digits; a sha256 digest has exactly 64`;
    const placeholder = (why: string) => `digest ${short(hex)} ${why}: a placeholder, not a digest a build produced; deploy the digest the build stack exports (npm run promote)`;
    if (/^0+$/.test(hex)) return placeholder("is all zeros");
    const run = new RegExp(`([0-9a-f])\\1{${PLACEHOLDER_RUN - 1},}`).exec(hex);
    if (run) return placeholder(`has a run of ${run[0].length} "${run[1]}"s`);
    for (let period = 1; period <= PLACEHOLDER_MAX_PERIOD; period++) {
        let repeats = true;
        for (let i = period; i < hex.length && repeats; i++) repeats = hex[i] === hex[i - period];
        if (repeats) return placeholder(`repeats "${hex.slice(0, period)}"`);
    }
    const distinct = new Set(hex).size;
    if (distinct < PLACEHOLDER_MIN_DISTINCT) return placeholder(`uses only ${distinct} distinct hex digits`);
    return undefined;
}

// ---------------------------------------------------------------- references

/** A reference split into its parts: `<host>/<repository>@<digest>`. */
export interface PinnedRef {
    readonly host: string;
    readonly repository: string;
    readonly digest: string;
}

/** `host/repository@sha256:...` split (no checks beyond the shape); undefined when it has no `@` or no host. */
export function splitRef(ref: string): PinnedRef | undefined {
    const at = ref.lastIndexOf("@");
    if (at < 0) return undefined;
    const name = ref.slice(0, at);
    const slash = name.indexOf("/");
    if (slash < 0) return undefined;
    return { host: name.slice(0, slash), repository: name.slice(slash + 1), digest: ref.slice(at + 1) };
}

const HOST_RE = /^(?:[a-z0-9](?:[a-z0-9-]*[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]*[a-z0-9])?)+|localhost)(?::[0-9]{1,5})?$|^[a-z0-9-]+:[0-9]{1,5}$/;
const REPOSITORY_RE = /^[a-z0-9]+(?:[._-][a-z0-9]+)*(?:\/[a-z0-9]+(?:[._-][a-z0-9]+)*)*$/;

/**
 * Why `ref` is not `<registry>/<repository>@sha256:<64 lower-case hex>` with
 * a digest a build could have produced; undefined when it is.
 */
export function refProblem(ref: string): string | undefined {
    const example = "<registry>/<repository>@sha256:<64 hex digits>";
    if (ref.trim() === "" || /\s/.test(ref)) return `must be ${example} without spaces`;
    if (!ref.includes("@")) {
        const tag = /:([^/:]+)$/.exec(ref);
        return `${tag ? `is a tag (":${tag[1]}"), ` : "is "}not pinned by digest (a tag can move): use ${example}`;
    }
    const parts = splitRef(ref);
    if (!parts || !HOST_RE.test(parts.host)) return `names no registry host; write the full reference: ${example}`;
    const tag = /:([^/:]+)$/.exec(parts.repository);
    if (tag) return `names a tag (":${tag[1]}") as well as a digest; a tag next to a digest is ignored and misleads: write ${example}`;
    if (!REPOSITORY_RE.test(parts.repository)) return `repository "${parts.repository}" is not a repository name (lower-case letters, digits, ".", "_", "-" and "/")`;
    return digestProblem(parts.digest);
}

// ---------------------------------------------------------------- allow-list

/**
 * Why an entry of `serve.allowedImages` is not `<host>/<repository>` (one
 * repository) or `<host>/<namespace>/` (every repository under it); undefined
 * when it is. A whole registry is never allowed.
 */
export function allowedImageEntryProblem(entry: string): string | undefined {
    const form = "must be <registry host>/<repository> (one repository) or <registry host>/<namespace>/ (every repository under it)";
    const slash = entry.indexOf("/");
    if (slash < 0) return `${form}; a whole registry is never allowed`;
    const host = entry.slice(0, slash);
    const rest = entry.slice(slash + 1);
    if (!HOST_RE.test(host)) return form;
    if (rest.includes("@") || rest.includes(":")) return "names a repository or a namespace, never a tag or a digest (the image itself must still be pinned by digest)";
    const path = rest.endsWith("/") ? rest.slice(0, -1) : rest;
    if (path === "") return `allows a whole registry; name a repository or a namespace in it (${host}/<namespace>/)`;
    if (!REPOSITORY_RE.test(path)) return `"${path}" is not a repository name or namespace (lower-case letters, digits, ".", "_", "-" and "/")`;
    return undefined;
}

/** The entry of `allowed` that admits `ref`'s repository, if any. */
export function allowedEntryFor(ref: string, allowed: readonly string[]): string | undefined {
    const parts = splitRef(ref);
    if (!parts) return undefined;
    const name = `${parts.host}/${parts.repository}`;
    return allowed.find((entry) => (entry.endsWith("/") ? name.startsWith(entry) : name === entry));
}

// ---------------------------------------------------------------- the build stack's outputs

const record = (v: unknown): Record<string, unknown> | undefined => (typeof v === "object" && v !== null && !Array.isArray(v) ? (v as Record<string, unknown>) : undefined);

/** The build stack an environment reads, and its `images` output (as read, unchecked). */
export interface BuildStackImages {
    /** Full stack name, for messages (`org/ml-infra/build`). */
    readonly stack: string;
    readonly images: unknown;
}

/** Every digest the build stack's `images` output holds (targets' and multi-arch refs). */
export function builtDigests(images: unknown): Set<string> {
    const out = new Set<string>();
    for (const image of Object.values(record(images) ?? {})) {
        const refs = [
            ...Object.values(record(record(image)?.targets) ?? {}).map((t) => record(t)?.ref),
            record(record(image)?.multiArch)?.ref,
        ];
        for (const ref of refs) {
            const parts = typeof ref === "string" ? splitRef(ref) : undefined;
            if (parts) out.add(parts.digest);
        }
    }
    return out;
}

/** The build stack's registry host and repository prefix, read from `images.<name>.repository` (`<host>/<prefix>/<name>`). */
export function builtRegistry(images: unknown): { host: string; prefix: string } | undefined {
    for (const [name, image] of Object.entries(record(images) ?? {}).sort(([a], [b]) => a.localeCompare(b))) {
        const repository = record(image)?.repository;
        if (typeof repository !== "string" || !repository.endsWith(`/${name}`)) continue;
        const slash = repository.indexOf("/");
        const prefix = repository.slice(slash + 1, repository.length - name.length - 1);
        if (slash > 0 && prefix !== "") return { host: repository.slice(0, slash), prefix };
    }
    return undefined;
}

/** A ref problem as the tail of "the build stack exports <ref>, which ...". */
const which = (problem: string) => (/^(is|names|must) /.test(problem) ? problem : `cannot be deployed: ${problem}`);

/** A value read from the build stack: the ref, or why there is none (`key` groups the same absence across services). */
type Read = { readonly ref: string } | { readonly missing: string; readonly key: string };

/** `images.<image>.targets.<target>.ref`, or why it is missing. */
function builtTargetRef(images: unknown, image: string, target: string): Read {
    const ref = record(record(record(record(images)?.[image])?.targets)?.[target])?.ref;
    const output = `images.${image}.targets.${target}.ref`;
    if (typeof ref !== "string") return { key: output, missing: `exports no image "${image}" for target "${target}" (output ${output})` };
    const problem = refProblem(ref);
    if (problem) return { key: output, missing: `exports ${JSON.stringify(ref)} as ${output}, which ${which(problem)}` };
    return { ref };
}

/**
 * The build stack's image of a sidecar for a service: its multi-arch ref, or
 * else the ref of a target of the service's platform (the service's own
 * target when the image has it, else the first such target by name).
 */
function builtSidecarRef(images: unknown, image: string, target: HardwareTarget): Read {
    const built = record(record(images)?.[image]);
    if (!built) return { key: image, missing: `exports no image "${image}" (output images.${image}.multiArch.ref)` };
    const multi = record(built.multiArch)?.ref;
    if (typeof multi === "string") {
        const problem = refProblem(multi);
        if (problem) return { key: image, missing: `exports ${JSON.stringify(multi)} as images.${image}.multiArch.ref, which ${which(problem)}` };
        return { ref: multi };
    }
    const targets = record(built.targets) ?? {};
    const samePlatform = Object.keys(targets)
        .filter((t) => record(targets[t])?.platform === target.platform)
        .sort((a, b) => (a === target.name ? -1 : b === target.name ? 1 : a.localeCompare(b)));
    if (samePlatform.length === 0) {
        return { key: `${image} ${target.platform}`, missing: `exports image "${image}" with neither a multi-arch index (images.${image}.multiArch.ref) nor a ${target.platform} target` };
    }
    return builtTargetRef(images, image, samePlatform[0]);
}

// ---------------------------------------------------------------- slots

/** Where a deployed image was decided: pinned in the stack file, or followed from the build stack. */
export type ImageSource = "pinned" | "build-stack";

/** One image one container of one service runs. */
export interface ImageSlot {
    readonly service: string;
    readonly serviceIndex: number;
    /** Container name: server, model-fetch, or the sidecar's name. */
    readonly container: string;
    /** What the image is: `<image>/<target>` for a server, `sidecar <kind>` for a sidecar or the model fetch. */
    readonly identity: string;
    /** The image's name in the stack's registry: the repository is `<prefix>/<imageName>`. */
    readonly imageName: string;
    /** The reference; undefined when it follows a build stack that was not read (the config-only checks). */
    readonly ref: string | undefined;
    readonly source: ImageSource;
    /** Key of the value (relative to the serve section): the ref's, or `buildStack` for a followed one. */
    readonly keys: KeyPath;
}

/** A problem with a key path relative to the serve section, the value shown at it, and the message. */
export interface ImageProblem {
    readonly keys: KeyPath;
    readonly value: unknown;
    readonly message: string;
}

/** What image slots need from the serve section (validated config). */
export interface ServeImagesConfig {
    readonly requirePinned: boolean;
    /** By sidecar kind; a key that is no kind is reported by checkServeImages. */
    readonly sidecarImages: Readonly<Partial<Record<string, string>>>;
    readonly allowedImages: readonly string[];
    readonly services: ReadonlyArray<{
        readonly name: string;
        readonly image: string;
        readonly target: string;
        readonly ref?: string;
        readonly sidecars: ReadonlyArray<{ readonly kind: SidecarKind; readonly name?: string; readonly image?: string }>;
    }>;
    /** The listener's certificate, checked against the account and region once they are known (resolveServeImages). */
    readonly loadBalancer?: { readonly certificateArn?: string };
}

const serviceKey = (i: number): Key[] => ["services", i];

/**
 * The image slots of every service: the server, the model fetch, each
 * sidecar. Without `build`, followed slots have no ref. With it, they are
 * read from its outputs, and what it lacks is a problem at `buildStack`
 * (one per missing image, naming every service that needs it).
 */
export function imageSlots(
    serve: ServeImagesConfig,
    targets: Readonly<Record<string, HardwareTarget>>,
    build?: BuildStackImages,
): { slots: ImageSlot[]; problems: ImageProblem[] } {
    const slots: ImageSlot[] = [];
    const missing = new Map<string, { what: string; needers: string[]; pin: Set<string> }>();
    const follow = (read: Read, needer: string, pin: string): string | undefined => {
        if ("ref" in read) return read.ref;
        const entry = missing.get(read.key) ?? { what: read.missing, needers: [], pin: new Set<string>() };
        if (!entry.needers.includes(needer)) entry.needers.push(needer);
        entry.pin.add(pin);
        missing.set(read.key, entry);
        return undefined;
    };
    serve.services.forEach((service, i) => {
        const target = targets[service.target];
        if (!target) return;
        // The server.
        const serverFollowed = service.ref === undefined;
        slots.push({
            service: service.name,
            serviceIndex: i,
            container: SERVER_CONTAINER,
            identity: `${service.image}/${service.target}`,
            imageName: service.image,
            ref: serverFollowed ? (build ? follow(builtTargetRef(build.images, service.image, service.target), `${service.name}'s server`, `serve.services[${i}].ref`) : undefined) : service.ref,
            source: serverFollowed ? "build-stack" : "pinned",
            keys: serverFollowed ? ["buildStack"] : [...serviceKey(i), "ref"],
        });
        // The model fetch and the sidecars.
        const kindSlot = (kind: SidecarKind, container: string, override: { keys: KeyPath; ref: string } | undefined, what: string) => {
            const buildImage = SIDECAR_CATALOGUE[kind].buildImage;
            const pinned = override ?? (serve.sidecarImages[kind] !== undefined ? { keys: ["sidecarImages", kind], ref: serve.sidecarImages[kind] as string } : undefined);
            slots.push({
                service: service.name,
                serviceIndex: i,
                container,
                identity: `sidecar ${kind}`,
                imageName: buildImage,
                ref: pinned ? pinned.ref : build ? follow(builtSidecarRef(build.images, buildImage, target), `${service.name}'s ${what}`, `serve.sidecarImages.${kind}`) : undefined,
                source: pinned ? "pinned" : "build-stack",
                keys: pinned ? pinned.keys : ["buildStack"],
            });
        };
        kindSlot(MODEL_FETCH_KIND, MODEL_FETCH_CONTAINER, undefined, "model-fetch");
        service.sidecars.forEach((sidecar, j) => {
            const resolved = resolveSidecar({ ...sidecar, environment: {}, secrets: {} });
            const override = sidecar.image !== undefined ? { keys: [...serviceKey(i), "sidecars", j, "image"], ref: sidecar.image } : undefined;
            kindSlot(sidecar.kind, resolved.name, override, `${sidecar.kind} sidecar${resolved.name === sidecar.kind ? "" : ` "${resolved.name}"`}`);
        });
    });
    const problems: ImageProblem[] = [...missing.values()].map(({ what, needers, pin }) => ({
        keys: ["buildStack"],
        value: build?.stack,
        message: `${what}; ${needers.join(", ")} ${needers.length === 1 ? "runs" : "run"} it: build it there (README: Where every deployed image comes from) or pin ${[...pin].join(", ")}`,
    }));
    return { slots, problems };
}

// ---------------------------------------------------------------- checks

/** What the checks know about where this stack may deploy from. */
export interface RegistryFacts {
    /** The deploying account (aws.getCallerIdentity). */
    readonly account?: string;
    /** The stack's region (aws:region). */
    readonly region?: string;
    /** The build stack's outputs, when read: its digests, registry and prefix. */
    readonly build?: BuildStackImages;
}

const registryHint = (facts: RegistryFacts) =>
    `${facts.account ?? "<account>"}.dkr.ecr.${facts.region ?? "<region>"}.amazonaws.com/<prefix>/<image>@sha256:<digest>`;

/** The value a slot's key shows in a problem line. */
const shownValue = (slot: ImageSlot, build?: BuildStackImages): unknown => (slot.keys[0] === "buildStack" ? build?.stack : slot.ref);

/** The value seen most often (ties: the first seen): the registry most images name. */
export function mostCommon(values: readonly string[]): string | undefined {
    const counts = new Map<string, number>();
    for (const v of values) counts.set(v, (counts.get(v) ?? 0) + 1);
    let best: string | undefined;
    for (const [v, n] of counts) if (best === undefined || n > (counts.get(best) ?? 0)) best = v;
    return best;
}

/**
 * Every problem with the slots' references: form and placeholders, the
 * stack's own registry (unless allow-listed), one registry and one prefix for
 * the stack, one digest per image x target or sidecar kind, and (with the
 * build stack's outputs) digests it did not build. Slots without a ref are
 * skipped. One problem per key and message.
 */
export function checkImageSlots(slots: readonly ImageSlot[], allowedImages: readonly string[], facts: RegistryFacts = {}): ImageProblem[] {
    const problems: ImageProblem[] = [];
    const seen = new Set<string>();
    const say = (slot: ImageSlot, message: string) => {
        const id = `${JSON.stringify(slot.keys)}\n${message}`;
        if (seen.has(id)) return;
        seen.add(id);
        problems.push({ keys: slot.keys, value: shownValue(slot, facts.build), message });
    };
    const built = facts.build ? builtDigests(facts.build.images) : undefined;
    const buildRegistry = facts.build ? builtRegistry(facts.build.images) : undefined;
    const ours: Array<{ slot: ImageSlot; host: string; prefix: string }> = [];
    const byDigest = new Map<string, ImageSlot[]>();

    for (const slot of slots) {
        if (slot.ref === undefined) continue;
        const problem = refProblem(slot.ref);
        if (problem) {
            say(slot, problem);
            continue;
        }
        const { host, repository, digest } = splitRef(slot.ref) as PinnedRef;
        byDigest.set(digest, [...(byDigest.get(digest) ?? []), slot]);
        if (allowedEntryFor(slot.ref, allowedImages) !== undefined) continue;
        const allowHint = `or list ${host}/${repository} in serve.allowedImages to deploy it on purpose`;
        const location = ecrLocation(host);
        if (!location) {
            say(slot, `${host} is not this stack's registry: an environment deploys only from its own ECR registry (${registryHint(facts)}) ${allowHint}`);
            continue;
        }
        if (facts.region !== undefined && location.region !== facts.region) {
            say(slot, `${host} is a registry in ${location.region}; this stack (aws:region ${facts.region}) deploys only from its own registry ${registryHint(facts)}, ${allowHint}`);
            continue;
        }
        if (facts.account !== undefined && location.account !== facts.account) {
            say(slot, `${host} is account ${location.account}'s registry; this stack deploys only from the deploying account's (${facts.account}) registry ${registryHint(facts)}, ${allowHint}`);
            continue;
        }
        if (!repository.endsWith(`/${slot.imageName}`)) {
            say(slot, `repository "${repository}" is not image "${slot.imageName}": ${slot.container === SERVER_CONTAINER ? "the server's" : `the ${slot.identity.replace("sidecar ", "")} image's`} repository is <prefix>/${slot.imageName}`);
            continue;
        }
        if (built && !built.has(digest)) {
            say(slot, `digest ${digest} is not one the build stack ${facts.build?.stack} exports (images.*.targets.*.ref, images.*.multiArch.ref): it was not built there`);
            continue;
        }
        ours.push({ slot, host, prefix: repository.slice(0, repository.length - slot.imageName.length - 1) });
    }

    // One registry and one prefix for the whole stack (the build stack's, when known).
    const host = buildRegistry?.host ?? mostCommon(ours.map((o) => o.host));
    const prefix = buildRegistry?.prefix ?? mostCommon(ours.map((o) => o.prefix));
    for (const o of ours) {
        if (o.host !== host) {
            say(o.slot, `${o.host} is not the registry the stack's other images come from (${host}); one registry for the whole stack`);
        } else if (o.prefix !== prefix) {
            say(o.slot, `repository prefix "${o.prefix}" differs from "${prefix}", ${buildRegistry ? "the build stack's" : "which the stack's other images use"}: every image is <prefix>/<image> with one prefix for the stack`);
        }
    }

    // One digest is one image x target or one sidecar kind.
    for (const [digest, users] of byDigest) {
        const identities = [...new Set(users.map((u) => u.identity))];
        if (identities.length < 2) continue;
        const first = users.find((u) => u.identity === identities[0]) as ImageSlot;
        for (const u of users.filter((x) => x.identity !== identities[0])) {
            const where = first.keys[0] === "buildStack" ? `the build stack's ${first.identity}` : `serve.${keyText(first.keys)}`;
            say(u, `digest ${short(digest.slice(7))} is also ${first.identity} (${where}, ${first.service}); one digest is one image x target or one sidecar kind: copy the right digest for ${u.identity}`);
        }
    }
    return problems;
}

function keyText(keys: KeyPath): string {
    return keys.map((k, i) => (typeof k === "number" ? `[${k}]` : i === 0 ? k : `.${k}`)).join("");
}

/** Promote's hint, for values a requirePinned stack must have. */
export const PROMOTE_HINT =
    "promotion writes it: npm run promote -- --from-outputs build-outputs.json --to <this stack> (from the build stack's outputs), or --from <the stack before it> (e.g. --from staging --to prod)";

/**
 * The config-only checks of the serve section's images (checkServe): every
 * configured reference, the allow-list, and in a requirePinned stack every
 * value it must pin (a ref per service, serve.sidecarImages for every kind a
 * service runs without its own image, and model-sync for the model fetch).
 */
export function checkServeImages(serve: ServeImagesConfig, targets: Readonly<Record<string, HardwareTarget>>, report: (keys: KeyPath, message: string) => void): void {
    const seenEntries = new Map<string, number>();
    serve.allowedImages.forEach((entry, i) => {
        const problem = allowedImageEntryProblem(entry);
        if (problem) report(["allowedImages", i], problem);
        const first = seenEntries.get(entry);
        if (first !== undefined) report(["allowedImages", i], `listed twice (also allowedImages[${first}])`);
        else seenEntries.set(entry, i);
    });
    for (const kind of Object.keys(serve.sidecarImages)) {
        if (!(SIDECAR_KINDS as readonly string[]).includes(kind)) report(["sidecarImages", kind], `must be a sidecar kind: ${SIDECAR_KINDS.join(", ")}`);
    }
    const { slots } = imageSlots(serve, targets);
    for (const p of checkImageSlots(slots, serve.allowedImages)) report(p.keys, p.message);
    // A sidecarImages entry no service runs is still a reference this stack holds: check it too.
    for (const [kind, ref] of Object.entries(serve.sidecarImages)) {
        if (typeof ref !== "string" || slots.some((s) => s.keys[0] === "sidecarImages" && s.keys[1] === kind)) continue;
        const problem = refProblem(ref);
        if (problem) report(["sidecarImages", kind], problem);
    }
    if (!serve.requirePinned) return;
    const needers = new Map<SidecarKind, string[]>();
    serve.services.forEach((service, i) => {
        if (!targets[service.target]) return;
        if (service.ref === undefined) report([...serviceKey(i), "ref"], `this stack deploys pinned digests only (serve.requirePinned); ${PROMOTE_HINT}`);
        const kinds: SidecarKind[] = [MODEL_FETCH_KIND, ...service.sidecars.filter((s) => s.image === undefined).map((s) => s.kind)];
        for (const kind of kinds) {
            const list = needers.get(kind) ?? [];
            if (!list.includes(service.name)) list.push(service.name);
            needers.set(kind, list);
        }
    });
    for (const [kind, services] of needers) {
        if (serve.sidecarImages[kind] !== undefined) continue;
        const runs = kind === MODEL_FETCH_KIND ? `every model-fetch runs the ${kind} image` : `${services.join(", ")} ${services.length === 1 ? "runs" : "run"} the ${kind} sidecar`;
        report(["sidecarImages", kind], `${runs} and this stack deploys pinned digests only (serve.requirePinned); ${PROMOTE_HINT}`);
    }
}

// ---------------------------------------------------------------- resolution

/** One image a task runs. */
export interface ContainerImage {
    readonly container: string;
    readonly ref: string;
}

/** Every image one service's task runs, resolved. */
export interface ServiceImages {
    readonly server: string;
    readonly serverSource: ImageSource;
    readonly modelFetch: string;
    /** By sidecar name. */
    readonly sidecars: Readonly<Record<string, string>>;
    /** Every image of the task: server, model-fetch, then sidecars by name. */
    readonly all: readonly ContainerImage[];
}

/**
 * Every image of every service, from the config and (for what it follows)
 * the build stack's outputs, checked with everything known: the account, the
 * region, the build stack's digests. Problems are returned, never thrown;
 * `images` holds only services whose every image resolved.
 */
export function resolveServeImages(
    serve: ServeImagesConfig,
    targets: Readonly<Record<string, HardwareTarget>>,
    facts: RegistryFacts,
): { images: Record<string, ServiceImages>; problems: ImageProblem[] } {
    const { slots, problems } = imageSlots(serve, targets, facts.build);
    problems.push(...checkImageSlots(slots, serve.allowedImages, facts));
    // Not an image, but known only now (the config check sees the region only when its caller passes it).
    const certificateArn = serve.loadBalancer?.certificateArn;
    const certificate = certificateArn === undefined ? undefined : certificateProblem(certificateArn, facts);
    if (certificate) problems.push({ keys: ["loadBalancer", "certificateArn"], value: certificateArn, message: certificate });
    const images: Record<string, ServiceImages> = {};
    for (const service of serve.services) {
        const mine = slots.filter((s) => s.service === service.name);
        if (mine.length === 0 || mine.some((s) => s.ref === undefined)) continue;
        const server = mine[0];
        const fetch = mine[1];
        const sidecars = mine.slice(2).sort((a, b) => a.container.localeCompare(b.container));
        images[service.name] = {
            server: server.ref as string,
            serverSource: server.source,
            modelFetch: fetch.ref as string,
            sidecars: Object.fromEntries(sidecars.map((s) => [s.container, s.ref as string])),
            all: [server, fetch, ...sidecars].map((s) => ({ container: s.container, ref: s.ref as string })),
        };
    }
    return { images, problems };
}
