/**
 * ECR pull-through cache: which upstream registries, under which prefix, and
 * how an upstream base image is rewritten to go through the cache (pure).
 */
import type { LifecyclePolicy } from "../shared/ecr-lifecycle";

export type UpstreamKey = "ecrPublic" | "quay" | "dockerHub" | "github";

export interface Upstream {
    readonly key: UpstreamKey;
    /** Host names a reference may use for this registry. */
    readonly hosts: readonly string[];
    /** URL ECR pulls from. */
    readonly upstreamRegistryUrl: string;
    /** Repository prefix in our registry. */
    readonly prefix: string;
    /** Needs a Secrets Manager secret named ecr-pullthroughcache/... */
    readonly needsCredentials: boolean;
}

export const UPSTREAMS: readonly Upstream[] = [
    { key: "ecrPublic", hosts: ["public.ecr.aws"], upstreamRegistryUrl: "public.ecr.aws", prefix: "ecr-public", needsCredentials: false },
    { key: "quay", hosts: ["quay.io"], upstreamRegistryUrl: "quay.io", prefix: "quay", needsCredentials: false },
    { key: "dockerHub", hosts: ["docker.io", "registry-1.docker.io", "index.docker.io"], upstreamRegistryUrl: "registry-1.docker.io", prefix: "docker-hub", needsCredentials: true },
    { key: "github", hosts: ["ghcr.io"], upstreamRegistryUrl: "ghcr.io", prefix: "github", needsCredentials: true },
];

export interface ParsedImage {
    readonly host: string;
    readonly path: string;
    /** ":tag", "@sha256:..." or ":tag@sha256:..." */
    readonly suffix: string;
}

/** Splits an image reference into registry host, repository path and tag/digest. */
export function parseImage(ref: string): ParsedImage {
    const at = ref.indexOf("@");
    const beforeDigest = at >= 0 ? ref.slice(0, at) : ref;
    const digest = at >= 0 ? ref.slice(at) : "";
    const slash = beforeDigest.indexOf("/");
    const first = slash >= 0 ? beforeDigest.slice(0, slash) : "";
    const hasHost = slash >= 0 && (first.includes(".") || first.includes(":") || first === "localhost");
    const host = hasHost ? first : "docker.io";
    let rest = hasHost ? beforeDigest.slice(slash + 1) : beforeDigest;
    const colon = rest.lastIndexOf(":");
    let tag = "";
    if (colon >= 0 && !rest.slice(colon).includes("/")) {
        tag = rest.slice(colon);
        rest = rest.slice(0, colon);
    }
    if (host === "docker.io" && !rest.includes("/")) rest = `library/${rest}`;
    return { host, path: rest, suffix: `${tag}${digest}` };
}

/**
 * Rewrites an upstream image to our registry's pull-through prefix when a rule
 * for its registry is enabled; otherwise returns it unchanged.
 */
export function resolveThroughCache(ref: string, registryHost: string, enabled: ReadonlySet<UpstreamKey>): string {
    const image = parseImage(ref);
    const upstream = UPSTREAMS.find((u) => enabled.has(u.key) && u.hosts.includes(image.host));
    if (!upstream) return ref;
    return `${registryHost}/${upstream.prefix}/${image.path}${image.suffix}`;
}

/** The pull-through options of `build.registry.pullThrough` this module needs. */
export interface PullThroughOptions {
    readonly enabled: boolean;
    readonly ecrPublic: boolean;
    readonly quay: boolean;
    readonly dockerHub?: { readonly secretName: string };
    readonly github?: { readonly secretName: string };
}

/** The upstreams that get a rule, with the credentials secret of those that need one. */
export function enabledUpstreams(options: PullThroughOptions): Array<{ readonly upstream: Upstream; readonly secretName?: string }> {
    if (!options.enabled) return [];
    const wanted: Record<UpstreamKey, { on: boolean; secretName?: string }> = {
        ecrPublic: { on: options.ecrPublic },
        quay: { on: options.quay },
        dockerHub: { on: options.dockerHub !== undefined, secretName: options.dockerHub?.secretName },
        github: { on: options.github !== undefined, secretName: options.github?.secretName },
    };
    return UPSTREAMS.filter((u) => wanted[u.key].on).map((upstream) => ({ upstream, secretName: wanted[upstream.key].secretName }));
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

/** Prefixes of the pull-through rules a `registry.pullThrough` config creates. */
export function pullThroughPrefixes(options: PullThroughOptions): string[] {
    return enabledUpstreams(options).map((u) => u.upstream.prefix);
}
