/**
 * Image chains (pure): an image may name another image of the build section
 * as its `base`. Per target, the base is built first and its digest is the
 * dependent's BASE_IMAGE, so a change to a base rebuilds its dependents and
 * nothing rebuilds when nothing changed.
 */

export interface ChainNode {
    readonly name: string;
    readonly base?: string;
    readonly targets: readonly string[];
}

export interface ChainProblem {
    /** Index of the image in build.images the problem is reported on. */
    readonly index: number;
    readonly key: "base" | "targets";
    readonly message: string;
}

/** Missing bases, targets a base does not build, and cycles. */
export function chainProblems(images: readonly ChainNode[]): ChainProblem[] {
    const byName = new Map(images.map((image) => [image.name, image]));
    const problems: ChainProblem[] = [];
    images.forEach((image, index) => {
        if (image.base === undefined) return;
        const base = byName.get(image.base);
        if (image.base === image.name) {
            problems.push({ index, key: "base", message: `image "${image.name}" cannot be its own base` });
        } else if (!base) {
            const allowed = images.map((i) => i.name).filter((n) => n !== image.name).sort();
            problems.push({ index, key: "base", message: `unknown base image; allowed: ${allowed.join(", ") || "(no other image)"}` });
        } else {
            const missing = image.targets.filter((t) => !base.targets.includes(t));
            if (missing.length > 0) {
                problems.push({
                    index,
                    key: "targets",
                    message: `image "${image.name}" builds ${missing.join(", ")} but its base "${base.name}" does not (it builds ${base.targets.join(", ")})`,
                });
            }
        }
    });
    for (const cycle of cycles(images)) {
        const index = images.findIndex((i) => i.name === cycle[0]);
        problems.push({ index, key: "base", message: `base images form a cycle: ${[...cycle, cycle[0]].join(" -> ")}` });
    }
    return problems;
}

/** Every cycle of the `base` relation, each once, starting at its first image in declaration order. */
function cycles(images: readonly ChainNode[]): string[][] {
    const baseOf = new Map(images.map((i) => [i.name, i.base]));
    const order = new Map(images.map((i, n) => [i.name, n]));
    const found = new Map<string, string[]>();
    for (const start of images) {
        const path: string[] = [];
        let cur: string | undefined = start.name;
        while (cur !== undefined && baseOf.has(cur) && !path.includes(cur)) {
            path.push(cur);
            cur = baseOf.get(cur);
        }
        if (cur === undefined || !path.includes(cur)) continue;
        const loop = path.slice(path.indexOf(cur));
        const first = loop.reduce((a, b) => ((order.get(a) ?? 0) <= (order.get(b) ?? 0) ? a : b));
        const rotated = [...loop.slice(loop.indexOf(first)), ...loop.slice(0, loop.indexOf(first))];
        found.set(rotated.join(">"), rotated);
    }
    return [...found.values()];
}

/** Images ordered so that every base comes before its dependents (stable otherwise). Assumes no cycle. */
export function buildOrder<T extends ChainNode>(images: readonly T[]): T[] {
    const byName = new Map(images.map((i) => [i.name, i]));
    const done = new Set<string>();
    const out: T[] = [];
    const visit = (image: T, seen: ReadonlySet<string>) => {
        if (done.has(image.name)) return;
        if (seen.has(image.name)) throw new Error(`base images form a cycle through ${image.name}`);
        const base = image.base === undefined ? undefined : byName.get(image.base);
        if (base) visit(base, new Set([...seen, image.name]));
        done.add(image.name);
        out.push(image);
    };
    for (const image of images) visit(image, new Set());
    return out;
}
