/**
 * The capacity a hardware target runs on (pure): one ECS capacity provider
 * (Auto Scaling group) per kind.
 */
import type { HardwareTarget } from "../shared/hardware";

/** The capacity a target runs on: one ECS capacity provider (Auto Scaling group) per kind. */
export const HARDWARE_KINDS = ["gpu", "arm64", "cpu"] as const;
export type HardwareKind = (typeof HARDWARE_KINDS)[number];

export function hardwareKindOf(target: HardwareTarget): HardwareKind {
    if (target.runtime.gpu) return "gpu";
    return target.runtime.cpuArchitecture === "ARM64" ? "arm64" : "cpu";
}

/** The kinds a set of targets needs, in HARDWARE_KINDS order, without duplicates. */
export function hardwareKindsOf(targets: Iterable<HardwareTarget>): HardwareKind[] {
    const used = new Set<HardwareKind>();
    for (const t of targets) used.add(hardwareKindOf(t));
    return HARDWARE_KINDS.filter((k) => used.has(k));
}
