/**
 * The local BuildKit runner's parts, made by the runner pools' code: its
 * buildkitd.toml (read back by a TOML parser), its certificates (issued by
 * the real openssl from the pools' certificate profiles and verified as
 * buildx verifies them), its builder command and the stand-in GPU.
 */
import { spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { parse as parseToml } from "smol-toml";
import { describe, expect, it } from "vitest";
import { certificateProfiles } from "../components/runners/certificates";
import {
    LOCAL_RUNNER,
    LOCAL_SERVER_NAMES,
    STAND_IN_GPU_ENV,
    localBuilderCommands,
    localBuildkitdToml,
    localCertificateProfiles,
    opensslExtensions,
    opensslSubject,
    standInGpuCdiSpec,
} from "../components/local/runner";

const IN_CI = process.env.CI === "true";
const hasOpenssl = spawnSync("sh", ["-c", "command -v openssl"]).status === 0;

interface Parsed {
    grpc: { address: string[]; tls: { ca: string; cert: string; key: string } };
    cdi: { disabled: boolean; specDirs: string[]; autoAllowed: string[] };
    worker: { oci: { networkMode: string; platforms: string[]; bridgeSubnet?: string } };
    registry: Record<string, { http?: boolean; mirrors?: string[] }>;
    root: string;
}

describe("the local runner's buildkitd.toml", () => {
    const text = localBuildkitdToml({ stateDir: "/var/lib/x", port: 1234, registry: "127.0.0.1:5000", pool: "amd64", maxParallelism: 2, volumeGiB: 60 });
    const parsed = parseToml(text) as unknown as Parsed;

    it("listens on loopback only, with mutual TLS from its state directory", () => {
        expect(parsed.grpc.address).toEqual(["tcp://127.0.0.1:1234", "unix:///var/lib/x/buildkitd.sock"]);
        expect(parsed.grpc.tls).toEqual({ ca: "/var/lib/x/tls/ca.pem", cert: "/var/lib/x/tls/server.pem", key: "/var/lib/x/tls/server-key.pem" });
        expect(parsed.root).toBe("/var/lib/x/root");
    });

    it("reaches the local registry over plain HTTP, builds its own platform natively, on host networking", () => {
        expect(parsed.registry["127.0.0.1:5000"]).toEqual({ http: true });
        expect(parsed.worker.oci.platforms).toEqual(["linux/amd64"]);
        expect(parsed.worker.oci.networkMode).toBe("host");
        expect(parsed.worker.oci.bridgeSubnet).toBeUndefined();
    });

    it("mirrors docker.io to the local registry (as the pools mirror it to the pull-through cache), so `# syntax=docker/dockerfile:...` never reaches Docker Hub", () => {
        expect(parsed.registry).toEqual({ "127.0.0.1:5000": { http: true }, "docker.io": { mirrors: ["127.0.0.1:5000"] } });
        expect(Object.keys(parsed.registry)).toEqual(["127.0.0.1:5000", "docker.io"]);
    });

    it("reads CDI specs from its state directory and auto-allows the GPU kind, as the gpu pool does", () => {
        expect(parsed.cdi).toEqual({ disabled: false, specDirs: ["/var/lib/x/cdi"], autoAllowed: ["nvidia.com/gpu"] });
        expect(standInGpuCdiSpec()).toMatchObject({ kind: "nvidia.com/gpu", devices: [{ name: "all", containerEdits: { env: [`${STAND_IN_GPU_ENV}=1`] } }] });
    });
});

describe("the local runner's certificates", () => {
    it("are the pools' profiles for runner `local`", () => {
        expect(localCertificateProfiles("ml-infra", 365)).toEqual(certificateProfiles("local", "ml-infra", 365));
    });

    it("are issued by openssl and verify as buildx verifies them (CA chain, IP SAN 127.0.0.1, server and client use)", (ctx) => {
        if (!hasOpenssl) {
            if (IN_CI) throw new Error("openssl is not installed; .ci/run must install it");
            ctx.skip("openssl is not installed here");
        }
        const dir = fs.mkdtempSync(path.join(os.tmpdir(), "local-runner-"));
        const profiles = localCertificateProfiles("ml-infra", 30);
        const openssl = (args: string[]) => {
            const r = spawnSync("openssl", args, { encoding: "utf8" });
            expect(r.status, `openssl ${args.join(" ")}: ${r.stderr}`).toBe(0);
            return r.stdout;
        };
        const issue = (name: string, profile: (typeof profiles)["ca"], sans = {}) => {
            fs.writeFileSync(path.join(dir, `${name}.ext`), opensslExtensions(profile, sans));
            openssl(["genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", path.join(dir, `${name}-key.pem`)]);
            if (profile.isCa) {
                openssl(["req", "-new", "-x509", "-key", path.join(dir, `${name}-key.pem`), "-subj", opensslSubject(profile), "-days", "30", "-extensions", "ext", "-config", path.join(dir, `${name}.ext`), "-out", path.join(dir, `${name}.pem`)]);
            } else {
                openssl(["req", "-new", "-key", path.join(dir, `${name}-key.pem`), "-subj", opensslSubject(profile), "-config", path.join(dir, `${name}.ext`), "-out", path.join(dir, `${name}.csr`)]);
                openssl(["x509", "-req", "-in", path.join(dir, `${name}.csr`), "-CA", path.join(dir, "ca.pem"), "-CAkey", path.join(dir, "ca-key.pem"), "-CAcreateserial", "-days", "30", "-extfile", path.join(dir, `${name}.ext`), "-extensions", "ext", "-out", path.join(dir, `${name}.pem`)]);
            }
        };
        issue("ca", profiles.ca);
        issue("server", profiles.server, { dns: LOCAL_SERVER_NAMES.dns, ip: LOCAL_SERVER_NAMES.ip });
        issue("client", profiles.client);
        openssl(["verify", "-CAfile", path.join(dir, "ca.pem"), "-purpose", "sslserver", "-verify_ip", "127.0.0.1", path.join(dir, "server.pem")]);
        openssl(["verify", "-CAfile", path.join(dir, "ca.pem"), "-purpose", "sslclient", path.join(dir, "client.pem")]);
        const server = openssl(["x509", "-in", path.join(dir, "server.pem"), "-noout", "-subject", "-ext", "subjectAltName,extendedKeyUsage"]);
        expect(server).toMatch(/CN ?= ?buildkitd local/);
        expect(server).toMatch(/IP Address:127\.0\.0\.1/);
        expect(server).toMatch(/TLS Web Server Authentication/);
        // A server certificate must not pass as a client one, nor a client one as a CA.
        expect(spawnSync("openssl", ["verify", "-CAfile", path.join(dir, "ca.pem"), "-purpose", "sslclient", path.join(dir, "server.pem")]).status).not.toBe(0);
        expect(spawnSync("openssl", ["verify", "-CAfile", path.join(dir, "client.pem"), path.join(dir, "server.pem")]).status).not.toBe(0);
    });
});

describe("the local runner's builder", () => {
    it("is the pools' remote-driver builder, on loopback, with the client files from the state directory", () => {
        const commands = localBuilderCommands({ builder: LOCAL_RUNNER.builder, pool: "amd64", port: 1234, stateDir: "/var/lib/x", buildx: "buildx" });
        expect(commands).toEqual([
            "buildx rm ml-local >/dev/null 2>&1 || true",
            'buildx create --name ml-local --driver remote --platform linux/amd64 --driver-opt "cacert=/var/lib/x/client/ca.pem,cert=/var/lib/x/client/cert.pem,key=/var/lib/x/client/key.pem,servername=127.0.0.1" tcp://127.0.0.1:1234',
        ]);
    });
});
