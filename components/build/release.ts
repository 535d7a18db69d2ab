/**
 * How a release is identified (pure, apart from reading the build context).
 *
 * A release tag is `<target>.<hash>`: the hash covers every input the
 * docker-build provider would rebuild an image for (the build context's
 * files, the Dockerfile, the build args with the base images' references,
 * the stage, the platform, the labels, the secret ids, the builder, the cache
 * references, buildOnPreview) and nothing else. So the same inputs give the
 * same tag and no rebuild, and anything that makes docker-build rebuild gives
 * a new tag: an immutable tag is never pushed twice (ECR refuses a second
 * push of a tag even with the same digest).
 *
 * A multi-arch tag is `multiarch.<hash>` of the tags it joins.
 */
import ignore from "@balena/dockerignore";
import { createHash } from "node:crypto";
import * as fs from "node:fs";
import * as path from "node:path";

/** Length of the hash in a tag (hex). 64 bits: a collision within one target's releases is not a concern. */
export const TAG_HASH_LENGTH = 16;

/** Tag prefix of multi-arch indexes; no target may be called this. */
export const MULTIARCH_TAG_PREFIX = "multiarch";

/** Tags that mark what an environment deploys (moved by CI, kept by the lifecycle rules); no target name may start with this. */
export const DEPLOYED_TAG_PREFIX = "deployed-";

/**
 * Every input of one docker-build Image that makes the provider rebuild it,
 * as plain data. Secret values are not here (the Image ignores them in its
 * diff); their ids are.
 */
export interface ImageSpec {
    /** Release repository URL (the tag's repository). */
    readonly repository: string;
    /** `<cache repo>:cache-<target>`: imported and exported by every build. */
    readonly cacheRef: string;
    /** Build context, relative to the project root. */
    readonly context: string;
    /** Digest of the context's files as the build sees them (contextDigest). */
    readonly contextDigest: string;
    /** Dockerfile path, relative to the project root. */
    readonly dockerfile: string;
    /** Stage built (`--target`). */
    readonly stage: string;
    readonly platform: string;
    readonly buildArgs: Readonly<Record<string, string>>;
    readonly labels: Readonly<Record<string, string>>;
    /** Ids of the BuildKit secrets the build may mount. */
    readonly secretIds: readonly string[];
    /** buildx builder; undefined: the default builder. */
    readonly builder?: string;
    readonly buildOnPreview: boolean;
}

function canonical(value: unknown): unknown {
    if (Array.isArray(value)) return value.map(canonical);
    if (value !== null && typeof value === "object") {
        return Object.fromEntries(
            Object.entries(value as Record<string, unknown>)
                .filter(([, v]) => v !== undefined)
                .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
                .map(([k, v]) => [k, canonical(v)]),
        );
    }
    return value;
}

function sha256(text: string | Buffer): string {
    return createHash("sha256").update(text).digest("hex");
}

/** Hash of a spec: canonical JSON (sorted keys), sha256, first TAG_HASH_LENGTH hex digits. */
export function specHash(spec: ImageSpec): string {
    return sha256(JSON.stringify(canonical(spec))).slice(0, TAG_HASH_LENGTH);
}

/** The release tag of one image × target: `<target>.<hash of its spec>`. */
export function releaseTag(target: string, spec: ImageSpec): string {
    return `${target}.${specHash(spec)}`;
}

/** The multi-arch tag joining these release tags (order does not matter). */
export function multiArchTag(sourceTags: readonly string[]): string {
    return `${MULTIARCH_TAG_PREFIX}.${sha256(JSON.stringify([...sourceTags].sort())).slice(0, TAG_HASH_LENGTH)}`;
}

// ---------------------------------------------------------------- the build context

/** The ignore rules a build uses: `<Dockerfile>.dockerignore` if present, else `<context>/.dockerignore`. */
function ignoreRules(contextDir: string, dockerfile: string): string[] {
    for (const file of [`${dockerfile}.dockerignore`, path.join(contextDir, ".dockerignore")]) {
        if (fs.existsSync(file)) return fs.readFileSync(file, "utf8").split(/\r?\n/);
    }
    return [];
}

interface Entry {
    readonly path: string;
    readonly kind: "file" | "symlink";
    readonly executable: boolean;
    readonly content: string;
    readonly linkTarget?: string;
}

/** Most files a build context may hold (after the ignore rules): beyond this a build is sending far more than it needs. */
export const MAX_CONTEXT_FILES = 20_000;
/** Most bytes a build context may hold (after the ignore rules). */
export const MAX_CONTEXT_BYTES = 2 * 1024 ** 3;

/** A build context beyond MAX_CONTEXT_FILES or MAX_CONTEXT_BYTES. */
export class ContextTooLarge extends Error {}

interface Budget {
    files: number;
    bytes: number;
}

function spend(budget: Budget, bytes: number): void {
    budget.files += 1;
    budget.bytes += bytes;
    if (budget.files > MAX_CONTEXT_FILES) throw new ContextTooLarge(`the build context holds more than ${MAX_CONTEXT_FILES} files: list what the build does not need in a .dockerignore`);
    if (budget.bytes > MAX_CONTEXT_BYTES) throw new ContextTooLarge(`the build context holds more than ${MAX_CONTEXT_BYTES / 1024 ** 3} GiB: list what the build does not need in a .dockerignore`);
}

function walk(contextDir: string, rel: string, isIgnored: (p: string) => boolean, out: Entry[], budget: Budget = { files: 0, bytes: 0 }): void {
    const dir = path.join(contextDir, rel);
    for (const name of fs.readdirSync(dir).sort()) {
        const relPath = rel === "" ? name : `${rel}/${name}`;
        if (isIgnored(relPath)) continue;
        const full = path.join(dir, name);
        const stat = fs.lstatSync(full);
        if (stat.isDirectory()) {
            walk(contextDir, relPath, isIgnored, out, budget);
        } else if (stat.isSymbolicLink()) {
            // The build follows the link: its text and, when it leads to a file, that file's content.
            const target = fs.statSync(full, { throwIfNoEntry: false });
            spend(budget, target?.isFile() ? target.size : 0);
            const content = target?.isFile() ? sha256(fs.readFileSync(full)) : "";
            out.push({ path: relPath, kind: "symlink", executable: false, content, linkTarget: fs.readlinkSync(full) });
        } else if (stat.isFile()) {
            spend(budget, stat.size);
            out.push({ path: relPath, kind: "file", executable: (stat.mode & 0o100) !== 0, content: sha256(fs.readFileSync(full)) });
        }
    }
}

/**
 * Digest of a build context as the build sees it: every file and symlink the
 * ignore rules leave in (path, content, executable bit, link target) and the
 * Dockerfile (path and content, whether ignored or not). Permission bits other
 * than the owner's execute bit are left out, as git leaves them out: the same
 * checkout gives the same digest on every machine. Throws ContextTooLarge
 * beyond MAX_CONTEXT_FILES files or MAX_CONTEXT_BYTES bytes.
 */
export function contextDigest(contextDir: string, dockerfile: string): string {
    const rules = ignore().add(ignoreRules(contextDir, dockerfile).filter((l) => l.trim() !== "" && !l.startsWith("#")));
    const entries: Entry[] = [];
    walk(contextDir, "", (p) => rules.ignores(p), entries);
    const dockerfileEntry = { path: path.relative(contextDir, dockerfile).split(path.sep).join("/"), content: sha256(fs.readFileSync(dockerfile)) };
    return sha256(JSON.stringify({ entries, dockerfile: dockerfileEntry }));
}

const digests = new Map<string, string>();

/** contextDigest, computed once per context and Dockerfile in a program run. */
export function cachedContextDigest(contextDir: string, dockerfile: string): string {
    const key = `${contextDir}\0${dockerfile}`;
    let digest = digests.get(key);
    if (digest === undefined) {
        digest = contextDigest(contextDir, dockerfile);
        digests.set(key, digest);
    }
    return digest;
}
