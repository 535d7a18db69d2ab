/**
 * The `local` section (zod schema and inferred types): services run on this
 * machine's Docker from this stack's own builds (the `local` stack, no AWS).
 */
import { z } from "zod";
import { name, strict, stringMap } from "../shared/schema";

const localSidecarSchema = strict({
    name: name("sidecar name"),
    image: z.string().regex(/^(127\.0\.0\.1|localhost):\d{2,5}\/[a-z0-9._/-]+(:[A-Za-z0-9_.-]+)?(@sha256:[a-f0-9]{64})?$/, "must be an image in the local registry (127.0.0.1:<port>/...)"),
    port: z.number().int().min(1).max(65535),
    command: z.array(z.string()).default([]),
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
