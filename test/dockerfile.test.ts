/**
 * The reference inference server's Dockerfile serves every hardware target:
 * it parses, every target's stage exists, every build arg a target passes is
 * declared, bases are swappable, and layers are ordered for the cache.
 */
import * as fs from "node:fs";
import * as path from "node:path";
import { DockerfileParser, type From } from "dockerfile-ast";
import { describe, expect, it } from "vitest";
import { CATALOG, resolveTarget, targetBuildArgs } from "../components/shared/hardware";
import { ROOT, stackFileConfig, stackNames } from "./harness";
import { PROJECT } from "./fixtures";

const CONTEXT = path.join(ROOT, "images/inference-server");
const text = fs.readFileSync(path.join(CONTEXT, "Dockerfile"), "utf8");
const dockerfile = DockerfileParser.parse(text);
const froms = dockerfile.getFROMs();
const stages = froms.map((f) => f.getBuildStage());

/** Stages named by catalog targets and by targets declared in stack files. */
function targetStages(): Map<string, string> {
    const out = new Map<string, string>(Object.entries(CATALOG).map(([n, t]) => [n, t.stage]));
    for (const stack of stackNames()) {
        for (const key of [`${PROJECT}:build`, `${PROJECT}:serve`]) {
            const section = stackFileConfig(stack)[key] as { targets?: Record<string, { stage?: string }> } | undefined;
            for (const [n, t] of Object.entries(section?.targets ?? {})) if (t.stage) out.set(n, t.stage);
        }
    }
    return out;
}

/** Instructions of the stage that starts at `from`. */
function stageInstructions(from: From) {
    const all = dockerfile.getInstructions();
    const start = all.indexOf(from);
    const next = all.findIndex((ins, i) => i > start && ins.getKeyword() === "FROM");
    return all.slice(start + 1, next < 0 ? undefined : next);
}

describe("reference inference server Dockerfile", () => {
    it("parses, with no syntax directive (it would pull an image)", () => {
        expect(froms.length).toBeGreaterThan(3);
        expect(dockerfile.getDirectives().map((d) => d.getName())).not.toContain("syntax");
    });

    it.each([...targetStages()])("has the stage of target %s (%s)", (_target, stage) => {
        expect(stages).toContain(stage);
    });

    it("lets a build swap the base images", () => {
        expect(dockerfile.getInitialARGs().map((a) => a.getProperty()?.getName())).toEqual(["BASE_IMAGE", "RUNTIME_BASE_IMAGE"]);
        for (const from of froms) {
            const image = from.getImage() ?? "";
            const internal = stages.includes(image);
            expect(internal || image === "${BASE_IMAGE}" || image === "${RUNTIME_BASE_IMAGE}", `FROM ${image}`).toBe(true);
        }
    });

    it.each(Object.keys(CATALOG))("declares every build arg target %s passes", (name) => {
        const declared = new Set(dockerfile.getARGs().map((a) => a.getProperty()?.getName()));
        const args = targetBuildArgs(resolveTarget(name, CATALOG[name]), "b", "r");
        for (const arg of Object.keys(args)) expect(declared, arg).toContain(arg);
    });

    it("runs the multi-hour source build first, so its layers cache independently", () => {
        expect(stages[0]).toBe("torch-source");
        const run = stageInstructions(froms[0]).find((i) => i.getKeyword() === "RUN");
        expect(run?.getTextContent()).toContain("--mount=type=cache,target=/root/.cache/torch-src");
    });

    it("uses BuildKit cache mounts for package downloads", () => {
        const runs = dockerfile.getInstructions().filter((i) => i.getKeyword() === "RUN");
        const cached = runs.filter((r) => r.getTextContent().includes("--mount=type=cache,target=/var/cache/apt"));
        expect(cached.length).toBeGreaterThanOrEqual(2);
        expect(runs.some((r) => r.getTextContent().includes("--mount=type=cache,target=/root/.cache/pip"))).toBe(true);
    });

    it("copies application code last in every runtime stage", () => {
        for (const stage of new Set(Object.values(CATALOG).map((t) => t.stage))) {
            const from = froms.find((f) => f.getBuildStage() === stage) as From;
            const last = stageInstructions(from).at(-1);
            expect(last?.getKeyword()).toBe("COPY");
            expect(last?.getRawArgumentsContent()).toContain("app/server.py");
        }
    });

    it("has a .dockerignore that admits only what the stages copy", () => {
        const ignore = fs.readFileSync(path.join(CONTEXT, ".dockerignore"), "utf8").split("\n");
        expect(ignore).toContain("**");
        const copied = dockerfile
            .getCOPYs()
            .filter((c) => !c.getFromFlag())
            .flatMap((c) => c.getArguments().slice(0, -1).map((a) => a.getValue()));
        for (const src of copied) {
            expect(ignore.some((line) => line.startsWith("!") && src.startsWith(line.slice(1))), src).toBe(true);
            expect(fs.existsSync(path.join(CONTEXT, src)), src).toBe(true);
        }
    });
});
