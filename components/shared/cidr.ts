/**
 * IPv4 networks (pure): parsing that accepts only real networks, and where a
 * range sits in the address space. Ingress is admitted from private address
 * space only: a public range of any size is the internet to a security group.
 */

export interface Network {
    /** The network address as a 32-bit number. */
    readonly base: number;
    readonly prefix: number;
}

const CIDR_RE = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})\/(\d{1,2})$/;

/** Address space that is not routed on the internet, for ingress rules (RFC 1918 and the shared address space of RFC 6598). */
export const PRIVATE_RANGES: readonly string[] = ["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10"];

/** Parses `a.b.c.d/p`, or says why it is not an IPv4 network (octets 0–255, prefix 0–32, no host bits set). */
export function parseCidr(text: string): { network?: Network; problem?: string } {
    const m = CIDR_RE.exec(text);
    if (!m) return { problem: "must be an IPv4 CIDR such as 10.0.0.0/16" };
    const octets = m.slice(1, 5).map(Number);
    const prefix = Number(m[5]);
    if (octets.some((o) => o > 255) || m.slice(1, 5).some((o) => o.length > 1 && o.startsWith("0"))) {
        return { problem: "octets must be 0 to 255, without leading zeros" };
    }
    if (prefix > 32) return { problem: "the prefix length must be 0 to 32" };
    const address = octets.reduce((n, o) => n * 256 + o, 0);
    const size = 2 ** (32 - prefix);
    if (address % size !== 0) {
        return { problem: `is not a network address (host bits are set); did you mean ${formatAddress(address - (address % size))}/${prefix}?` };
    }
    return { network: { base: address, prefix } };
}

export function formatAddress(n: number): string {
    return [24, 16, 8, 0].map((s) => Math.floor(n / 2 ** s) % 256).join(".");
}

function within(inner: Network, outer: Network): boolean {
    return inner.prefix >= outer.prefix && Math.floor(inner.base / 2 ** (32 - outer.prefix)) === Math.floor(outer.base / 2 ** (32 - outer.prefix));
}

const PRIVATE = PRIVATE_RANGES.map((r) => parseCidr(r).network as Network);

/** Is the whole range inside private address space? (Anything else reaches the internet.) */
export function isPrivateRange(text: string): boolean {
    const network = parseCidr(text).network;
    return network !== undefined && PRIVATE.some((p) => within(network, p));
}

/** Why a range may not be an ingress source (undefined: it may): not a network, the whole internet, or public address space. */
export function ingressRangeProblem(text: string): string | undefined {
    const { network, problem } = parseCidr(text);
    if (problem) return problem;
    if (network?.prefix === 0) return "is the whole internet; name the callers' networks";
    if (!isPrivateRange(text)) {
        return `is public address space (outside ${PRIVATE_RANGES.join(", ")}); ingress is admitted from private networks only (this VPC, peered VPCs, VPN), never from the internet`;
    }
    return undefined;
}
