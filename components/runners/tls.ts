/**
 * The mutual-TLS material of a runner pool: a CA, a server certificate for the
 * names clients dial, and one client certificate for CI. Keys are ECDSA P-256.
 *
 * `certificateProfiles` (./certificates, pure) says what each certificate holds; `runnerTls`
 * (a named part of BuildRunnerPool: its resources are children of the pool)
 * issues them with @pulumi/tls, and the local runner (components/local/runner.ts)
 * issues the same profiles with openssl on this machine.
 */
import * as pulumi from "@pulumi/pulumi";
import * as tls from "@pulumi/tls";
import { type CertificateProfile, EARLY_RENEWAL_HOURS, certificateProfiles } from "./certificates";

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
    const profiles = certificateProfiles(name, pulumi.getProject(), args.validityDays);
    const subject = (p: CertificateProfile) => ({ commonName: p.commonName, organization: p.organization });
    const key = (role: string) => new tls.PrivateKey(`${name}-${role}-key`, { algorithm: "ECDSA", ecdsaCurve: "P256" }, opts);
    const caKey = key("ca");
    const ca = new tls.SelfSignedCert(
        `${name}-ca`,
        {
            privateKeyPem: caKey.privateKeyPem,
            isCaCertificate: profiles.ca.isCa,
            allowedUses: [...profiles.ca.uses],
            validityPeriodHours: profiles.ca.validityHours,
            subject: subject(profiles.ca),
        },
        opts,
    );
    const issue = (role: "server" | "client", privateKeyPem: pulumi.Input<string>, dnsNames?: pulumi.Input<pulumi.Input<string>[]>) => {
        const profile = profiles[role];
        const csr = new tls.CertRequest(
            `${name}-${role}-csr`,
            {
                privateKeyPem,
                subject: subject(profile),
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
                validityPeriodHours: profile.validityHours,
                earlyRenewalHours: EARLY_RENEWAL_HOURS,
                allowedUses: [...profile.uses],
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
