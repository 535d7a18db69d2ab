/**
 * Cross-field checks of the `runners` section (pure): CI sources, instance
 * types per pool kind, volumes, AMIs, the BuildKit image. Runs once, when
 * the stack config is loaded.
 */
import { POOLS } from "../shared/hardware";
import { NVIDIA_X86_FAMILIES, instanceTypeProblem, isGraviton, isNvidiaX86 } from "../shared/instance-types";
import { ingressRangeProblem } from "../shared/cidr";
import type { Report } from "../shared/problems";
import { buildkitImageProblem } from "./buildkitd";
import { MIN_VOLUME_GIB, type RunnersConfig } from "./schema";

/** Zone names AWS takes besides the canonical IANA ones Intl lists (ICU leaves UTC and the Etc/GMT offsets out). */
const EXTRA_ZONES = [
    "UTC",
    "Etc/UTC",
    "GMT",
    "Etc/GMT",
    ...Array.from({ length: 12 }, (_, i) => `Etc/GMT+${i + 1}`),
    ...Array.from({ length: 14 }, (_, i) => `Etc/GMT-${i + 1}`),
];

let zones: ReadonlySet<string> | undefined;
function knownZones(): ReadonlySet<string> {
    zones ??= new Set([...Intl.supportedValuesOf("timeZone"), ...EXTRA_ZONES]);
    return zones;
}

/** Does Intl know this zone (any case, aliases too)? */
function intlKnows(zone: string): boolean {
    try {
        new Intl.DateTimeFormat("en-US", { timeZone: zone });
        return true;
    } catch {
        return false;
    }
}

/** IANA's spelling: every part of the name starts with a capital (Europe/Berlin, America/Port-au-Prince, Asia/Kolkata, Etc/GMT+9). */
const IANA_CASE = /^[A-Z][A-Za-z0-9_+-]*(\/[A-Z][A-Za-z0-9_+-]*)*$/;

/** `asia/kolkata` -> `Asia/Kolkata`. */
function capitalized(zone: string): string {
    return zone.split("/").map((part) => part.replace(/(^|[_-])([a-z])/g, (_, sep: string, c: string) => `${sep}${c.toUpperCase()}`)).join("/");
}

/**
 * Why `zone` is not an IANA time zone name as Auto Scaling takes it
 * (undefined: it is): Intl's zones (which lack some IANA names, e.g.
 * Asia/Kolkata, and UTC) and any name Intl knows spelt as IANA spells it
 * (Intl itself takes any case). A name in other case or with spaces gets
 * "did you mean".
 */
export function timeZoneProblem(zone: string): string | undefined {
    const known = knownZones();
    if (known.has(zone) || (IANA_CASE.test(zone) && intlKnows(zone))) return undefined;
    const lower = zone.trim().toLowerCase();
    const near = [...known].find((z) => z.toLowerCase() === lower) ?? (intlKnows(capitalized(lower)) ? capitalized(lower) : undefined);
    const suggestion = near !== undefined && near !== zone ? `; did you mean ${near}?` : "";
    return `must be an IANA time zone such as Europe/Berlin or UTC${suggestion}`;
}

/**
 * Cross-field checks of `runners` and against the pull-through rules the
 * registry has. Reports each problem with its key path relative to the
 * section. (Which targets build on which pool is the build stack's check,
 * against this stack's outputs: components/build/checks.ts.)
 */
export function checkRunners(runners: RunnersConfig, pullThroughPrefixes: readonly string[], report: Report): void {
    const { ciSources } = runners;
    ciSources.cidrs.forEach((c, i) => {
        const problem = ingressRangeProblem(c);
        if (problem) report(["ciSources", "cidrs", i], `${problem}; CI outside the VPC reaches the pools through the SSM tunnel and needs no range`);
    });
    if (runners.scaleToZeroSchedule) {
        const { timeZone, recurrences } = runners.scaleToZeroSchedule;
        const zoneProblem = timeZoneProblem(timeZone);
        if (zoneProblem) report(["scaleToZeroSchedule", "timeZone"], zoneProblem);
        const seen = new Map<string, number>();
        recurrences.forEach((cron, i) => {
            // The same times written alike (spacing, case of names) are one schedule.
            const key = cron.trim().split(/\s+/).join(" ").toUpperCase();
            const first = seen.get(key);
            if (first !== undefined) report(["scaleToZeroSchedule", "recurrences", i], `repeats recurrences[${first}]: each recurrence is one scheduled action per pool; remove the duplicate`);
            else seen.set(key, i);
        });
    }

    for (const kind of POOLS) {
        const pool = runners.pools[kind];
        if (!pool) continue;
        const at = ["pools", kind];
        const seen = new Set<string>();
        pool.instanceTypes.forEach((type, i) => {
            if (seen.has(type)) report([...at, "instanceTypes", i], "instance type listed twice");
            seen.add(type);
            const problem = instanceTypeProblem(type);
            if (problem) report([...at, "instanceTypes", i], problem);
            else if (kind === "arm64" && !isGraviton(type)) {
                report([...at, "instanceTypes", i], "the arm64 pool takes Graviton types only (c7g, c8g, m7g, r7g ...: a `g` after the generation digit)");
            } else if (kind === "gpu" && !isNvidiaX86(type)) {
                report([...at, "instanceTypes", i], `the gpu pool takes NVIDIA x86-64 types only; allowed families: ${NVIDIA_X86_FAMILIES.join(", ")}`);
            } else if (kind === "amd64" && isGraviton(type)) {
                report([...at, "instanceTypes", i], "the amd64 pool takes x86-64 types only; Graviton types belong to the arm64 pool");
            }
        });
        if (pool.onDemandBaseCapacity > pool.maxSize) {
            report([...at, "onDemandBaseCapacity"], `exceeds maxSize (${pool.maxSize})`);
        }
        if (pool.volumeGiB < MIN_VOLUME_GIB[kind]) {
            report([...at, "volumeGiB"], `the ${kind} pool needs at least ${MIN_VOLUME_GIB[kind]} GiB (the AMI plus room for BuildKit)`);
        }
        const param = pool.amiParameter;
        if (kind === "arm64" && !param.includes("arm64")) {
            report([...at, "amiParameter"], "the arm64 pool needs an arm64 AMI parameter");
        } else if (kind !== "arm64" && !param.includes("x86_64")) {
            report([...at, "amiParameter"], `the ${kind} pool needs an x86_64 AMI parameter`);
        }
        if (kind === "gpu" && !/nvidia|gpu/.test(param)) {
            report([...at, "amiParameter"], "the gpu pool needs a GPU AMI (NVIDIA driver), e.g. the Deep Learning Base OSS NVIDIA driver AMI");
        }
    }

    const imageProblem = buildkitImageProblem(runners.buildkitImage, pullThroughPrefixes);
    if (imageProblem) report(["buildkitImage"], imageProblem);
}
