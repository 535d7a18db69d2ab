/**
 * ECR lifecycle policy documents (pure, typed; serialised with JSON.stringify).
 *
 * Release repositories never get an "untagged" rule: the per-platform
 * children of a multi-arch index are untagged, and such a rule deletes them
 * from under the index. Only tagged release images are counted, per target.
 * Cache repositories expire untagged manifests (superseded cache exports);
 * the current `cache-<target>` tag is tagged, so it is never expired.
 */
import { releaseTagPattern } from "./naming";

export interface LifecycleSelection {
    readonly tagStatus: "tagged" | "untagged" | "any";
    readonly tagPatternList?: readonly string[];
    readonly countType: "imageCountMoreThan" | "sinceImagePushed";
    readonly countUnit?: "days";
    readonly countNumber: number;
}

export interface LifecycleRule {
    readonly rulePriority: number;
    readonly description: string;
    readonly selection: LifecycleSelection;
    readonly action: { readonly type: "expire" };
}

export interface LifecyclePolicy {
    readonly rules: readonly LifecycleRule[];
}

/** Keep the last `keep` release tags of each target; nothing else expires. */
export function releaseLifecyclePolicy(targets: readonly string[], keep: number): LifecyclePolicy {
    return {
        rules: [...targets].sort().map((target, i) => ({
            rulePriority: i + 1,
            description: `keep the last ${keep} releases of ${target}`,
            selection: {
                tagStatus: "tagged",
                tagPatternList: [releaseTagPattern(target)],
                countType: "imageCountMoreThan",
                countNumber: keep,
            },
            action: { type: "expire" },
        })),
    };
}

/** Expire superseded (untagged) cache manifests after `days`. */
export function cacheLifecyclePolicy(days: number): LifecyclePolicy {
    return {
        rules: [
            {
                rulePriority: 1,
                description: `expire superseded cache manifests after ${days} days`,
                selection: { tagStatus: "untagged", countType: "sinceImagePushed", countUnit: "days", countNumber: days },
                action: { type: "expire" },
            },
        ],
    };
}

/** Pulled-through upstream images are a cache: expire after `days`, ECR re-fetches on the next pull. */
export function pullThroughLifecyclePolicy(days: number): LifecyclePolicy {
    return {
        rules: [
            {
                rulePriority: 1,
                description: `expire cached upstream images after ${days} days (re-fetched on demand)`,
                selection: { tagStatus: "any", countType: "sinceImagePushed", countUnit: "days", countNumber: days },
                action: { type: "expire" },
            },
        ],
    };
}
