/**
 * What the build stack reads from the runners stack (pure): the pools a target
 * can build on (their builders, disk, Auto Scaling groups) and the registry
 * (its host, the project's repository namespace, the pull-through prefixes).
 * The program reads these outputs before it registers anything and refuses a
 * runners stack that is missing or does not fit, as config errors.
 */
import { POOLS, type Pool } from "../shared/hardware";

export interface RunnerPoolFact {
    readonly pool: Pool;
    readonly builder: string;
    readonly volumeGiB: number;
    readonly autoScalingGroupName: string;
}

export interface RunnersStackFacts {
    readonly pools: readonly RunnerPoolFact[];
    readonly registry: {
        readonly host: string;
        readonly repositoryPrefix: string;
        readonly pullThroughPrefixes: readonly string[];
    };
}

const isRecord = (v: unknown): v is Record<string, unknown> => typeof v === "object" && v !== null && !Array.isArray(v);

/**
 * The runners stack's facts from its `runners` and `registry` outputs, or the
 * problems with them (each a sentence naming the output). Without `needPools`
 * only the registry is read.
 */
export function runnersStackFacts(name: string, runners: unknown, registry: unknown, needPools = true): { facts?: RunnersStackFacts; problems: string[] } {
    const problems: string[] = [];
    if (runners === undefined && registry === undefined) {
        return { problems: [`runners stack ${name} exports no runners and no registry: deploy it first (pulumi up -s runners), or name the right stack in build.runnersStack`] };
    }
    const pools: RunnerPoolFact[] = [];
    if (!needPools) {
        // Only its registry is read (images build on a builder of their own).
    } else if (!isRecord(runners)) {
        problems.push(`runners stack ${name} exports no runner pools (output runners); give it a runners section`);
    } else {
        for (const [key, value] of Object.entries(runners)) {
            const pool = POOLS.find((p) => p === key);
            if (!pool || !isRecord(value) || typeof value.builder !== "string" || typeof value.volumeGiB !== "number" || typeof value.autoScalingGroupName !== "string") {
                problems.push(`runners stack ${name}: output runners.${key} is not a runner pool this program made`);
                continue;
            }
            pools.push({ pool, builder: value.builder, volumeGiB: value.volumeGiB, autoScalingGroupName: value.autoScalingGroupName });
        }
    }
    const host = isRecord(registry) ? registry.host : undefined;
    const prefix = isRecord(registry) ? registry.repositoryPrefix : undefined;
    const prefixes = isRecord(registry) ? registry.pullThroughPrefixes : undefined;
    if (typeof host !== "string" || typeof prefix !== "string" || !Array.isArray(prefixes) || !prefixes.every((p) => typeof p === "string")) {
        problems.push(`runners stack ${name} exports no registry (output registry with host, repositoryPrefix and pullThroughPrefixes)`);
        return { problems };
    }
    return { facts: { pools, registry: { host, repositoryPrefix: prefix, pullThroughPrefixes: prefixes as string[] } }, problems };
}
