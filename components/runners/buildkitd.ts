/**
 * buildkitd on the runner machines (pure: no Pulumi resources): the daemon
 * config as a typed object and as TOML (mutual TLS on TCP, GC bounded by the
 * pool's volume, max-parallelism, native platform only, registry mirrors
 * pointing at the ECR pull-through cache, CDI for the gpu pool) and the
 * BuildKit image the runners take the binaries from.
 */
import { type Pool, poolPlatform } from "../shared/hardware";
import { isEcrHost } from "../shared/image-refs";
import { UPSTREAMS, type UpstreamKey, parseImage, resolveThroughCache } from "../registry/pullthrough";
import { toToml } from "./toml";

// -------------------------------------------------------------------- paths

/** Where buildkitd reads its TLS files on the runner. */
export const TLS_PATHS = {
    ca: "/etc/buildkit/tls/ca.pem",
    cert: "/etc/buildkit/tls/server.pem",
    key: "/etc/buildkit/tls/server-key.pem",
} as const;

export const BUILDKITD_TOML_PATH = "/etc/buildkit/buildkitd.toml";
export const BUILDKIT_ROOT = "/var/lib/buildkit";
export const BOOTSTRAP_PATH = "/usr/local/sbin/ml-buildkit-bootstrap";
/** CDI spec the gpu pool generates at boot (nvidia-ctk). */
export const NVIDIA_CDI_SPEC = "/etc/cdi/nvidia.yaml";
/** Subnet of BuildKit's own bridge for build steps (kept clear of the usual VPC ranges). */
export const BUILD_BRIDGE_SUBNET = "172.28.0.0/16";

// ------------------------------------------------------------- buildkitd.toml

/** One BuildKit GC policy (BuildKit ≥ 0.17 field names; sizes in bytes). */
export type GcPolicy = {
    readonly all?: boolean;
    readonly filters?: readonly string[];
    readonly keepDuration?: string;
    readonly reservedSpace?: number;
    readonly maxUsedSpace?: number;
    readonly minFreeSpace?: number;
};

/** How buildkitd reaches one registry host. */
export type RegistryHostConfig = {
    readonly mirrors?: readonly string[];
    /** Plain HTTP (a registry on loopback). */
    readonly http?: boolean;
};

export type BuildkitdConfig = {
    readonly root: string;
    readonly log: { readonly format: "json" | "text" };
    readonly grpc: {
        readonly address: readonly string[];
        readonly tls: { readonly cert: string; readonly key: string; readonly ca: string };
    };
    /** CDI devices for `RUN --device`; the kinds in `autoAllowed` need no `--allow device` from the client. */
    readonly cdi: { readonly disabled: boolean; readonly specDirs?: readonly string[]; readonly autoAllowed?: readonly string[] };
    readonly worker: {
        readonly oci: {
            readonly enabled: true;
            readonly platforms: readonly string[];
            readonly snapshotter: string;
            readonly "max-parallelism": number;
            readonly networkMode: "bridge" | "host";
            readonly bridgeSubnet?: string;
            readonly gc: true;
            readonly reservedSpace: number;
            readonly maxUsedSpace: number;
            readonly minFreeSpace: number;
            readonly gcpolicy: readonly GcPolicy[];
        };
        readonly containerd: { readonly enabled: false };
    };
    readonly registry: { readonly [host: string]: RegistryHostConfig };
};

const GIB = 1024 ** 3;

/** Disk kept for the OS, the AMI's own software and logs, per pool kind (the DLAMI is big). */
export const OS_RESERVE_GIB: Readonly<Record<Pool, number>> = { amd64: 20, arm64: 20, gpu: 80 };

/** What BuildKit may use on a volume: 80% of what the OS leaves, in bytes (never negative). */
export function gcBudgetBytes(pool: Pool, volumeGiB: number): number {
    return Math.max(0, Math.floor((volumeGiB - OS_RESERVE_GIB[pool]) * 0.8)) * GIB;
}

/**
 * GC policies bounded by the volume: short-lived local/cache-mount/git data
 * first, then anything older than 60 days, then everything down to the
 * budget. `maxUsedSpace` is the hard bound (what `keepBytes` used to be).
 */
export function gcPolicies(pool: Pool, volumeGiB: number): { worker: Required<Pick<GcPolicy, "reservedSpace" | "maxUsedSpace" | "minFreeSpace">>; policies: GcPolicy[] } {
    const budget = gcBudgetBytes(pool, volumeGiB);
    const tenth = Math.floor(budget / 10 / GIB) * GIB;
    const minFree = Math.max(10, Math.floor(volumeGiB / 10)) * GIB;
    return {
        worker: { reservedSpace: tenth, maxUsedSpace: budget, minFreeSpace: minFree },
        policies: [
            { filters: ["type==source.local", "type==exec.cachemount", "type==source.git.checkout"], keepDuration: "48h", maxUsedSpace: tenth },
            { keepDuration: "1440h", maxUsedSpace: budget },
            { all: true, reservedSpace: tenth, maxUsedSpace: budget, minFreeSpace: minFree },
        ],
    };
}

/** The upstream prefixes ECR pull-through rules use, mapped to their upstream keys. */
export function upstreamKeysOf(prefixes: readonly string[]): Set<UpstreamKey> {
    const keys = new Set<UpstreamKey>();
    for (const prefix of prefixes) {
        const upstream = UPSTREAMS.find((u) => u.prefix === prefix);
        if (!upstream) throw new Error(`unknown pull-through prefix "${prefix}"; known: ${UPSTREAMS.map((u) => u.prefix).join(", ")}`);
        keys.add(upstream.key);
    }
    return keys;
}

/**
 * Registry mirrors: every upstream with a pull-through rule is pulled via
 * `<registryHost>/<prefix>` (BuildKit ≥ 0.12 accepts a path in a mirror).
 * Keyed by the host a Dockerfile names (docker.io, quay.io ...), sorted.
 */
export function registryMirrors(registryHost: string, prefixes: readonly string[]): Record<string, { mirrors: string[] }> {
    const keys = upstreamKeysOf(prefixes);
    const out: Record<string, { mirrors: string[] }> = {};
    for (const upstream of UPSTREAMS) {
        if (!keys.has(upstream.key)) continue;
        out[upstream.hosts[0]] = { mirrors: [`${registryHost}/${upstream.prefix}`] };
    }
    return Object.fromEntries(Object.entries(out).sort(([a], [b]) => a.localeCompare(b)));
}

/** `repo:tag@sha256:<64 hex>`: the only form of the buildkit image runners run. */
const PINNED_IMAGE_RE = /^(?<repo>[^@\s]+?):(?<tag>[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})@(?<digest>sha256:[a-f0-9]{64})$/;

/**
 * The buildkit image split for the boot: the tag (pulled first, through the
 * cache) and the digest (pulled next, and what runs). Undefined unless the
 * image is `repo:tag@sha256:<64 hex>`.
 */
export function pinnedImageRefs(image: string): { readonly byTag: string; readonly byDigest: string } | undefined {
    const m = PINNED_IMAGE_RE.exec(image);
    if (!m?.groups) return undefined;
    const { repo, tag, digest } = m.groups;
    if (repo.slice(repo.lastIndexOf("/") + 1).includes(":")) return undefined;
    return { byTag: `${repo}:${tag}`, byDigest: `${repo}@${digest}` };
}

/**
 * Why runners could not pull the buildkit image, or undefined when they can:
 * it must be pinned as `repo:tag@sha256:<64 hex>` (a tag alone could move
 * under a runner that runs it as root; the tag is kept because ECR's
 * pull-through cache cannot serve a first pull by digest of an image it has
 * not cached, aws/containers-roadmap#2837), and be in an ECR registry already
 * or come from an upstream whose pull-through rule is enabled (runners have
 * no other way out).
 */
export function buildkitImageProblem(image: string, prefixes: readonly string[]): string | undefined {
    if (!pinnedImageRefs(image)) {
        const inspect = `docker buildx imagetools inspect ${image.replace(/@.*$/, "")}`;
        if (!image.includes("@")) {
            return `buildkit image ${image} is a mutable tag: a runner would run as root whatever it points to at boot; pin it as repo:tag@sha256:<64 hex digits> (the index digest: ${inspect})`;
        }
        return `buildkit image ${image} must be repo:tag@sha256:<64 lower-case hex digits>: the tag is pulled through the cache first (ECR's pull-through cache cannot serve a first pull by digest of an image it has not cached, aws/containers-roadmap#2837), then exactly the digest runs`;
    }
    const host = parseImage(image).host;
    if (isEcrHost(host)) return undefined;
    const upstream = UPSTREAMS.find((u) => u.hosts.includes(host));
    if (!upstream) return `buildkit image ${image} is on ${host}, which runners cannot reach; mirror it into the ECR registry`;
    if (!upstreamKeysOf(prefixes).has(upstream.key)) {
        return `buildkit image ${image} needs the "${upstream.prefix}" pull-through rule (runners pull it through ECR); enable it or mirror the image into the ECR registry`;
    }
    return undefined;
}

/** The buildkit image as the runner pulls it (`repo:tag@sha256:...`): through the pull-through cache, or as is when already in ECR. */
export function buildkitImageRef(image: string, registryHost: string, prefixes: readonly string[]): string {
    const problem = buildkitImageProblem(image, prefixes);
    if (problem) throw new Error(problem);
    return resolveThroughCache(image, registryHost, upstreamKeysOf(prefixes));
}

/** Where a buildkitd keeps its state, listens and finds CDI specs, and how build steps get a network. */
export interface BuildkitdLayout {
    readonly root: string;
    readonly tls: { readonly ca: string; readonly cert: string; readonly key: string };
    /** The TCP address (mutual TLS) and a unix socket for buildctl on the box. */
    readonly addresses: readonly string[];
    /** CDI spec directories; undefined: CDI off. */
    readonly cdiSpecDirs?: readonly string[];
    /** Device kinds RUN --device may use without the client asking (`--allow device`). */
    readonly cdiAutoAllowed?: readonly string[];
    /**
     * `bridge`: every build step in its own network namespace (needs the CNI
     * plugins of the BuildKit image); `host`: steps share the host's network.
     */
    readonly network: { readonly mode: "bridge"; readonly subnet: string } | { readonly mode: "host" };
}

/** A runner pool's machine: state on the root volume, TLS from cloud-init and SSM, CDI on the gpu pool (the NVIDIA spec made at boot). */
export function runnerLayout(pool: Pool, port: number): BuildkitdLayout {
    const gpu = pool === "gpu";
    return {
        root: BUILDKIT_ROOT,
        tls: { cert: TLS_PATHS.cert, key: TLS_PATHS.key, ca: TLS_PATHS.ca },
        // TLS applies to the TCP listener; the unix socket is for buildctl on the box (via SSM).
        addresses: [`tcp://0.0.0.0:${port}`, "unix:///run/buildkit/buildkitd.sock"],
        cdiSpecDirs: gpu ? ["/etc/cdi", "/var/run/cdi"] : undefined,
        cdiAutoAllowed: gpu ? [NVIDIA_GPU_DEVICE_KIND] : undefined,
        // Build steps get their own network namespace: with IMDS hop limit 1 they cannot read instance credentials.
        network: { mode: "bridge", subnet: BUILD_BRIDGE_SUBNET },
    };
}

/** The CDI kind of NVIDIA GPUs (`RUN --device=nvidia.com/gpu=all`). */
export const NVIDIA_GPU_DEVICE_KIND = "nvidia.com/gpu";

export interface BuildkitdOptions {
    readonly pool: Pool;
    readonly port: number;
    readonly volumeGiB: number;
    readonly maxParallelism: number;
    readonly registryHost: string;
    /** Pull-through prefixes with a rule (ecr-public, quay, docker-hub, github). */
    readonly pullThroughPrefixes: readonly string[];
    /** Paths, listeners, CDI and network of the daemon. Default: a runner pool's machine (`runnerLayout`). */
    readonly layout?: BuildkitdLayout;
    /** Registry hosts reached over plain HTTP (a registry on loopback). Default: none. */
    readonly plainHttpRegistries?: readonly string[];
}

/** buildkitd.toml as a typed object. */
export function buildkitdConfig(o: BuildkitdOptions): BuildkitdConfig {
    const gc = gcPolicies(o.pool, o.volumeGiB);
    const layout = o.layout ?? runnerLayout(o.pool, o.port);
    const registry: Record<string, RegistryHostConfig> = { ...registryMirrors(o.registryHost, o.pullThroughPrefixes) };
    for (const host of o.plainHttpRegistries ?? []) registry[host] = { ...registry[host], http: true };
    return {
        root: layout.root,
        log: { format: "json" },
        grpc: { address: [...layout.addresses], tls: { ...layout.tls } },
        cdi: layout.cdiSpecDirs
            ? { disabled: false, specDirs: [...layout.cdiSpecDirs], autoAllowed: layout.cdiAutoAllowed && [...layout.cdiAutoAllowed] }
            : { disabled: true },
        worker: {
            oci: {
                enabled: true,
                // Native only: no QEMU binaries are installed, and other platforms are refused.
                platforms: [poolPlatform(o.pool)],
                snapshotter: "overlayfs",
                "max-parallelism": o.maxParallelism,
                networkMode: layout.network.mode,
                bridgeSubnet: layout.network.mode === "bridge" ? layout.network.subnet : undefined,
                gc: true,
                reservedSpace: gc.worker.reservedSpace,
                maxUsedSpace: gc.worker.maxUsedSpace,
                minFreeSpace: gc.worker.minFreeSpace,
                gcpolicy: gc.policies,
            },
            containerd: { enabled: false },
        },
        registry: Object.fromEntries(Object.entries(registry).sort(([a], [b]) => a.localeCompare(b))),
    };
}

export function renderBuildkitdToml(o: BuildkitdOptions): string {
    return `# buildkitd for the ml-infra ${o.pool} pool (generated)\n${toToml(buildkitdConfig(o))}\n`;
}
