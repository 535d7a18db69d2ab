/**
 * The local BuildKit runner (pure): a runner pool of one on this machine, so
 * the `local` stack builds with a real BuildKit exactly as the build stack
 * does on its pools. The same code as the pools' makes its parts:
 *
 * - buildkitd.toml: `buildkitdConfig` (runners/buildkitd.ts) with a
 *   layout under a state directory, listening on 127.0.0.1 only, the local
 *   registry over plain HTTP and as the mirror of docker.io (as the pools
 *   mirror docker.io to the ECR pull-through cache: `# syntax=` frontends and
 *   Docker Hub bases come from there), CDI with the same auto-allowed GPU kind;
 * - certificates: `certificateProfiles` (runners/certificates.ts), issued here
 *   with openssl (the pools issue them with @pulumi/tls);
 * - the buildx builder: `buildxCreateCommands` (runners/ci.ts), the
 *   remote driver with mutual TLS.
 *
 * scripts/local-runner.ts runs what this module decides.
 */
import type { Pool } from "../shared/hardware";
import { type BuildkitdConfig, type BuildkitdLayout, NVIDIA_GPU_DEVICE_KIND, buildkitdConfig } from "../runners/buildkitd";
import { type BuilderNode, buildxCreateCommands } from "../runners/ci";
import { type CertificateProfile, type CertificateProfiles, type KeyUse, certificateProfiles } from "../runners/certificates";
import { toToml } from "../runners/toml";

/** The local runner's defaults: its builder name (the local stack's `build.builder`) and port. */
export const LOCAL_RUNNER = { builder: "ml-local", port: 1234, stateDir: "/var/lib/ml-infra/local-runner", validityDays: 365 } as const;

/** Where the local runner keeps everything, under its state directory. */
export function localRunnerPaths(stateDir: string) {
    return {
        stateDir,
        config: `${stateDir}/buildkitd.toml`,
        root: `${stateDir}/root`,
        tlsDir: `${stateDir}/tls`,
        clientDir: `${stateDir}/client`,
        cdiDir: `${stateDir}/cdi`,
        socket: `${stateDir}/buildkitd.sock`,
        pidFile: `${stateDir}/buildkitd.pid`,
        log: `${stateDir}/buildkitd.log`,
    };
}

/** The pool kind whose platform this machine builds natively. */
export function hostPool(arch: string): Pool {
    return arch === "arm64" ? "arm64" : "amd64";
}

/** The local runner's layout: state under `stateDir`, TCP on 127.0.0.1 only, host networking for build steps, CDI from `cdiDir`. */
export function localRunnerLayout(stateDir: string, port: number): BuildkitdLayout {
    const p = localRunnerPaths(stateDir);
    return {
        root: p.root,
        tls: { ca: `${p.tlsDir}/ca.pem`, cert: `${p.tlsDir}/server.pem`, key: `${p.tlsDir}/server-key.pem` },
        addresses: [`tcp://127.0.0.1:${port}`, `unix://${p.socket}`],
        cdiSpecDirs: [p.cdiDir],
        cdiAutoAllowed: [NVIDIA_GPU_DEVICE_KIND],
        // No CNI plugins on a workstation; steps share the host's network (the local registry is on its loopback).
        network: { mode: "host" },
    };
}

export interface LocalRunnerOptions {
    readonly stateDir: string;
    readonly port: number;
    /** The local registry, reached over plain HTTP (`build.localRegistry`). */
    readonly registry: string;
    readonly pool: Pool;
    /** Concurrent build steps. */
    readonly maxParallelism: number;
    /** Disk budget the GC works to, as if it were a pool's volume (GiB). */
    readonly volumeGiB: number;
}

/** The registry host Docker Hub images (and `# syntax=docker/dockerfile:...` frontends) are named by. */
export const DOCKER_HUB_HOST = "docker.io";

/**
 * buildkitd.toml of the local runner, as an object: a pool's config with the
 * local layout, the local registry over plain HTTP, and docker.io mirrored to
 * the local registry (`docker.io/docker/dockerfile:1.17.1-labs` is pulled as
 * `127.0.0.1:5000/docker/dockerfile:1.17.1-labs`; nothing reaches Docker Hub).
 */
export function localBuildkitdConfig(o: LocalRunnerOptions): BuildkitdConfig {
    const config = buildkitdConfig({
        pool: o.pool,
        port: o.port,
        volumeGiB: o.volumeGiB,
        maxParallelism: o.maxParallelism,
        registryHost: o.registry,
        pullThroughPrefixes: [],
        layout: localRunnerLayout(o.stateDir, o.port),
        plainHttpRegistries: [o.registry],
    });
    const registry = { ...config.registry, [DOCKER_HUB_HOST]: { ...config.registry[DOCKER_HUB_HOST], mirrors: [o.registry] } };
    return { ...config, registry: Object.fromEntries(Object.entries(registry).sort(([a], [b]) => a.localeCompare(b))) };
}

/** buildkitd.toml of the local runner. */
export function localBuildkitdToml(o: LocalRunnerOptions): string {
    return `# buildkitd for the ml-infra local runner (${o.pool}, generated)\n${toToml(localBuildkitdConfig(o))}\n`;
}

/** The certificates of the local runner: the pools' profiles for runner `local`. */
export function localCertificateProfiles(project: string, validityDays: number): CertificateProfiles {
    return certificateProfiles("local", project, validityDays);
}

/** The names the local runner's server certificate holds: what buildx dials. */
export const LOCAL_SERVER_NAMES = { dns: ["localhost"], ip: ["127.0.0.1"] } as const;

const KEY_USAGE: Partial<Record<KeyUse, string>> = {
    cert_signing: "keyCertSign",
    crl_signing: "cRLSign",
    digital_signature: "digitalSignature",
    key_encipherment: "keyEncipherment",
};
const EXTENDED_KEY_USAGE: Partial<Record<KeyUse, string>> = { server_auth: "serverAuth", client_auth: "clientAuth" };

/** The openssl x509v3 extensions of a profile (a `[ext]` section), with the SANs given. */
export function opensslExtensions(profile: CertificateProfile, sans: { readonly dns?: readonly string[]; readonly ip?: readonly string[] } = {}): string {
    const usage = profile.uses.flatMap((u) => KEY_USAGE[u] ?? []);
    const extended = profile.uses.flatMap((u) => EXTENDED_KEY_USAGE[u] ?? []);
    const names = [...(sans.dns ?? []).map((d) => `DNS:${d}`), ...(sans.ip ?? []).map((i) => `IP:${i}`)];
    return [
        "[ext]",
        `basicConstraints = critical, CA:${profile.isCa ? "TRUE" : "FALSE"}`,
        `keyUsage = critical, ${usage.join(", ")}`,
        ...(extended.length > 0 ? [`extendedKeyUsage = ${extended.join(", ")}`] : []),
        ...(names.length > 0 ? [`subjectAltName = ${names.join(", ")}`] : []),
        "subjectKeyIdentifier = hash",
        ...(profile.isCa ? [] : ["authorityKeyIdentifier = keyid"]),
        "",
    ].join("\n");
}

/** `-subj` of a profile. */
export function opensslSubject(profile: CertificateProfile): string {
    const escape = (v: string) => v.replace(/([/=\\])/g, "\\$1");
    return `/O=${escape(profile.organization)}/CN=${escape(profile.commonName)}`;
}

/** The buildx builder of the local runner (remote driver, mutual TLS, certificates from the state directory). */
export function localBuilderCommands(o: { readonly builder: string; readonly pool: Pool; readonly port: number; readonly stateDir: string; readonly buildx: string }): string[] {
    const node: BuilderNode = {
        pool: o.pool,
        endpoint: `tcp://127.0.0.1:${o.port}`,
        serverName: "127.0.0.1",
        builder: o.builder,
        certDir: localRunnerPaths(o.stateDir).clientDir,
    };
    return buildxCreateCommands(node, o.buildx);
}

/**
 * A stand-in GPU for the CDI path: a CDI spec of kind `nvidia.com/gpu` whose
 * device `all` only sets an environment variable. `RUN --device=nvidia.com/gpu=all`
 * gets it exactly as it would get the spec `nvidia-ctk cdi generate` writes on
 * the gpu pool, so a machine without a GPU proves the mechanism.
 */
export const STAND_IN_GPU_ENV = "ML_INFRA_GPU_STAND_IN";
/** The stand-in spec's file name in the runner's CDI directory. */
export const STAND_IN_GPU_SPEC_FILE = "ml-infra-stand-in-gpu.json";
export function standInGpuCdiSpec(): Record<string, unknown> {
    return {
        cdiVersion: "0.6.0",
        kind: NVIDIA_GPU_DEVICE_KIND,
        devices: [{ name: "all", containerEdits: { env: [`${STAND_IN_GPU_ENV}=1`] } }],
    };
}
