import { describe, expect, it } from "vitest";
import { evaluate } from "./harness";

describe("smoke", () => {
    it("build", async () => {
        const t0 = Date.now();
        const ev = await evaluate("build");
        console.log(Date.now() - t0, ev.resources.map((r) => `${r.type} ${r.name}`).join("\n"));
        console.log(JSON.stringify(ev.outputs, null, 1).slice(0, 3000));
        expect(ev.resources.length).toBeGreaterThan(0);
    });
});
