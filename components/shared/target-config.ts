/**
 * The `targets` key of the build and serve sections: a stack's own hardware
 * targets, each a patch of a catalog entry (same name or `extends`) or a
 * whole new target, merged onto the catalog and checked (pure).
 */
import { z } from "zod";
import {
    CATALOG,
    DERIVED_BUILD_ARGS,
    PLATFORMS,
    POOLS,
    type HardwareTarget,
    type TargetSpec,
    cpuFeatureProblem,
    cudaArchProblems,
    poolMatchesPlatform,
    resolveTarget,
} from "./hardware";
import { type Report, within, zodProblems } from "./problems";
import { imageRef, name, strict, stringMap } from "./schema";

/** Build args whose names say they carry a credential: those belong in build secrets. */

const cudaSchema = strict({
    version: z.string().regex(/^\d+\.\d+(\.\d+)?$/, "CUDA version is major.minor[.patch]"),
    archList: z.array(z.string()).min(1, "needs at least one compute capability").max(32),
});

/** Every field of a target; used for catalog entries and for stack targets after merging. */
export const targetSpecSchema = strict({
    description: z.string().min(1),
    platform: z.enum(PLATFORMS),
    baseImage: imageRef,
    runtimeBaseImage: imageRef.optional(),
    stage: z.string().regex(/^[A-Za-z][A-Za-z0-9_.-]*$/, "must be a Dockerfile stage name"),
    pool: z.enum(POOLS),
    buildArgs: stringMap,
    cpuFeatures: z.array(z.string().regex(/^[a-z0-9_]+$/, "CPU feature flags are as in /proc/cpuinfo")).max(64),
    cuda: cudaSchema.optional(),
    buildTimeoutMinutes: z.number().int().min(5).max(24 * 60),
});

/** A stack's target: a patch of a catalog entry (same name or `extends`) or a whole new target. */
const targetPatchSchema = strict({
    extends: z.string().optional(),
    description: z.string().optional(),
    platform: z.unknown().optional(),
    baseImage: z.unknown().optional(),
    runtimeBaseImage: z.unknown().optional(),
    stage: z.unknown().optional(),
    pool: z.unknown().optional(),
    buildArgs: z.record(z.string(), z.unknown()).optional(),
    cpuFeatures: z.unknown().optional(),
    cuda: z.unknown().optional(),
    buildTimeoutMinutes: z.unknown().optional(),
});
export type TargetPatch = z.infer<typeof targetPatchSchema>;

/** `build.targets` / `serve.targets`: target name -> patch. Default {}. */
export const targetsSchema = z
    .record(name("target name"), targetPatchSchema)
    .superRefine((targets, ctx) => {
        const n = Object.keys(targets).length;
        if (n > 50) ctx.addIssue({ code: "custom", message: `declares ${n} targets; at most 50` });
    })
    .prefault({});

/**
 * The catalog with a section's targets merged onto it, each merged target
 * checked. Keys are relative to the section's `targets`.
 */
export function resolveTargets(patches: Readonly<Record<string, TargetPatch>>, report: Report): Record<string, HardwareTarget> {
    const resolved: Record<string, HardwareTarget> = {};
    for (const [targetName, spec] of Object.entries(CATALOG)) resolved[targetName] = resolveTarget(targetName, spec);
    for (const [targetName, patch] of Object.entries(patches)) {
        const at = within(report, [targetName]);
        const baseName = patch.extends ?? (targetName in CATALOG ? targetName : undefined);
        if (patch.extends !== undefined && !(patch.extends in CATALOG)) {
            at(["extends"], `unknown catalog target; allowed: ${Object.keys(CATALOG).sort().join(", ")}`);
            continue;
        }
        const base: Partial<TargetSpec> = baseName ? CATALOG[baseName] : {};
        const { extends: _ignored, ...fields } = patch;
        const merged: Record<string, unknown> = { ...base };
        for (const [k, v] of Object.entries(fields)) if (v !== undefined) merged[k] = v;
        if (base.buildArgs && fields.buildArgs) merged.buildArgs = { ...base.buildArgs, ...fields.buildArgs };
        if (!baseName && merged.description === undefined) merged.description = `stack target ${targetName}`;
        const checked = targetSpecSchema.safeParse(merged);
        if (!checked.success) {
            for (const p of zodProblems(checked.error)) at(p.keys, p.message);
            continue;
        }
        const target = checked.data;
        if (!poolMatchesPlatform(target.pool, target.platform)) {
            at(["pool"], `pool "${target.pool}" cannot build ${target.platform} natively; allowed: ${target.platform === "linux/arm64" ? "arm64" : "amd64, gpu"}`);
        }
        if (patch.cpuFeatures !== undefined) {
            target.cpuFeatures.forEach((feature, i) => {
                const problem = cpuFeatureProblem(feature, target.platform);
                if (problem) at(["cpuFeatures", i], problem);
            });
        } else if (!target.cuda) {
            // Features inherited from the catalog entry, of another platform: one problem, where the platform changed.
            // (A GPU target on linux/arm64 is refused as such by the serve section and the pools; not twice.)
            const foreign = target.cpuFeatures.filter((f) => cpuFeatureProblem(f, target.platform) !== undefined);
            if (foreign.length > 0) at(["platform"], `the CPU features inherited from ${baseName} (${foreign.join(", ")}) are not ${target.platform} features; set cpuFeatures for this platform too`);
        }
        if (target.cuda) {
            for (const p of cudaArchProblems(target.cuda)) at(["cuda"], p);
        }
        for (const derived of DERIVED_BUILD_ARGS) {
            if (derived in (fields.buildArgs ?? {})) {
                at(["buildArgs", derived], "is derived from the target's structured fields (baseImage, cuda, cpuFeatures); set those instead");
            }
        }
        resolved[targetName] = resolveTarget(targetName, target);
    }
    return resolved;
}
