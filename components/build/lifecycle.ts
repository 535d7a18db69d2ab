/**
 * ECR lifecycle policy documents (pure, typed; serialised with JSON.stringify).
 *
 * Release repositories never get an "untagged" rule: the per-platform
 * children of a multi-arch index are untagged, and such a rule deletes them
 * from under the index. Only tagged release images are counted, per target.
 * Cache repositories expire untagged manifests (superseded cache exports);
 * the current `cache-<target>` tag is tagged, so it is never expired.
 */
import type { LifecyclePolicy } from "../shared/ecr-lifecycle";
import { releaseTagPattern } from "./naming";

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
