/**
 * Cross-field checks of the `local` section (pure); key paths are relative to
 * the section.
 */
import { type KeyPath, type Report, keyPathText } from "../shared/problems";
import type { LocalConfig } from "./schema";

/**
 * Every service runs an image × target this stack builds (`built` holds
 * `<image>/<target>`), host ports and container names are unique, and no
 * sidecar takes its server's port.
 */
export function checkLocal(local: LocalConfig, built: ReadonlySet<string>, report: Report): void {
    const names = new Map<string, string>();
    const hostPorts = new Map<number, number>();
    local.services.forEach((service, i) => {
        const at: KeyPath = ["services", i];
        if (!built.has(`${service.image}/${service.target}`)) {
            report([...at, "target"], `image ${service.image} is not built for target ${service.target} by this stack; built: ${[...built].sort().join(", ") || "nothing"}`);
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
        service.sidecars.forEach((sidecar, j) => claim(sidecar.name, [...at, "sidecars", j, "name"]));
        service.sidecars.forEach((sidecar, j) => {
            if (sidecar.port === service.port) report([...at, "sidecars", j, "port"], `is the server's port; a sidecar listens on its own port`);
        });
    });
}
