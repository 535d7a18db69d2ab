/**
 * What the mutual-TLS certificates of a BuildKit runner hold (pure): a CA, a
 * server certificate for the names clients dial, and one client certificate.
 * The pools issue them with @pulumi/tls (./tls), the local runner with
 * openssl (components/local/runner.ts).
 */

export const CA_VALIDITY_HOURS = 10 * 365 * 24;
/** `pulumi up` re-issues a certificate in its last 30 days. */
export const EARLY_RENEWAL_HOURS = 30 * 24;

/** Key usages, as @pulumi/tls names them. */
export type KeyUse = "cert_signing" | "crl_signing" | "digital_signature" | "key_encipherment" | "server_auth" | "client_auth";

/** What one certificate holds. */
export interface CertificateProfile {
    readonly commonName: string;
    readonly organization: string;
    readonly isCa: boolean;
    readonly uses: readonly KeyUse[];
    readonly validityHours: number;
}

export interface CertificateProfiles {
    readonly ca: CertificateProfile;
    /** Its names (DNS and IP SANs) are given per runner: the names clients dial. */
    readonly server: CertificateProfile;
    readonly client: CertificateProfile;
}

/** The CA, server and client certificates of runner `name` (a pool, or the local runner). */
export function certificateProfiles(name: string, project: string, validityDays: number): CertificateProfiles {
    const leaf = (commonName: string, use: KeyUse): CertificateProfile => ({
        commonName,
        organization: project,
        isCa: false,
        uses: ["digital_signature", "key_encipherment", use],
        validityHours: validityDays * 24,
    });
    return {
        ca: { commonName: `${name} BuildKit CA`, organization: project, isCa: true, uses: ["cert_signing", "crl_signing", "digital_signature"], validityHours: CA_VALIDITY_HOURS },
        server: leaf(`buildkitd ${name}`, "server_auth"),
        client: leaf(`ci ${name}`, "client_auth"),
    };
}
