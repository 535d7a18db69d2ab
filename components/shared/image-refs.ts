/**
 * Image references and registry hosts: parsing and checks (pure). An
 * environment deploys only `registry/repository@sha256:<digest>`, never a
 * mutable tag.
 */

export interface DigestRef {
    /** e.g. 123456789012.dkr.ecr.us-east-1.amazonaws.com */
    readonly registry: string;
    /** e.g. ml/inference */
    readonly repository: string;
    /** sha256:<64 hex> */
    readonly digest: string;
}

const DIGEST_REF_RE = /^([a-z0-9.-]+(?::[0-9]+)?)\/([a-z0-9._/-]+)@(sha256:[a-f0-9]{64})$/;

/** Parses `registry/repository@sha256:...`; a tag, or tag plus digest, is refused (undefined). */
export function parseDigestRef(ref: string): DigestRef | undefined {
    const m = DIGEST_REF_RE.exec(ref);
    if (!m) return undefined;
    return { registry: m[1], repository: m[2], digest: m[3] };
}

export function isDigestRef(ref: string): boolean {
    return parseDigestRef(ref) !== undefined;
}

/** Throws unless `ref` is `registry/repository@sha256:<digest>` (`what` names it in the message). */
export function requireDigestRef(ref: string, what: string): string {
    if (!parseDigestRef(ref)) {
        throw new Error(`${what}: image ${JSON.stringify(ref)} is not pinned by digest (registry/repository@sha256:<64 hex>); refusing to deploy a mutable reference`);
    }
    return ref;
}

/** `repo@sha256:...` from a repository URL and a digest. */
export function digestRef(repositoryUrl: string, digest: string): string {
    const ref = `${repositoryUrl}@${digest}`;
    if (!isDigestRef(ref)) throw new Error(`not a digest reference: ${ref}`);
    return ref;
}

/** Our repositories are `<prefix>/<image>`: the last path segment names the image. */
export function repositoryNameMatchesImage(repository: string, image: string): boolean {
    return repository.split("/").pop() === image;
}

/** What the build stack exports per image × target (stack output `images`). */
export interface BuiltTarget {
    readonly ref: string;
    /** sha256:... */
    readonly digest: string;
    readonly tag: string;
    readonly platform: string;
    readonly pool: string;
    readonly cacheRef: string;
}

export interface BuiltImage {
    readonly repository: string;
    readonly cacheRepository: string;
    readonly targets: Readonly<Record<string, BuiltTarget>>;
    readonly multiArch?: { readonly tag: string; readonly ref: string };
}

/**
 * Picks the digest reference of image × target out of the build stack's
 * `images` output, with a clear error when it is missing or not a digest.
 */
export function builtRef(images: unknown, image: string, target: string, buildStack: string): string {
    const record = (v: unknown): Record<string, unknown> | undefined =>
        typeof v === "object" && v !== null ? (v as Record<string, unknown>) : undefined;
    const built = record(record(record(record(images)?.[image])?.targets)?.[target]);
    const ref = built?.ref;
    if (typeof ref !== "string") {
        throw new Error(`build stack ${buildStack} exports no image "${image}" for target "${target}" (output images.${image}.targets.${target}.ref)`);
    }
    if (!isDigestRef(ref)) {
        throw new Error(`build stack ${buildStack} exports ${JSON.stringify(ref)} for ${image}/${target}, which is not pinned by digest`);
    }
    return ref;
}

// ---------------------------------------------------------------- ECR hosts

/** A private ECR registry host: `<account>.dkr.ecr[-fips].<region>.amazonaws.com[.cn]`. */
const ECR_HOST_RE = /^(\d{12})\.dkr\.ecr(?:-fips)?\.([a-z]{2}(?:-[a-z]+)+-\d)\.(amazonaws\.com(?:\.cn)?)$/;

/** Where an ECR registry lives, read from its host name. */
export interface RegistryLocation {
    readonly account: string;
    readonly region: string;
    /** aws, aws-cn, aws-us-gov */
    readonly partition: string;
    /** amazonaws.com or amazonaws.com.cn */
    readonly dnsSuffix: string;
}

/** Is `host` a private ECR registry? */
export function isEcrHost(host: string): boolean {
    return ECR_HOST_RE.test(host);
}

/** The location of an ECR registry host; undefined for any other host. */
export function ecrLocation(host: string): RegistryLocation | undefined {
    const m = ECR_HOST_RE.exec(host);
    if (!m) return undefined;
    const [, account, region, dnsSuffix] = m;
    const partition = dnsSuffix.endsWith(".cn") ? "aws-cn" : region.startsWith("us-gov-") ? "aws-us-gov" : "aws";
    return { account, region, partition, dnsSuffix };
}

/** `123456789012.dkr.ecr.us-east-1.amazonaws.com` -> account, region, partition; throws for any other host. */
export function parseRegistryHost(host: string): RegistryLocation {
    const location = ecrLocation(host);
    if (!location) throw new Error(`not an ECR registry host: ${JSON.stringify(host)} (expected <account>.dkr.ecr.<region>.amazonaws.com)`);
    return location;
}

/** The ECR registry of an account in a region, and its host. */
export function registryLocationOf(account: string, region: string): RegistryLocation & { readonly host: string } {
    const china = region.startsWith("cn-");
    const dnsSuffix = china ? "amazonaws.com.cn" : "amazonaws.com";
    const partition = china ? "aws-cn" : region.startsWith("us-gov-") ? "aws-us-gov" : "aws";
    return { account, region, partition, dnsSuffix, host: `${account}.dkr.ecr.${region}.${dnsSuffix}` };
}
