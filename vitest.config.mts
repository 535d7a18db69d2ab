import { defineConfig } from "vitest/config";

/**
 * A failed apply() rejects every Output derived from it. Pulumi's own runtime
 * reports such a failure once; under vitest each derived Output's internal
 * promise shows up as an "unhandled" error. Tests that provoke one of the
 * errors below assert the primary rejection themselves, so only these
 * duplicates are ignored; every other unhandled error still fails the run.
 */
const EXPECTED_REJECTIONS = [/^build stack \S+ exports .*(not pinned by digest|no image)/];

export default defineConfig({
    test: {
        include: ["test/**/*.test.ts"],
        testTimeout: 60_000,
        hookTimeout: 60_000,
        // Each test file runs in its own forked process, so Pulumi's process-wide
        // runtime state is never shared between files running in parallel.
        pool: "forks",
        maxWorkers: 2,
        onUnhandledError: (error: { message?: string }) => !EXPECTED_REJECTIONS.some((re) => re.test(error.message ?? "")),
    },
});
