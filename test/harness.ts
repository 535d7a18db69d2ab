/**
 * Test harness: the mock runtime of scripts/lib/mock-runtime.ts with vitest's
 * module registry, so each evaluation imports a fresh copy of index.ts.
 */
import * as fs from "node:fs";
import * as pulumi from "@pulumi/pulumi";
import { vi } from "vitest";
import { ConfigError } from "../components/shared/problems";
import { type StackConfig, loadStackConfig } from "../components/stack-config";
import {
    type EvaluateOptions,
    type Evaluation,
    type ProgramLoader,
    cliConfig,
    evaluate as evaluateWith,
    ROOT,
    projectFile,
    awsBuildStackNames,
    waitForRPCs,
} from "../scripts/lib/mock-runtime";

export * from "../scripts/lib/mock-runtime";

/** vitest: a fresh copy of index.ts per evaluation. */
export const importProgram: ProgramLoader = async () => {
    vi.resetModules();
    return (await import("../index")) as Record<string, unknown>;
};

/** Validates a config map (as a stack file's `config:` would give it) the way the program does. */
export function loadConfig(config: Record<string, unknown>, stack = "build"): StackConfig {
    return loadStackConfig(cliConfig(config), { project: projectFile().name, stack, projectRoot: ROOT, pathExists: fs.existsSync });
}

/** The problems a config is refused with ([] when it is accepted); anything but a ConfigError is rethrown. */
export function configProblems(config: Record<string, unknown>, stack = "build"): string[] {
    try {
        loadConfig(config, stack);
    } catch (error) {
        if (error instanceof ConfigError) return [...error.problems];
        throw error;
    }
    return [];
}

let buildOutputsOnce: Promise<Record<string, unknown>> | undefined;

/** The outputs of the build stack file, evaluated once per test file (environments that follow it need them). */
export function buildStackOutputs(): Promise<Record<string, unknown>> {
    const stack = awsBuildStackNames()[0];
    if (!stack) throw new Error("no stack file has a build section");
    buildOutputsOnce ??= evaluate(stack).then((ev) => ev.outputs);
    return buildOutputsOnce;
}

/** Evaluates index.ts for `stack` (its file under stacks/, unless `options.config` replaces it). */
export function evaluate(stack: string, options: EvaluateOptions = {}): Promise<Evaluation> {
    return evaluateWith(stack, options, importProgram);
}

/** Evaluates and expects the program to throw; returns the error and what got registered. */
export async function evaluateFailure(stack: string, config: Record<string, unknown>): Promise<{ error: Error; registered: number }> {
    let registered = 0;
    const project = projectFile().name;
    pulumi.runtime.setAllConfig(cliConfig(config));
    await pulumi.runtime.setMocks(
        {
            newResource: (args) => {
                registered++;
                return { id: `${args.name}-id`, state: args.inputs as Record<string, unknown> };
            },
            call: (args) => args.inputs as Record<string, unknown>,
        },
        project,
        stack,
        false,
        "organization",
    );
    vi.resetModules();
    try {
        const program = (await import("../index")) as { default: () => Promise<unknown> };
        await program.default();
    } catch (error) {
        await waitForRPCs();
        return { error: error as Error, registered };
    }
    throw new Error("the program did not fail");
}

/**
 * Runs something that must fail inside an apply (e.g. a reference that is not
 * a digest). Under mocks every resource fed by the failing Output leaves an
 * unhandled rejection: collect them here instead of letting them leak into
 * vitest, let the run's RPCs drain (at most a second: a rejected input never
 * settles), and return every message, the run's own error first (if it threw).
 */
export async function collectRejections(run: () => Promise<unknown>): Promise<string[]> {
    const saved = process.listeners("unhandledRejection");
    process.removeAllListeners("unhandledRejection");
    const seen: unknown[] = [];
    const collect = (reason: unknown) => void seen.push(reason);
    process.on("unhandledRejection", collect);
    try {
        try {
            await run();
        } catch (error) {
            seen.unshift(error);
        }
        const drained = waitForRPCs().catch((e: unknown) => void seen.push(e));
        await Promise.race([drained, new Promise((resolve) => setTimeout(resolve, 1000))]);
        await new Promise((resolve) => setTimeout(resolve, 50));
        return seen.map((e) => (e instanceof Error ? e.message : String(e)));
    } finally {
        process.off("unhandledRejection", collect);
        for (const listener of saved) process.on("unhandledRejection", listener);
    }
}

/** Evaluates a stack that must fail inside an apply; returns every error message (see collectRejections). */
export async function evaluateRejection(stack: string, options: EvaluateOptions = {}): Promise<string[]> {
    const messages = await collectRejections(() => evaluate(stack, options));
    if (messages.length === 0) throw new Error(`stack ${stack} evaluated without an error`);
    return messages;
}
