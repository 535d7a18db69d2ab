/**
 * LocalService: one inference server and its sidecars on this machine's
 * Docker (the `local` stack, no AWS). The server runs this stack's own build,
 * pinned by digest, on two networks: `<service>-serve` (its one port
 * published on 127.0.0.1 only) and `<service>-sidecars` (internal: no route
 * out), where the sidecars run with no published port at all. A sidecar runs
 * one of this stack's builds by digest, or an image from the local registry;
 * it finds the server by name (SERVER_URL) and the server finds it by name
 * (SIDECAR_<NAME>_URL).
 */
import * as docker from "@pulumi/docker";
import * as pulumi from "@pulumi/pulumi";
import { requireDigestRef } from "../shared/image-refs";
import { SIDECAR_PORT_LABEL } from "../shared/labels";
import { type LocalServiceConfig, builtSidecarImage, sidecarUrlVariable } from "./schema";

export interface LocalServiceArgs {
    /** The service as declared in `local.services[]` (port, hostPort, environment, sidecars). */
    readonly service: LocalServiceConfig;
    /** The digest reference this stack built for the service's image and target. */
    readonly image: pulumi.Input<string>;
    /**
     * By sidecar name, the digest reference this stack built for each sidecar
     * that names one of its images (`builtSidecarImage`). Default: none (every
     * sidecar runs an image from the local registry).
     */
    readonly sidecarImages?: Readonly<Record<string, pulumi.Input<string>>>;
    /** Labels put on every container and network. */
    readonly labels: Readonly<Record<string, string>>;
}

/** Docker's list form of a label map, sorted. */
function labelList(labels: Readonly<Record<string, string>>): Array<{ label: string; value: string }> {
    return Object.keys(labels)
        .sort()
        .map((label) => ({ label, value: labels[label] }));
}

export class LocalService extends pulumi.ComponentResource {
    public readonly server: docker.Container;
    public readonly sidecars: readonly docker.Container[];
    /** `http://127.0.0.1:<hostPort>` */
    public readonly url: string;

    constructor(name: string, args: LocalServiceArgs, opts?: pulumi.ComponentResourceOptions) {
        super("ml-infra:local:LocalService", name, {}, opts);
        const { service } = args;
        const labels = { ...args.labels, "ml-infra.service": service.name };
        const serveNet = new docker.Network(`${name}-serve`, { name: `${service.name}-serve`, labels: labelList(labels) }, { parent: this });
        // Internal: containers on it reach each other and nothing else, and publish nothing.
        const sidecarNet = new docker.Network(
            `${name}-sidecars`,
            { name: `${service.name}-sidecars`, internal: true, labels: labelList(labels) },
            { parent: this },
        );

        const serverUrl = `http://${service.name}:${service.port}/`;
        this.sidecars = service.sidecars.map((sidecar) => {
            const build = builtSidecarImage(sidecar, service);
            const built = args.sidecarImages?.[sidecar.name];
            if (build && built === undefined) {
                throw new pulumi.ResourceError(`sidecar ${sidecar.name} runs image ${build.image} (${build.target}) of this stack, but no digest reference was given for it`, this);
            }
            const image = build && built !== undefined ? pulumi.output(built).apply((ref) => requireDigestRef(ref, `sidecar ${sidecar.name}`)) : sidecar.image;
            const env: Record<string, string> = { ...sidecar.environment, PORT: String(sidecar.port), SERVER_URL: serverUrl };
            return new docker.Container(
                `${name}-${sidecar.name}`,
                {
                    name: sidecar.name,
                    image,
                    command: sidecar.command.length > 0 ? [...sidecar.command] : undefined,
                    envs: Object.keys(env)
                        .sort()
                        .map((k) => `${k}=${env[k]}`),
                    networksAdvanced: [{ name: sidecarNet.name, aliases: [sidecar.name] }],
                    labels: labelList({
                        ...labels,
                        [SIDECAR_PORT_LABEL]: String(sidecar.port),
                        ...(build ? { "ml-infra.image": build.image, "ml-infra.target": build.target } : {}),
                    }),
                    restart: "unless-stopped",
                },
                { parent: this },
            );
        });

        const environment: Record<string, string> = {
            ...service.environment,
            PORT: String(service.port),
            ...Object.fromEntries(service.sidecars.map((s) => [sidecarUrlVariable(s), `http://${s.name}:${s.port}/`])),
        };
        this.server = new docker.Container(
            `${name}-server`,
            {
                name: service.name,
                image: pulumi.output(args.image).apply((ref) => requireDigestRef(ref, `service ${service.name}`)),
                networksAdvanced: [
                    { name: serveNet.name, aliases: [service.name] },
                    { name: sidecarNet.name, aliases: [service.name] },
                ],
                ports: [{ internal: service.port, external: service.hostPort, ip: "127.0.0.1" }],
                envs: Object.keys(environment)
                    .sort()
                    .map((k) => `${k}=${environment[k]}`),
                labels: labelList({ ...labels, "ml-infra.image": service.image, "ml-infra.target": service.target }),
                restart: "unless-stopped",
            },
            { parent: this, dependsOn: [...this.sidecars] },
        );
        this.url = `http://127.0.0.1:${service.hostPort}`;
        this.registerOutputs({ url: this.url });
    }
}
