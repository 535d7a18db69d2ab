/**
 * The `local` section (zod schema and inferred types): services run on this
 * machine's Docker from this stack's own builds (the `local` stack, no AWS).
 */
import { z } from "zod";
import { NAME_RE, name, strict, stringMap } from "../shared/schema";

/** An image already in a loopback registry: `127.0.0.1:<port>/repository[:tag][@sha256:...]`. */
export const LOCAL_IMAGE_REF_RE = /^(127\.0\.0\.1|localhost):\d{2,5}\/[a-z0-9._/-]+(:[A-Za-z0-9_.-]+)?(@sha256:[a-f0-9]{64})?$/;

/** Environment the local section sets on every sidecar; config may not set these. */
export const SIDECAR_RESERVED_ENVIRONMENT: readonly string[] = ["PORT", "SERVER_URL"];

const localSidecarSchema = strict({
    name: name("sidecar name"),
    /**
     * What the sidecar runs: the name of an image this stack builds
     * (`build.images[].name`; it runs that build's digest for `target`), or an
     * image already in the local registry (`127.0.0.1:<port>/...`). Required.
     */
    image: z
        .string()
        .refine(
            (v) => NAME_RE.test(v) || LOCAL_IMAGE_REF_RE.test(v),
            "must be the name of an image this stack builds (build.images[].name) or an image in the local registry (127.0.0.1:<port>/...)",
        ),
    /** With an image this stack builds: the target whose build runs. Default: the service's target. */
    target: name("target name").optional(),
    /** The port it listens on inside the internal network (never published); set as PORT. */
    port: z.number().int().min(1).max(65535),
    /** Command; default: the image's. */
    command: z.array(z.string()).default([]),
    /** Extra environment. Default none; PORT and SERVER_URL (`http://<service>:<port>/`) are set. */
    environment: stringMap.default({}),
});

const localServiceSchema = strict({
    name: name("service name"),
    image: name("image name"),
    target: z.string(),
    port: z.number().int().min(1).max(65535).default(8080),
    hostPort: z.number().int().min(1024).max(65535),
    environment: stringMap.default({}),
    sidecars: z.array(localSidecarSchema).default([]),
});

/** The serve section of a stack on local Docker: services run from this stack's own builds. */
export const localSchema = strict({
    services: z.array(localServiceSchema).min(1, "the local section needs at least one service"),
});

export type LocalConfig = z.infer<typeof localSchema>;
export type LocalServiceConfig = LocalConfig["services"][number];
export type LocalSidecarConfig = LocalServiceConfig["sidecars"][number];

/** The image × target of this stack a sidecar runs; undefined when it runs an image from the local registry. */
export function builtSidecarImage(sidecar: LocalSidecarConfig, service: Pick<LocalServiceConfig, "target">): { image: string; target: string } | undefined {
    return NAME_RE.test(sidecar.image) ? { image: sidecar.image, target: sidecar.target ?? service.target } : undefined;
}

/** Environment name under which the server finds a sidecar: `SIDECAR_<NAME>_URL`. */
export function sidecarUrlVariable(sidecar: Pick<LocalSidecarConfig, "name">): string {
    return `SIDECAR_${sidecar.name.toUpperCase().replace(/-/g, "_")}_URL`;
}
