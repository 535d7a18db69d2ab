/**
 * What serving on ECS decides (pure): the ECS-optimized AMI and agent
 * settings per hardware kind, capacity provider names, spot use, rolling
 * update bounds, placement.
 */
import type { HardwareTarget } from "../shared/hardware";
import type { HardwareKind } from "./hardware-kinds";
import type { CapacityGroupConfig } from "./schema";

/** Public SSM parameter of the ECS-optimized Amazon Linux 2023 AMI for a kind. */
export function ecsAmiParameter(kind: HardwareKind): string {
    const variant: Record<HardwareKind, string> = { gpu: "gpu/", arm64: "arm64/", cpu: "" };
    return `/aws/service/ecs/optimized-ami/amazon-linux-2023/${variant[kind]}recommended/image_id`;
}

/** What the launch template puts in `imageId`: EC2 resolves it at launch. */
export function ecsAmiImageId(kind: HardwareKind): string {
    return `resolve:ssm:${ecsAmiParameter(kind)}`;
}

/** Name of a kind's capacity provider (ECS refuses names starting with aws, ecs or fargate). */
export function capacityProviderName(clusterName: string, kind: HardwareKind): string {
    return `${clusterName}-${kind}`;
}

/**
 * ECS agent settings (/etc/ecs/ecs.config) of a kind's instances.
 *
 * Instance metadata: IMDSv2 only, hop limit 1. Tasks do not need IMDS: in
 * awsvpc mode their credentials come from the ECS agent's endpoint
 * (169.254.170.2, AWS_CONTAINER_CREDENTIALS_RELATIVE_URI) and the region from
 * AWS_REGION, which the definitions set. Hop limit 1 alone does not stop an
 * awsvpc task (its ENI reaches IMDS in one hop), so ECS_AWSVPC_BLOCK_IMDS
 * closes it: a task can never borrow the instance role.
 */
export function ecsAgentConfig(clusterName: string, kind: HardwareKind, spot: boolean): Record<string, string> {
    const config: Record<string, string> = {
        ECS_CLUSTER: clusterName,
        ECS_AWSVPC_BLOCK_IMDS: "true",
        // Images are pinned by digest, so a cached image is the right image; GPU images are large.
        ECS_IMAGE_PULL_BEHAVIOR: "prefer-cached",
        ECS_ENABLE_CONTAINER_METADATA: "true",
    };
    if (spot) config.ECS_ENABLE_SPOT_INSTANCE_DRAINING = "true";
    if (kind === "gpu") config.ECS_ENABLE_GPU_SUPPORT = "true";
    return config;
}

/** User data (plain text) writing the agent config, keys sorted. */
export function ecsUserData(config: Readonly<Record<string, string>>): string {
    const lines = Object.keys(config)
        .sort()
        .map((k) => `${k}=${config[k]}`);
    return ["#!/bin/bash", "cat >> /etc/ecs/ecs.config <<'EOF'", ...lines, "EOF", ""].join("\n");
}

/** Whether a group may run spot instances. */
export function usesSpot(group: CapacityGroupConfig): boolean {
    return group.onDemandPercentageAboveBaseCapacity < 100 && group.maxSize > group.onDemandBaseCapacity;
}

export interface DeploymentPercents {
    readonly minimumHealthyPercent: number;
    readonly maximumPercent: number;
}

/**
 * Rolling-update bounds. GPU services replace tasks one at a time without
 * ever needing a spare GPU (maximum 100%): a single-GPU service stops its task
 * and starts the new one (minimum 0%); with n replicas n-1 keep serving.
 * CPU and Graviton capacity is cheap to surge: start new tasks first (100/200).
 */
export function deploymentPercents(kind: HardwareKind, replicas: number): DeploymentPercents {
    if (kind !== "gpu") return { minimumHealthyPercent: 100, maximumPercent: 200 };
    if (replicas <= 1) return { minimumHealthyPercent: 0, maximumPercent: 100 };
    return { minimumHealthyPercent: Math.floor((100 * (replicas - 1)) / replicas), maximumPercent: 100 };
}

/** A resource-name-safe suffix for a rule's peer (sg-0abc... or 10-0-0-0-16). */
export function peerSuffix(peer: string): string {
    return peer.replace(/[^A-Za-z0-9]+/g, "-").replace(/-+$/, "");
}

/** The ECS attribute value of a target's CPU architecture. */
export function ecsCpuArchitecture(target: HardwareTarget): "x86_64" | "arm64" {
    return target.runtime.cpuArchitecture === "ARM64" ? "arm64" : "x86_64";
}

/** What an ECS cluster name may be. */
export const CLUSTER_NAME_RE = /^[A-Za-z0-9_-]{1,200}$/;
