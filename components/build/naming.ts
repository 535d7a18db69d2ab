/**
 * Names and tags (pure). One place decides how repositories, tags and
 * Pulumi resource names are spelled, so tests and components agree.
 */

/** ECR repository holding an image's releases: `<prefix>/<image>`. */
export function imageRepositoryName(prefix: string, image: string): string {
    return `${prefix}/${image}`;
}

/** ECR repository holding an image's BuildKit cache: `<prefix>/cache/<image>`. */
export function cacheRepositoryName(prefix: string, image: string): string {
    return `${prefix}/cache/${image}`;
}

/** Overwritable cache tag of one target: `cache-<target>`. */
export function cacheTag(target: string): string {
    return `cache-${target}`;
}

/** Pattern (ECR lifecycle wildcard) that matches every release tag of a target (`<target>.<hash>`; target names have no dots). */
export function releaseTagPattern(target: string): string {
    return `${target}.*`;
}

/** Tag pattern of the deployment markers (`deployed-<stack>-<service>-<container>`): mutable, never expired. */
export const DEPLOYED_TAG_PATTERN = "deployed-*";

/** Tag pattern of multi-arch indexes (`multiarch.<hash>`). */
export const MULTIARCH_TAG_PATTERN = "multiarch.*";

/** Tag pattern for cache tags; excluded from tag immutability in the cache repository. */
export const CACHE_TAG_PATTERN = "cache-*";

/** Pulumi resource name of one image × target. */
export function targetImageName(image: string, target: string): string {
    return `${image}-${target}`;
}
