import { describe, expect, it } from "vitest";
import { targetSpecSchema } from "../components/shared/target-config";
import { CATALOG, cudaArchProblems, poolMatchesPlatform, resolveTarget, targetBuildArgs } from "../components/shared/hardware";

describe("hardware target catalog", () => {
    it("has the targets the product promises", () => {
        expect(Object.keys(CATALOG).sort()).toEqual(["arm64-neon", "cpu-avx2", "cpu-avx512", "cuda11-source", "cuda12"]);
    });

    it.each(Object.entries(CATALOG))("%s is a valid, self-consistent target", (_name, spec) => {
        expect(targetSpecSchema.safeParse(spec).success).toBe(true);
        expect(poolMatchesPlatform(spec.pool, spec.platform)).toBe(true);
        if (spec.cuda) expect(cudaArchProblems(spec.cuda)).toEqual([]);
    });

    it("builds x86 CPU targets with their instruction sets on amd64", () => {
        expect(CATALOG["cpu-avx2"]).toMatchObject({ platform: "linux/amd64", pool: "amd64" });
        expect(CATALOG["cpu-avx2"].buildArgs.KERNEL_CFLAGS).toContain("-mavx2");
        expect(CATALOG["cpu-avx512"]).toMatchObject({ platform: "linux/amd64", pool: "amd64" });
        expect(CATALOG["cpu-avx512"].buildArgs.KERNEL_CFLAGS).toContain("-mavx512f");
    });

    it("builds arm64 natively on Graviton with NEON dot product", () => {
        expect(CATALOG["arm64-neon"]).toMatchObject({ platform: "linux/arm64", pool: "arm64" });
        expect(CATALOG["arm64-neon"].buildArgs.KERNEL_CFLAGS).toContain("-march=armv8.2-a+dotprod");
    });

    it("cuda12 uses CUDA 12.8 binary wheels for compute 6.0 to 12.0", () => {
        const t = CATALOG.cuda12;
        expect(t.baseImage).toContain("cuda:12.8");
        expect(t.buildArgs).toMatchObject({ TORCH_VARIANT: "cu128", BUILD_FROM_SOURCE: "false" });
        expect(t.cuda?.archList[0]).toBe("6.0");
        expect(t.cuda?.archList).toContain("9.0");
        expect(t.cuda?.archList.at(-1)).toBe("12.0");
    });

    it("cuda11-source builds PyTorch from source for sm_52 on CUDA 11.8 with a long timeout", () => {
        const t = CATALOG["cuda11-source"];
        expect(t.baseImage).toContain("cuda:11.8");
        expect(t.buildArgs.BUILD_FROM_SOURCE).toBe("true");
        expect(t.cuda?.archList).toEqual(["5.2"]);
        expect(t.buildTimeoutMinutes).toBeGreaterThanOrEqual(240);
        expect(t.buildTimeoutMinutes).toBeGreaterThan(CATALOG.cuda12.buildTimeoutMinutes);
    });

    it("derives what a target needs at run time", () => {
        expect(resolveTarget("cuda12", CATALOG.cuda12).runtime).toEqual({ gpu: true, cpuArchitecture: "X86_64" });
        expect(resolveTarget("arm64-neon", CATALOG["arm64-neon"]).runtime).toEqual({ gpu: false, cpuArchitecture: "ARM64" });
        expect(resolveTarget("cpu-avx2", CATALOG["cpu-avx2"]).runtime).toEqual({ gpu: false, cpuArchitecture: "X86_64" });
    });

    it("hands the Dockerfile the resolved bases and the CUDA arch list", () => {
        const args = targetBuildArgs(resolveTarget("cuda12", CATALOG.cuda12), "reg/base:1", "reg/rt:1");
        expect(args).toMatchObject({
            BASE_IMAGE: "reg/base:1",
            RUNTIME_BASE_IMAGE: "reg/rt:1",
            CUDA_ARCH_LIST: "6.0;6.1;7.0;7.5;8.0;8.6;8.9;9.0;10.0;12.0",
            TORCH_CUDA_ARCH_LIST: "6.0;6.1;7.0;7.5;8.0;8.6;8.9;9.0;10.0;12.0",
            TARGET_NAME: "cuda12",
            REQUIRED_CPU_FEATURES: "avx2",
        });
        expect(targetBuildArgs(resolveTarget("cpu-avx2", CATALOG["cpu-avx2"]), "b", "r")).not.toHaveProperty("CUDA_ARCH_LIST");
    });
});

describe("CUDA arch checks", () => {
    it.each([
        [{ version: "11.8.0", archList: ["5.2"] }, 0],
        [{ version: "12.8.1", archList: ["12.0", "9.0+PTX"] }, 0],
        [{ version: "12.4.0", archList: ["12.0"] }, 1],
        [{ version: "13.0.0", archList: ["5.2"] }, 1],
        [{ version: "12.8.1", archList: ["sm_80"] }, 1],
        [{ version: "10.2", archList: ["7.0"] }, 1],
    ])("%j has %i problem(s)", (cuda, count) => {
        expect(cudaArchProblems(cuda)).toHaveLength(count);
    });
});
