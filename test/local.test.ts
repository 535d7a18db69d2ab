/** The local stack: Docker on this machine, no AWS, sidecars private. */
import { beforeAll, describe, expect, it } from "vitest";
import { isDigestRef } from "../components/shared/image-refs";
import { type Evaluation, configProblems, evaluate, stackFileConfig } from "./harness";
import { validServe } from "./fixtures";

type Container = { name: string; image: string; ports?: Array<{ internal: number; external: number; ip: string }>; networksAdvanced: Array<{ name: string; aliases?: string[] }>; labels: Array<{ label: string; value: string }> };

describe("stack local", () => {
    let ev: Evaluation;
    const file = stackFileConfig("local");
    beforeAll(async () => {
        ev = await evaluate("local");
    });

    it("creates nothing in AWS", () => {
        expect(ev.resources.filter((r) => r.type.startsWith("aws:") || r.type.startsWith("tls:") || r.type.startsWith("pulumi:pulumi:StackReference"))).toEqual([]);
    });

    it("builds for this platform into the loopback registry, with the registry cache there", () => {
        for (const image of ev.ofType("docker-build:index:Image")) {
            expect((image.inputs.tags as string[])[0]).toMatch(/^127\.0\.0\.1:5000\/ml\/inference:cpu-avx(2|512)\.[0-9a-f]{16}$/);
            expect(image.inputs.platforms).toEqual(["linux/amd64"]);
            const cacheRef = (image.inputs.cacheTo as Array<{ registry: { ref: string } }>)[0].registry.ref;
            expect(cacheRef).toMatch(/^127\.0\.0\.1:5000\/ml\/cache\/inference:cache-cpu-avx(2|512)$/);
            expect(image.inputs.cacheFrom).toEqual([{ registry: { ref: cacheRef } }]);
            expect(image.inputs.registries).toEqual([]);
            expect((image.inputs.buildArgs as Record<string, string>).BASE_IMAGE).toBe("127.0.0.1:5000/debian:bookworm-slim");
        }
    });

    it("runs the server by digest with only its port published, on 127.0.0.1", () => {
        const containers = ev.ofType("docker:index/container:Container").map((c) => c.inputs as unknown as Container);
        const withPorts = containers.filter((c) => (c.ports ?? []).length > 0);
        expect(withPorts.map((c) => c.name)).toEqual(["inference"]);
        expect(withPorts[0].ports).toEqual([{ internal: 8080, external: 18080, ip: "127.0.0.1" }]);
        expect(isDigestRef(withPorts[0].image)).toBe(true);
        const outputs = ev.outputs.images as Record<string, { targets: Record<string, { ref: string }> }>;
        expect(withPorts[0].image).toBe(outputs.inference.targets["cpu-avx2"].ref);
        expect(ev.outputs.local).toEqual({ inference: { url: "http://127.0.0.1:18080", ref: withPorts[0].image } });
    });

    it("keeps sidecars on the internal network only, reachable by name from the server", () => {
        const networks = ev.ofType("docker:index/network:Network").map((n) => n.inputs as { name: string; internal?: boolean });
        const internal = networks.filter((n) => n.internal === true).map((n) => n.name);
        expect(internal).toEqual(["inference-sidecars"]);
        const containers = ev.ofType("docker:index/container:Container").map((c) => c.inputs as unknown as Container);
        const services = (file["ml-infra:local"] as { services: Array<{ sidecars: Array<{ name: string; port: number }> }> }).services;
        for (const sidecar of services.flatMap((s) => s.sidecars)) {
            const c = containers.find((x) => x.name === sidecar.name) as Container;
            expect(c.ports ?? []).toEqual([]);
            expect(c.networksAdvanced).toEqual([{ name: "inference-sidecars", aliases: [sidecar.name] }]);
            expect(c.labels).toContainEqual({ label: "ml-infra.sidecar-port", value: String(sidecar.port) });
        }
        const server = containers.find((c) => c.name === "inference") as Container;
        expect(server.networksAdvanced.map((n) => n.name).sort()).toEqual(["inference-serve", "inference-sidecars"]);
    });
});

describe("local config checks", () => {
    const problems = (config: Record<string, unknown>) => configProblems(config, "local");
    const file = stackFileConfig("local");
    const local = file["ml-infra:local"] as { services: Array<Record<string, unknown>> };

    it("accepts the local stack file", () => {
        expect(problems(file)).toEqual([]);
    });

    it.each([
        ["a target this stack does not build", { ...file, "ml-infra:local": { services: [{ ...local.services[0], target: "arm64-neon" }] } }, /local.services\[0\].target = "arm64-neon": image inference is not built for target arm64-neon by this stack/],
        ["a sidecar image outside the local registry", { ...file, "ml-infra:local": { services: [{ ...local.services[0], sidecars: [{ name: "t", image: "docker.io/busybox:1", port: 1 }] }] } }, /sidecars\[0\].image = "docker.io\/busybox:1": must be an image in the local registry/],
        ["a sidecar on the server's port", { ...file, "ml-infra:local": { services: [{ ...local.services[0], sidecars: [{ name: "t", image: "127.0.0.1:5000/busybox:static", port: 8080 }] }] } }, /sidecars\[0\].port = 8080: is the server's port/],
        ["a registry off loopback", { ...file, "ml-infra:build": { ...(file["ml-infra:build"] as object), localRegistry: "10.0.0.5:5000" } }, /build.localRegistry = "10.0.0.5:5000": must be a registry on loopback/],
        ["AWS serving beside it", { ...file, "ml-infra:serve": validServe() }, /^ml-infra:serve = .*: a local stack serves with Docker \(the local section\), not ECS/m],
    ])("refuses %s", (_what, config, expected) => {
        expect(problems(config).join("\n")).toMatch(expected);
    });
});
