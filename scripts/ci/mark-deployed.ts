/**
 * After `pulumi up` of an environment: marks every digest it deploys with a
 * deployment marker tag in ECR, `deployed-<stack>-<service>-<container>`, so
 * the release repositories' lifecycle rules (rule 1 keeps every image with a
 * `deployed-*` tag) never expire an image an environment runs. A marker moves
 * to the new digest on the next deployment (the release repositories let only
 * `deployed-*` tags move); the previous digest is then an ordinary release
 * again, kept while it is among the newest of its target.
 *
 *   npx tsx scripts/ci/mark-deployed.ts --stack <org>/ml-infra/prod [--dry-run]
 *
 * Reads the stack's `deployments` output (per service, `images: [{container, ref}]`),
 * and for each digest in this account's registry copies its manifest under the
 * marker tag (`aws ecr batch-get-image` then `aws ecr put-image` with the same
 * manifest bytes and digest, so the marker names exactly that digest). A
 * multi-arch index's platform images are marked too
 * (`…-<container>-<os>-<arch>`), so neither side of an index expires. Needs the
 * Pulumi CLI and the AWS CLI with ecr:BatchGetImage and ecr:PutImage on the
 * release repositories. Digests outside this account's registry (allow-listed
 * exceptions) are not ours to tag and are listed as skipped.
 */
import { spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import { parseDigestRef } from "../../components/shared/image-refs";

/** ECR's longest image tag. */
export const MAX_TAG_LENGTH = 128;

/** One image a stack deploys. */
export interface DeployedImage {
    readonly service: string;
    readonly container: string;
    readonly ref: string;
}

/** One marker to put: `tag` on `digest` in `repository` (of the registry in `region`). */
export interface Marker {
    readonly registryId: string;
    readonly region: string;
    readonly repository: string;
    readonly digest: string;
    readonly tag: string;
}

/** Index and manifest-list media types: their platform images are marked too. */
export const INDEX_MEDIA_TYPES: readonly string[] = ["application/vnd.oci.image.index.v1+json", "application/vnd.docker.distribution.manifest.list.v2+json"];

/** Every media type put-image may be asked to take. */
export const ACCEPTED_MEDIA_TYPES: readonly string[] = [
    ...INDEX_MEDIA_TYPES,
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
];

const isRecord = (v: unknown): v is Record<string, unknown> => typeof v === "object" && v !== null && !Array.isArray(v);

/** The images of a `deployments` output; what is not an image is an error naming it. */
export function deployedImages(deployments: unknown): DeployedImage[] {
    if (!isRecord(deployments)) throw new Error("output deployments is missing or not an object: is this an environment stack (dev, staging, prod)?");
    const out: DeployedImage[] = [];
    for (const [service, d] of Object.entries(deployments).sort(([a], [b]) => a.localeCompare(b))) {
        if (!isRecord(d) || !Array.isArray(d.images)) throw new Error(`deployments.${service} has no images list (redeploy with this program's version)`);
        for (const [i, image] of d.images.entries()) {
            if (!isRecord(image) || typeof image.container !== "string" || typeof image.ref !== "string") {
                throw new Error(`deployments.${service}.images[${i}] is not {container, ref}`);
            }
            out.push({ service, container: image.container, ref: image.ref });
        }
    }
    return out;
}

/** Lower-case letters, digits, `.`, `_` and `-` only. */
function tagSafe(text: string): string {
    return text.toLowerCase().replace(/[^a-z0-9._-]+/g, "-");
}

/**
 * `deployed-<stack>-<service>-<container>[-<suffix>]`, at most MAX_TAG_LENGTH
 * characters (a longer one keeps its start and ends in a hash of the whole).
 * `stack` is the short stack name (the last segment of org/project/stack).
 */
export function markerTag(stack: string, service: string, container: string, suffix?: string): string {
    const short = stack.split("/").pop() ?? stack;
    const tag = tagSafe(["deployed", short, service, container, ...(suffix ? [suffix] : [])].join("-"));
    if (tag.length <= MAX_TAG_LENGTH) return tag;
    const hash = createHash("sha256").update(tag).digest("hex").slice(0, 12);
    return `${tag.slice(0, MAX_TAG_LENGTH - hash.length - 1)}-${hash}`;
}

const ECR_HOST_RE = /^(\d{12})\.dkr\.ecr\.([a-z0-9-]+)\.amazonaws\.com(\.cn)?$/;

/**
 * The markers for a stack's images in the registry of `account`; images
 * elsewhere are returned as skipped. The same digest deployed by two
 * containers gets both markers (each moves on its own).
 */
export function markersFor(stack: string, images: readonly DeployedImage[], account: string): { markers: Marker[]; skipped: DeployedImage[] } {
    const markers: Marker[] = [];
    const skipped: DeployedImage[] = [];
    for (const image of images) {
        const ref = parseDigestRef(image.ref);
        const host = ref ? ECR_HOST_RE.exec(ref.registry) : null;
        if (!ref || !host || host[1] !== account) {
            skipped.push(image);
            continue;
        }
        markers.push({ registryId: host[1], region: host[2], repository: ref.repository, digest: ref.digest, tag: markerTag(stack, image.service, image.container) });
    }
    return { markers, skipped };
}

/** The markers of an index's platform images: `<marker>-<os>-<arch>[-<variant>]`; attestation manifests are left alone. */
export function childMarkers(parent: Marker, index: unknown): Marker[] {
    if (!isRecord(index) || !Array.isArray(index.manifests)) return [];
    const out: Marker[] = [];
    for (const m of index.manifests) {
        if (!isRecord(m) || typeof m.digest !== "string" || !isRecord(m.platform)) continue;
        const { os, architecture, variant } = m.platform;
        if (typeof os !== "string" || typeof architecture !== "string" || os === "unknown") continue;
        const platform = [os, architecture, ...(typeof variant === "string" ? [variant] : [])].join("-");
        out.push({ ...parent, digest: m.digest, tag: `${parent.tag}-${tagSafe(platform)}`.slice(0, MAX_TAG_LENGTH) });
    }
    return out;
}

// ---------------------------------------------------------------- the CLI

interface Run {
    readonly ok: boolean;
    readonly out: string;
    readonly err: string;
}

function run(cmd: string, args: readonly string[]): Run {
    const r = spawnSync(cmd, args, { encoding: "utf8", maxBuffer: 64 * 1024 * 1024 });
    if (r.error) throw new Error(`${cmd}: ${r.error.message}`);
    return { ok: r.status === 0, out: r.stdout, err: r.stderr };
}

function aws(marker: Pick<Marker, "region">, args: readonly string[]): Run {
    return run("aws", ["--region", marker.region, "--output", "json", ...args]);
}

/** Puts one marker; returns the manifest it tagged (JSON) and its media type. */
function putMarker(marker: Marker, log: (line: string) => void, dryRun: boolean): { manifest: unknown; mediaType: string } {
    const got = aws(marker, [
        "ecr",
        "batch-get-image",
        "--registry-id",
        marker.registryId,
        "--repository-name",
        marker.repository,
        "--image-ids",
        `imageDigest=${marker.digest}`,
        "--accepted-media-types",
        ...ACCEPTED_MEDIA_TYPES,
    ]);
    if (!got.ok) throw new Error(`cannot read ${marker.repository}@${marker.digest}: ${got.err.trim()}`);
    const image = (JSON.parse(got.out) as { images?: Array<{ imageManifest?: string; imageManifestMediaType?: string }> }).images?.[0];
    if (!image?.imageManifest) throw new Error(`${marker.repository}@${marker.digest} is not in the registry: it was deployed but no longer exists`);
    const mediaType = image.imageManifestMediaType ?? (JSON.parse(image.imageManifest) as { mediaType?: string }).mediaType ?? "";
    if (dryRun) {
        log(`would tag ${marker.repository}@${marker.digest} as ${marker.tag}`);
    } else {
        const put = aws(marker, [
            "ecr",
            "put-image",
            "--registry-id",
            marker.registryId,
            "--repository-name",
            marker.repository,
            "--image-tag",
            marker.tag,
            "--image-digest",
            marker.digest,
            "--image-manifest",
            image.imageManifest,
            ...(mediaType ? ["--image-manifest-media-type", mediaType] : []),
        ]);
        if (put.ok) log(`tagged ${marker.repository}@${marker.digest} as ${marker.tag}`);
        else if (/ImageAlreadyExistsException/.test(put.err)) log(`${marker.tag} already on ${marker.repository}@${marker.digest}`);
        else throw new Error(`cannot tag ${marker.repository}@${marker.digest} as ${marker.tag}: ${put.err.trim()}`);
    }
    return { manifest: JSON.parse(image.imageManifest) as unknown, mediaType };
}

export function main(argv: readonly string[], log: (line: string) => void = console.log): number {
    const at = argv.indexOf("--stack");
    const stack = at >= 0 ? argv[at + 1] : undefined;
    if (!stack || stack.startsWith("--")) {
        log("usage: mark-deployed --stack <org>/ml-infra/<environment> [--dry-run]");
        return 2;
    }
    const dryRun = argv.includes("--dry-run");
    const output = run("pulumi", ["stack", "output", "--stack", stack, "--json", "deployments"]);
    if (!output.ok) throw new Error(`cannot read output deployments of ${stack}: ${output.err.trim()}`);
    const identity = run("aws", ["sts", "get-caller-identity", "--output", "json"]);
    if (!identity.ok) throw new Error(`aws sts get-caller-identity: ${identity.err.trim()}`);
    const account = (JSON.parse(identity.out) as { Account: string }).Account;
    const { markers, skipped } = markersFor(stack, deployedImages(JSON.parse(output.out) as unknown), account);
    for (const s of skipped) log(`skipped ${s.service}/${s.container}: ${s.ref} is not in account ${account}'s registry`);
    for (const marker of markers) {
        const { manifest, mediaType } = putMarker(marker, log, dryRun);
        if (INDEX_MEDIA_TYPES.includes(mediaType)) for (const child of childMarkers(marker, manifest)) putMarker(child, log, dryRun);
    }
    log(`${markers.length} deployed image(s) of ${stack} marked${dryRun ? " (dry run)" : ""}`);
    return 0;
}

if (require.main === module) {
    try {
        process.exitCode = main(process.argv.slice(2));
    } catch (error) {
        console.error(`mark-deployed: ${error instanceof Error ? error.message : String(error)}`);
        process.exitCode = 1;
    }
}
