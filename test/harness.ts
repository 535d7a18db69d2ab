/**
 * Test harness: the mock runtime of scripts/lib/mock-runtime.ts with vitest's
 * module registry, so each evaluation imports a fresh copy of index.ts.
 */
import * as pulumi from "@pulumi/pulumi";
import { vi } from "vitest";
import {
    type EvaluateOptions,
    type Evaluation,
    type ProgramLoader,
    cliConfig,
    evaluate as evaluateWith,
    projectFile,
    waitForRPCs,
} from "../scripts/lib/mock-runtime";

export * from "../scripts/lib/mock-runtime";

/** vitest: a fresh copy of index.ts per evaluation. */
export const importProgram: ProgramLoader = async () => {
    vi.resetModules();
    return (await import("../index")) as Record<string, unknown>;
};

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
    );
    vi.resetModules();
    try {
        await import("../index");
    } catch (error) {
        await waitForRPCs();
        return { error: error as Error, registered };
    }
    throw new Error("the program did not fail");
}
