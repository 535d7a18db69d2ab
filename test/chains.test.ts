/**
 * Image chains: an image built FROM another image of the stack, per target,
 * pinned by the base's digest.
 */
import { describe, expect, it } from "vitest";
import { buildOrder, chainProblems } from "../components/build/chains";
import { isDigestRef } from "../components/shared/image-refs";
import { configProblems, evaluate } from "./harness";
import { PROJECT } from "./fixtures";

const node = (name: string, targets: string[], base?: string) => ({ name, targets, base });
const CONTEXT = "images/inference-server";

/** A chain of three images over two targets, declared dependents-first on purpose. */
function chainConfig(baseArgs: Record<string, string> = {}) {
    return {
        [`${PROJECT}:build`]: {
            images: [
                { name: "app", context: CONTEXT, targets: ["cpu-avx2", "arm64-neon"], base: "pose" },
                { name: "pose", context: CONTEXT, targets: ["cpu-avx2", "arm64-neon"], base: "torch" },
                { name: "torch", context: CONTEXT, targets: ["cpu-avx2", "arm64-neon"], buildArgs: baseArgs },
            ],
        },
    };
}

describe("chain checks (pure)", () => {
    it("accepts a chain and orders bases first", () => {
        const images = [node("app", ["a"], "pose"), node("pose", ["a", "b"], "torch"), node("torch", ["a", "b"]), node("solo", ["b"])];
        expect(chainProblems(images)).toEqual([]);
        expect(buildOrder(images).map((i) => i.name)).toEqual(["torch", "pose", "app", "solo"]);
    });

    it("names the images of a cycle", () => {
        const problems = chainProblems([node("a", ["t"], "c"), node("b", ["t"], "a"), node("c", ["t"], "b")]);
        expect(problems).toEqual([{ index: 0, key: "base", message: "base images form a cycle: a -> c -> b -> a" }]);
        expect(chainProblems([node("a", ["t"], "a")])[0].message).toMatch(/cannot be its own base/);
    });

    it("names a missing base and the images that exist", () => {
        expect(chainProblems([node("a", ["t"], "nope"), node("b", ["t"])])).toEqual([
            { index: 0, key: "base", message: "unknown base image; allowed: b" },
        ]);
    });

    it("names a target the base does not build", () => {
        expect(chainProblems([node("app", ["cpu-avx2", "cuda12"], "torch"), node("torch", ["cpu-avx2"])])).toEqual([
            { index: 0, key: "targets", message: 'image "app" builds cuda12 but its base "torch" does not (it builds cpu-avx2)' },
        ]);
    });
});

describe("chain errors in stack config", () => {
    const problems = (images: unknown[]) => configProblems({ [`${PROJECT}:build`]: { images } }).join("\n");
    it.each([
        [
            "cycle",
            [
                { name: "a", context: CONTEXT, targets: ["cpu-avx2"], base: "b" },
                { name: "b", context: CONTEXT, targets: ["cpu-avx2"], base: "a" },
            ],
            /ml-infra:build.images\[0\].base = "b": base images form a cycle: a -> b -> a/,
        ],
        ["missing base", [{ name: "a", context: CONTEXT, targets: ["cpu-avx2"], base: "torch" }], /images\[0\].base = "torch": unknown base image/],
        [
            "target the base lacks",
            [
                { name: "a", context: CONTEXT, targets: ["cpu-avx2", "cuda12"], base: "b" },
                { name: "b", context: CONTEXT, targets: ["cpu-avx2"] },
            ],
            /images\[0\].targets = \["cpu-avx2","cuda12"\]: image "a" builds cuda12 but its base "b" does not/,
        ],
    ])("%s", (_what, images, expected) => {
        expect(problems(images)).toMatch(expected);
    });
});

describe("a chain of three images across two targets", () => {
    it("builds bases first and hands each dependent its base's digest, per target", async () => {
        const ev = await evaluate("build", { config: chainConfig() });
        const images = ev.ofType("docker-build:index:Image");
        const byName = (n: string) => {
            const found = images.find((i) => i.name === n);
            if (!found) throw new Error(`no image ${n}`);
            return found;
        };
        const refs = ev.outputs.images as Record<string, { targets: Record<string, { ref: string; digest: string }> }>;
        for (const target of ["cpu-avx2", "arm64-neon"]) {
            const torch = byName(`torch-${target}-image`);
            const pose = byName(`pose-${target}-image`);
            const app = byName(`app-${target}-image`);
            const poseArgs = pose.inputs.buildArgs as Record<string, string>;
            const appArgs = app.inputs.buildArgs as Record<string, string>;
            expect(poseArgs.BASE_IMAGE).toBe(refs.torch.targets[target].ref);
            expect(poseArgs.RUNTIME_BASE_IMAGE).toBe(refs.torch.targets[target].ref);
            expect(appArgs.BASE_IMAGE).toBe(refs.pose.targets[target].ref);
            expect(isDigestRef(appArgs.BASE_IMAGE)).toBe(true);
            expect(torch.order).toBeLessThan(pose.order);
            expect(pose.order).toBeLessThan(app.order);
            expect(refs.app.targets[target].digest).toMatch(/^sha256:[a-f0-9]{64}$/);
        }
    });

    it("rebuilds the dependents of a changed base, and nothing when nothing changed", async () => {
        const inputsOf = async (args: Record<string, string>) =>
            Object.fromEntries(
                (await evaluate("build", { config: chainConfig(args) })).ofType("docker-build:index:Image").map((i) => [i.name, JSON.stringify(i.inputs)]),
            );
        const first = await inputsOf({});
        expect(await inputsOf({})).toEqual(first);
        const changed = await inputsOf({ PIP_EXTRA: "detectron2==0.6" });
        const differs = Object.keys(first).filter((n) => first[n] !== changed[n]).sort();
        expect(differs).toEqual([
            "app-arm64-neon-image",
            "app-cpu-avx2-image",
            "pose-arm64-neon-image",
            "pose-cpu-avx2-image",
            "torch-arm64-neon-image",
            "torch-cpu-avx2-image",
        ]);
    });
});
