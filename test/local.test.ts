/** The local stack: Docker on this machine, no AWS, sidecars private; the shipped chain built for real. */
import { beforeAll, describe, expect, it } from "vitest";
import { isDigestRef } from "../components/shared/image-refs";
import { type Evaluation, type Registered, configProblems, evaluate, stackFileConfig } from "./harness";
import { validServe } from "./fixtures";

type Container = {
    name: string;
    image: string;
    envs?: string[];
    ports?: Array<{ internal: number; external: number; ip: string }>;
    networksAdvanced: Array<{ name: string; aliases?: string[] }>;
    labels: Array<{ label: string; value: string }>;
};
type Outputs = Record<string, { targets: Record<string, { ref: string; tag: string }> }>;
type BuildArgs = Record<string, string>;

const labelOf = (c: Container, key: string) => c.labels.find((l) => l.label === key)?.value;

describe("stack local", () => {
    let ev: Evaluation;
    const file = stackFileConfig("local");
    const images = (file["ml-infra:build"] as { images: Array<{ name: string; targets: string[] }> }).images;
    const imageOf = (name: string, target: string): Registered => {
        const found = ev.ofType("docker-build:index:Image").find((i) => i.name === `${name}-${target}-image`);
        if (!found) throw new Error(`no docker-build Image for ${name} ${target}`);
        return found;
    };
    const containers = () => ev.ofType("docker:index/container:Container").map((c) => c.inputs as unknown as Container);
    beforeAll(async () => {
        ev = await evaluate("local");
    });

    it("creates nothing in AWS", () => {
        expect(ev.resources.filter((r) => r.type.startsWith("aws:") || r.type.startsWith("tls:") || r.type.startsWith("pulumi:pulumi:StackReference"))).toEqual([]);
    });

    it("builds every image × target of the stack file, for this platform, into the loopback registry with the registry cache there", () => {
        const built = ev.ofType("docker-build:index:Image");
        expect(built.map((i) => i.name).sort()).toEqual(images.flatMap((i) => i.targets.map((t) => `${i.name}-${t}-image`)).sort());
        for (const image of built) {
            const name = images.find((i) => image.name.startsWith(`${i.name}-`) && i.targets.some((t) => image.name === `${i.name}-${t}-image`))?.name ?? "";
            expect((image.inputs.tags as string[])[0]).toMatch(new RegExp(`^127\\.0\\.0\\.1:5000/ml/${name}:cpu-avx(2|512)\\.[0-9a-f]{16}$`));
            expect(image.inputs.platforms).toEqual(["linux/amd64"]);
            const cacheRef = (image.inputs.cacheTo as Array<{ registry: { ref: string } }>)[0].registry.ref;
            expect(cacheRef).toMatch(new RegExp(`^127\\.0\\.0\\.1:5000/ml/cache/${name}:cache-cpu-avx(2|512)$`));
            expect(image.inputs.cacheFrom).toEqual([{ registry: { ref: cacheRef } }]);
            expect(image.inputs.registries).toEqual([]);
        }
    });

    it("builds the shipped chain: inference-base on the local Debian base, the server FROM its digest of the same target, compiled on the Debian base", () => {
        const outputs = ev.outputs.images as Outputs;
        for (const target of ["cpu-avx2", "cpu-avx512"]) {
            const base = imageOf("inference-base", target);
            expect(base.inputs.target).toBe("runtime-cpu");
            expect(base.inputs.buildArgs as BuildArgs).toMatchObject({
                BASE_IMAGE: "127.0.0.1:5000/debian:bookworm-slim",
                RUNTIME_BASE_IMAGE: "127.0.0.1:5000/debian:bookworm-slim",
                BUILD_BASE_IMAGE: "127.0.0.1:5000/debian:bookworm-slim",
            });
            const server = imageOf("inference", target);
            const baseRef = outputs["inference-base"].targets[target].ref;
            expect(isDigestRef(baseRef)).toBe(true);
            expect(server.inputs.target).toBe("runtime-cpu");
            expect(server.inputs.buildArgs as BuildArgs).toMatchObject({ BASE_IMAGE: baseRef, RUNTIME_BASE_IMAGE: baseRef, BUILD_BASE_IMAGE: "127.0.0.1:5000/debian:bookworm-slim" });
        }
        // Each target's server is built on its own target's base.
        expect((imageOf("inference", "cpu-avx2").inputs.buildArgs as BuildArgs).BASE_IMAGE).not.toBe((imageOf("inference", "cpu-avx512").inputs.buildArgs as BuildArgs).BASE_IMAGE);
    });

    it("builds the metrics sidecar from the local busybox image, as a stage of its own", () => {
        const sidecar = imageOf("local-metrics", "cpu-avx2");
        expect(sidecar.inputs.target).toBe("sidecar");
        expect(sidecar.inputs.buildArgs as BuildArgs).toMatchObject({ BASE_IMAGE: "127.0.0.1:5000/busybox:static", RUNTIME_BASE_IMAGE: "127.0.0.1:5000/busybox:static" });
    });

    it("runs the server by digest with only its port published, on 127.0.0.1", () => {
        const withPorts = containers().filter((c) => (c.ports ?? []).length > 0);
        expect(withPorts.map((c) => c.name)).toEqual(["inference"]);
        expect(withPorts[0].ports).toEqual([{ internal: 8080, external: 18080, ip: "127.0.0.1" }]);
        expect(isDigestRef(withPorts[0].image)).toBe(true);
        const outputs = ev.outputs.images as Outputs;
        expect(withPorts[0].image).toBe(outputs.inference.targets["cpu-avx2"].ref);
        expect(withPorts[0].envs).toEqual(["PORT=8080", "SIDECAR_METRICS_URL=http://metrics:9102/"]);
        expect(ev.outputs.local).toEqual({
            inference: { url: "http://127.0.0.1:18080", ref: withPorts[0].image, sidecars: { metrics: outputs["local-metrics"].targets["cpu-avx2"].ref } },
        });
    });

    it("runs the metrics sidecar from this stack's own build, by digest, pointed at the server by name", () => {
        const outputs = ev.outputs.images as Outputs;
        const metrics = containers().find((c) => c.name === "metrics") as Container;
        expect(metrics.image).toBe(outputs["local-metrics"].targets["cpu-avx2"].ref);
        expect(isDigestRef(metrics.image)).toBe(true);
        expect(metrics.envs).toEqual(["PORT=9102", "SCRAPE_INTERVAL_SECONDS=2", "SERVER_URL=http://inference:8080/"]);
        expect([labelOf(metrics, "ml-infra.image"), labelOf(metrics, "ml-infra.target")]).toEqual(["local-metrics", "cpu-avx2"]);
    });

    it("keeps sidecars on the internal network only, reachable by name from the server", () => {
        const networks = ev.ofType("docker:index/network:Network").map((n) => n.inputs as { name: string; internal?: boolean });
        const internal = networks.filter((n) => n.internal === true).map((n) => n.name);
        expect(internal).toEqual(["inference-sidecars"]);
        const services = (file["ml-infra:local"] as { services: Array<{ sidecars: Array<{ name: string; port: number }> }> }).services;
        for (const sidecar of services.flatMap((s) => s.sidecars)) {
            const c = containers().find((x) => x.name === sidecar.name) as Container;
            expect(c.ports ?? []).toEqual([]);
            expect(c.networksAdvanced).toEqual([{ name: "inference-sidecars", aliases: [sidecar.name] }]);
            expect(c.labels).toContainEqual({ label: "ml-infra.sidecar-port", value: String(sidecar.port) });
        }
        const server = containers().find((c) => c.name === "inference") as Container;
        expect(server.networksAdvanced.map((n) => n.name).sort()).toEqual(["inference-serve", "inference-sidecars"]);
    });

    it("still runs a sidecar image taken from the local registry as it is", async () => {
        const local = file["ml-infra:local"] as { services: Array<Record<string, unknown>> };
        const config = {
            ...file,
            "ml-infra:local": { services: [{ ...local.services[0], sidecars: [{ name: "telemetry", image: "127.0.0.1:5000/busybox:static", port: 9102, command: ["httpd", "-f", "-p", "9102"] }] }] },
        };
        const other = await evaluate("local", { config });
        const telemetry = other.ofType("docker:index/container:Container").map((c) => c.inputs as unknown as Container).find((c) => c.name === "telemetry") as Container;
        expect(telemetry.image).toBe("127.0.0.1:5000/busybox:static");
        expect(labelOf(telemetry, "ml-infra.image")).toBeUndefined();
        expect((other.outputs.local as Record<string, { sidecars: Record<string, string> }>).inference.sidecars).toEqual({ telemetry: "127.0.0.1:5000/busybox:static" });
    });
});

describe("local config checks", () => {
    const problems = (config: Record<string, unknown>) => configProblems(config, "local");
    const file = stackFileConfig("local");
    const local = file["ml-infra:local"] as { services: Array<Record<string, unknown> & { sidecars: Array<Record<string, unknown>> }> };
    const service = local.services[0];
    const withSidecar = (sidecar: Record<string, unknown>) => ({ ...file, "ml-infra:local": { services: [{ ...service, sidecars: [sidecar] }] } });
    const withService = (patch: Record<string, unknown>) => ({ ...file, "ml-infra:local": { services: [{ ...service, ...patch }] } });

    it("accepts the local stack file", () => {
        expect(problems(file)).toEqual([]);
    });

    it.each([
        ["a target this stack does not build", withService({ target: "arm64-neon" }), /local.services\[0\].target = "arm64-neon": image inference is not built for target arm64-neon by this stack/],
        ["a sidecar image outside the local registry", withSidecar({ name: "t", image: "docker.io/busybox:1", port: 1 }), /sidecars\[0\].image = "docker.io\/busybox:1": must be the name of an image this stack builds \(build.images\[\].name\) or an image in the local registry/],
        ["a sidecar image this stack does not build", withSidecar({ name: "t", image: "grafana", port: 1 }), /sidecars\[0\].image = "grafana": image grafana is not built for target cpu-avx2 \(the service's target; set sidecars\[\].target to run another build\) by this stack; built: /],
        ["a sidecar build for a target the image lacks", withSidecar({ name: "t", image: "local-metrics", target: "cpu-avx512", port: 1 }), /sidecars\[0\].target = "cpu-avx512": image local-metrics is not built for target cpu-avx512 by this stack/],
        ["a target on a sidecar from the registry", withSidecar({ name: "t", image: "127.0.0.1:5000/busybox:static", target: "cpu-avx2", port: 1 }), /sidecars\[0\].target = "cpu-avx2": only an image this stack builds has a target/],
        ["a sidecar that sets what the section sets", withSidecar({ name: "t", image: "local-metrics", port: 1, environment: { SERVER_URL: "http://elsewhere/" } }), /sidecars\[0\].environment.SERVER_URL = "http:\/\/elsewhere\/": is set by the local section \(PORT, SERVER_URL\)/],
        ["a server environment that sets a sidecar's URL", withService({ environment: { SIDECAR_METRICS_URL: "x" } }), /services\[0\].environment.SIDECAR_METRICS_URL = "x": is set by the local section/],
        ["a sidecar on the server's port", withSidecar({ name: "t", image: "127.0.0.1:5000/busybox:static", port: 8080 }), /sidecars\[0\].port = 8080: is the server's port/],
        ["a sidecar named like its server", withSidecar({ name: "inference", image: "local-metrics", port: 1 }), /sidecars\[0\].name = "inference": container name also used by local.services\[0\].name; names are unique/],
        ["a registry off loopback", { ...file, "ml-infra:build": { ...(file["ml-infra:build"] as object), localRegistry: "10.0.0.5:5000" } }, /build.localRegistry = "10.0.0.5:5000": must be a registry on loopback/],
        ["AWS serving beside it", { ...file, "ml-infra:serve": validServe() }, /^ml-infra:serve = .*: a local stack serves with Docker \(the local section\), not ECS/m],
    ])("refuses %s", (_what, config, expected) => {
        expect(problems(config).join("\n")).toMatch(expected);
    });

    it("accepts a sidecar build of another target than its service's", () => {
        const build = file["ml-infra:build"] as { images: Array<{ name: string; targets: string[] }> };
        const config = {
            ...withSidecar({ name: "t", image: "local-metrics", target: "cpu-avx512", port: 1 }),
            "ml-infra:build": { ...build, images: build.images.map((i) => (i.name === "local-metrics" ? { ...i, targets: ["cpu-avx2", "cpu-avx512"] } : i)) },
        };
        expect(problems(config)).toEqual([]);
    });
});
