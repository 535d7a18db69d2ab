/**
 * Exclusive lock files and atomic writes, for tools that edit files in the
 * repository (promote): concurrent runs serialise, or fail with a clear
 * error, and a reader never sees a half-written file.
 *
 * The lock of `dir/file` is `dir/.file.lock`, created exclusively (a hard
 * link of a complete temporary file, which fails if the lock exists; O_EXCL
 * where hard links are not supported) and holding who took it (pid, host,
 * time, a random token). Waiting is bounded; a lock
 * whose process is gone (same host, pid not running) is stale and is removed,
 * under a second short-lived lock so two waiters cannot both remove it (and
 * remove a fresh lock by mistake). Only the holder's token releases a lock.
 *
 * writeFileAtomic writes a temporary file in the same directory, fsyncs it
 * and renames it over the target (then fsyncs the directory), keeping the
 * target's permission bits.
 */
import { randomBytes } from "node:crypto";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";

export interface LockOptions {
    /** How long to wait for another holder, ms. Default 15000. */
    readonly timeoutMs?: number;
    /** Poll interval while waiting, ms. Default 20 (plus jitter). */
    readonly pollMs?: number;
}

export interface LockHolder {
    readonly pid: number;
    readonly host: string;
    readonly since: string;
    readonly token: string;
}

export class LockTimeoutError extends Error {}

/** A lock held by this process. */
export interface Lock {
    readonly path: string;
    release(): void;
}

/** The lock file of `target`: `.<name>.lock` next to it. */
export function lockPathOf(target: string): string {
    return path.join(path.dirname(target), `.${path.basename(target)}.lock`);
}

/** Blocks the thread for `ms` (the tools are synchronous command-line programs). */
export function sleepSync(ms: number): void {
    Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, Math.max(0, ms));
}

/** Is process `pid` running on this host? (EPERM: it runs, as another user.) */
function pidAlive(pid: number): boolean {
    if (!Number.isInteger(pid) || pid <= 0) return false;
    try {
        process.kill(pid, 0);
        return true;
    } catch (error) {
        return (error as NodeJS.ErrnoException).code === "EPERM";
    }
}

interface LockFileState {
    /** The file's text ("" while its creator is still writing it). */
    readonly raw: string;
    readonly holder?: LockHolder;
    readonly ageMs: number;
}

/** The lock file's content, or undefined when there is none. */
function readLock(lockPath: string): LockFileState | undefined {
    let raw: string;
    let mtimeMs: number;
    try {
        raw = fs.readFileSync(lockPath, "utf8");
        mtimeMs = fs.statSync(lockPath).mtimeMs;
    } catch (error) {
        if ((error as NodeJS.ErrnoException).code === "ENOENT") return undefined;
        throw error;
    }
    let holder: LockHolder | undefined;
    try {
        const parsed = JSON.parse(raw) as Partial<LockHolder>;
        if (typeof parsed.pid === "number" && typeof parsed.host === "string" && typeof parsed.token === "string") {
            holder = { pid: parsed.pid, host: parsed.host, since: String(parsed.since), token: parsed.token };
        }
    } catch {
        holder = undefined;
    }
    return { raw, holder, ageMs: Date.now() - mtimeMs };
}

/** An unreadable lock older than this was left by a process that died while creating it. */
const INCOMPLETE_LOCK_MS = 2_000;
/** Breaking a stale lock takes microseconds; a break lock older than this is itself stale. */
const STALE_BREAK_MS = 10_000;

function isStale(state: LockFileState): boolean {
    if (!state.holder) return state.ageMs > INCOMPLETE_LOCK_MS;
    return state.holder.host === os.hostname() && !pidAlive(state.holder.pid);
}

/** Removes a stale lock, unless it changed since it was judged stale. */
function breakStale(lockPath: string, seen: LockFileState): void {
    const breakPath = `${lockPath}.break`;
    let fd: number;
    try {
        fd = fs.openSync(breakPath, "wx", 0o644);
    } catch (error) {
        if ((error as NodeJS.ErrnoException).code !== "EEXIST") throw error;
        try {
            if (Date.now() - fs.statSync(breakPath).mtimeMs > STALE_BREAK_MS) fs.unlinkSync(breakPath);
        } catch {
            // Someone else removed it.
        }
        return;
    }
    try {
        const now = readLock(lockPath);
        if (now && now.raw === seen.raw && isStale(now)) fs.unlinkSync(lockPath);
    } finally {
        fs.closeSync(fd);
        fs.rmSync(breakPath, { force: true });
    }
}

function describe(lockPath: string, state: LockFileState | undefined): string {
    const h = state?.holder;
    const who = h ? `pid ${h.pid} on ${h.host} since ${h.since}` : "a process that has not written its pid yet";
    return `${lockPath} is held by ${who}`;
}

/**
 * Takes the lock of `target`, waiting up to `timeoutMs` for another holder;
 * throws LockTimeoutError naming the holder and the lock file on timeout.
 */
export function acquireLock(target: string, options: LockOptions = {}): Lock {
    const lockPath = lockPathOf(target);
    const timeoutMs = options.timeoutMs ?? 15_000;
    const pollMs = options.pollMs ?? 20;
    const deadline = Date.now() + timeoutMs;
    const holder: LockHolder = { pid: process.pid, host: os.hostname(), since: new Date().toISOString(), token: randomBytes(16).toString("hex") };
    const content = `${JSON.stringify(holder)}\n`;
    for (;;) {
        if (tryCreate(lockPath, content)) return { path: lockPath, release: () => releaseLock(lockPath, holder.token) };
        const state = readLock(lockPath);
        if (state === undefined) continue;
        if (isStale(state)) {
            breakStale(lockPath, state);
            continue;
        }
        if (Date.now() >= deadline) {
            const waited = timeoutMs >= 1000 ? `${Math.round(timeoutMs / 100) / 10} s` : `${timeoutMs} ms`;
            throw new LockTimeoutError(`${describe(lockPath, state)}; gave up after ${waited}. Another promote is still running; if none is, remove ${lockPath}`);
        }
        sleepSync(pollMs + Math.floor(Math.random() * pollMs));
    }
}

/**
 * Creates the lock file with its content in one step: the content goes to a
 * temporary file that is hard-linked to the lock path (fails if it exists),
 * so a lock is never seen empty. Without hard links: O_EXCL, then write.
 */
function tryCreate(lockPath: string, content: string): boolean {
    const tmp = `${lockPath}.${process.pid}.${randomBytes(6).toString("hex")}.tmp`;
    try {
        fs.writeFileSync(tmp, content, { flag: "wx", mode: 0o644 });
        try {
            fs.linkSync(tmp, lockPath);
            return true;
        } catch (error) {
            const code = (error as NodeJS.ErrnoException).code;
            if (code === "EEXIST") return false;
            if (code !== "EPERM" && code !== "ENOTSUP" && code !== "EOPNOTSUPP" && code !== "EXDEV") throw error;
        }
    } finally {
        fs.rmSync(tmp, { force: true });
    }
    let fd: number;
    try {
        fd = fs.openSync(lockPath, "wx", 0o644);
    } catch (error) {
        if ((error as NodeJS.ErrnoException).code === "EEXIST") return false;
        throw error;
    }
    try {
        fs.writeFileSync(fd, content);
        fs.fsyncSync(fd);
    } finally {
        fs.closeSync(fd);
    }
    return true;
}

function releaseLock(lockPath: string, token: string): void {
    const state = readLock(lockPath);
    if (state?.holder?.token === token) fs.rmSync(lockPath, { force: true });
}

/** Runs `fn` holding the lock of `target`. */
export function withLock<T>(target: string, fn: () => T, options: LockOptions = {}): T {
    const lock = acquireLock(target, options);
    try {
        return fn();
    } finally {
        lock.release();
    }
}

/**
 * Replaces `target` with `data` atomically: a temporary file in the same
 * directory (same permission bits as the target), fsync, rename, fsync of
 * the directory. The temporary file is removed on any error.
 */
export function writeFileAtomic(target: string, data: string | Uint8Array): void {
    const dir = path.dirname(target);
    const tmp = path.join(dir, `.${path.basename(target)}.${process.pid}.${randomBytes(6).toString("hex")}.tmp`);
    let mode = 0o644;
    try {
        mode = fs.statSync(target).mode & 0o7777;
    } catch (error) {
        if ((error as NodeJS.ErrnoException).code !== "ENOENT") throw error;
    }
    const fd = fs.openSync(tmp, "wx", mode);
    try {
        try {
            fs.fchmodSync(fd, mode);
            fs.writeFileSync(fd, data);
            fs.fsyncSync(fd);
        } finally {
            fs.closeSync(fd);
        }
        fs.renameSync(tmp, target);
    } catch (error) {
        fs.rmSync(tmp, { force: true });
        throw error;
    }
    try {
        const dirFd = fs.openSync(dir, "r");
        try {
            fs.fsyncSync(dirFd);
        } finally {
            fs.closeSync(dirFd);
        }
    } catch {
        // Not every platform can fsync a directory; the rename itself is atomic.
    }
}
