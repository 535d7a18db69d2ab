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
import { DEPLOYED_TAG_PATTERN, MULTIARCH_TAG_PATTERN, releaseTagPattern } from "./naming";

/**
 * Most images a protecting rule selects before it would expire any: far more
 * deployment markers than any project has, so the rule never expires one.
 */
export const KEEP_ALL_COUNT = 10000;

/**
 * Release lifecycle. Rule 1 selects every image with a deployment marker
 * (`deployed-*`, set by CI on what environments run) and, by ECR's rule
 * priority, no lower rule may expire an image a higher rule selects: a
 * deployed digest is never expired. Then per target (`<target>.*`) and for
 * multi-arch indexes (`multiarch.*`): keep the last `keep`. A removed target
 * has no rule, so its releases stay until removed by hand.
 */
export function releaseLifecyclePolicy(targets: readonly string[], keep: number): LifecyclePolicy {
    const kept = [...targets].sort().map((target) => ({ pattern: releaseTagPattern(target), what: `releases of ${target}` }));
    kept.push({ pattern: MULTIARCH_TAG_PATTERN, what: "multi-arch indexes" });
    return {
        rules: [
            {
                rulePriority: 1,
                description: "keep every image an environment deploys (deployment markers)",
                selection: { tagStatus: "tagged", tagPatternList: [DEPLOYED_TAG_PATTERN], countType: "imageCountMoreThan", countNumber: KEEP_ALL_COUNT },
                action: { type: "expire" },
            },
            ...kept.map((k, i) => ({
                rulePriority: i + 2,
                description: `keep the last ${keep} ${k.what}`,
                selection: { tagStatus: "tagged" as const, tagPatternList: [k.pattern], countType: "imageCountMoreThan" as const, countNumber: keep },
                action: { type: "expire" as const },
            })),
        ],
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
