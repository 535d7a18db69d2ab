/**
 * Cross-field checks of the `local` section (pure); key paths are relative to
 * the section.
 */
import { type KeyPath, type Report, keyPathText } from "../shared/problems";
import { type LocalConfig, SIDECAR_RESERVED_ENVIRONMENT, builtSidecarImage, sidecarUrlVariable } from "./schema";

/**
 * Every service and every sidecar that names an image runs an image × target
 * this stack builds (`built` holds `<image>/<target>`), host ports and
 * container names are unique, no sidecar takes its server's port, and config
 * sets none of the environment the section sets itself.
 */
export function checkLocal(local: LocalConfig, built: ReadonlySet<string>, report: Report): void {
    const names = new Map<string, string>();
    const hostPorts = new Map<number, number>();
    const builtList = () => [...built].sort().join(", ") || "nothing";
    local.services.forEach((service, i) => {
        const at: KeyPath = ["services", i];
        if (!built.has(`${service.image}/${service.target}`)) {
            report([...at, "target"], `image ${service.image} is not built for target ${service.target} by this stack; built: ${builtList()}`);
        }
        const firstPort = hostPorts.get(service.hostPort);
        if (firstPort !== undefined) report([...at, "hostPort"], `also used by local.services[${firstPort}]`);
        else hostPorts.set(service.hostPort, i);
        const claim = (container: string, keys: KeyPath) => {
            const other = names.get(container);
            if (other !== undefined) report(keys, `container name also used by ${other}; names are unique`);
            else names.set(container, keyPathText(["local", ...keys]));
        };
        claim(service.name, [...at, "name"]);
        const serverReserved = ["PORT", ...service.sidecars.map(sidecarUrlVariable)];
        for (const key of Object.keys(service.environment)) {
            if (serverReserved.includes(key)) report([...at, "environment", key], `is set by the local section (the server's port, or a sidecar's URL); remove it`);
        }
        service.sidecars.forEach((sidecar, j) => {
            const sat: KeyPath = [...at, "sidecars", j];
            claim(sidecar.name, [...sat, "name"]);
            if (sidecar.port === service.port) report([...sat, "port"], `is the server's port; a sidecar listens on its own port`);
            const build = builtSidecarImage(sidecar, service);
            if (build && !built.has(`${build.image}/${build.target}`)) {
                const key = sidecar.target === undefined ? "image" : "target";
                const why = sidecar.target === undefined ? ` (the service's target; set sidecars[].target to run another build)` : "";
                report([...sat, key], `image ${build.image} is not built for target ${build.target}${why} by this stack; built: ${builtList()}`);
            }
            if (!build && sidecar.target !== undefined) {
                report([...sat, "target"], `only an image this stack builds has a target; ${sidecar.image} is taken from the local registry as it is; remove target`);
            }
            for (const key of Object.keys(sidecar.environment)) {
                if (SIDECAR_RESERVED_ENVIRONMENT.includes(key)) report([...sat, "environment", key], `is set by the local section (${SIDECAR_RESERVED_ENVIRONMENT.join(", ")}); remove it`);
            }
        });
    });
}
