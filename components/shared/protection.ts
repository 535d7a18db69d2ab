/**
 * Resources that hold data (image repositories, log groups, model buckets)
 * are protected from deletion and retained if removed from the program,
 * except in stacks that opt out with `ml-infra:protectData: false` (dev).
 */
import type * as pulumi from "@pulumi/pulumi";

export function dataResourceOptions(protectData: boolean): Pick<pulumi.CustomResourceOptions, "protect" | "retainOnDelete"> {
    return { protect: protectData, retainOnDelete: protectData };
}
