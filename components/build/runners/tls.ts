/**
 * The mutual-TLS material of a runner pool (a named part of BuildRunnerPool:
 * its resources are children of the pool): a CA, a server certificate for the
 * names clients dial, and one client certificate for CI. Keys are ECDSA P-256;
 * `pulumi up` re-issues a certificate in its last 30 days.
 */
import * as pulumi from "@pulumi/pulumi";
import * as tls from "@pulumi/tls";

export const CA_VALIDITY_HOURS = 10 * 365 * 24;
/** `pulumi up` re-issues a certificate in its last 30 days. */
export const EARLY_RENEWAL_HOURS = 30 * 24;

export interface RunnerTlsArgs {
    /** Validity of the server and client certificates, in days (config `certificateValidityDays`). */
    readonly validityDays: number;
    /** DNS names in the server certificate: every name a client dials (the load balancer's, the tunnel's). */
    readonly serverDnsNames: pulumi.Input<pulumi.Input<string>[]>;
    /** IP addresses in the server certificate. */
    readonly serverIpAddresses: readonly string[];
}

export interface RunnerTls {
    readonly caCertPem: pulumi.Output<string>;
    readonly serverCertPem: pulumi.Output<string>;
    /** Secret. */
    readonly serverKeyPem: pulumi.Output<string>;
    /** Secret. */
    readonly clientCertPem: pulumi.Output<string>;
    /** Secret. */
    readonly clientKeyPem: pulumi.Output<string>;
}

/** Creates the CA, server and client certificates of pool `name` as children of `parent`. */
export function runnerTls(parent: pulumi.Resource, name: string, args: RunnerTlsArgs): RunnerTls {
    const opts = { parent };
    const key = (role: string) => new tls.PrivateKey(`${name}-${role}-key`, { algorithm: "ECDSA", ecdsaCurve: "P256" }, opts);
    const caKey = key("ca");
    const ca = new tls.SelfSignedCert(
        `${name}-ca`,
        {
            privateKeyPem: caKey.privateKeyPem,
            isCaCertificate: true,
            allowedUses: ["cert_signing", "crl_signing", "digital_signature"],
            validityPeriodHours: CA_VALIDITY_HOURS,
            subject: { commonName: `${name} BuildKit CA`, organization: pulumi.getProject() },
        },
        opts,
    );
    const issue = (role: "server" | "client", privateKeyPem: pulumi.Input<string>, dnsNames?: pulumi.Input<pulumi.Input<string>[]>) => {
        const csr = new tls.CertRequest(
            `${name}-${role}-csr`,
            {
                privateKeyPem,
                subject: { commonName: role === "server" ? `buildkitd ${name}` : `ci ${name}`, organization: pulumi.getProject() },
                dnsNames,
                ipAddresses: role === "server" ? [...args.serverIpAddresses] : undefined,
            },
            opts,
        );
        return new tls.LocallySignedCert(
            `${name}-${role}-cert`,
            {
                certRequestPem: csr.certRequestPem,
                caPrivateKeyPem: caKey.privateKeyPem,
                caCertPem: ca.certPem,
                validityPeriodHours: args.validityDays * 24,
                earlyRenewalHours: EARLY_RENEWAL_HOURS,
                allowedUses: ["digital_signature", "key_encipherment", role === "server" ? "server_auth" : "client_auth"],
            },
            opts,
        );
    };
    const serverKey = key("server");
    const serverCert = issue("server", serverKey.privateKeyPem, args.serverDnsNames);
    const clientKey = key("client");
    const clientCert = issue("client", clientKey.privateKeyPem);
    return {
        caCertPem: ca.certPem,
        serverCertPem: serverCert.certPem,
        serverKeyPem: pulumi.secret(serverKey.privateKeyPem),
        clientCertPem: pulumi.secret(clientCert.certPem),
        clientKeyPem: pulumi.secret(clientKey.privateKeyPem),
    };
}
