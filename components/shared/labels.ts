/**
 * Docker labels the program puts on containers (ECS task definitions and the
 * local stack's containers) and the policy pack reads.
 */

/** What a container binds on 127.0.0.1 (read by tests and operators). */
export const BINDS_LABEL = "ml-infra.binds";
/** The (primary) port a sidecar listens on: the policy pack's no-sidecar-port-ingress reads it. */
export const SIDECAR_PORT_LABEL = "ml-infra.sidecar-port";
/** A container's role: server, init or sidecar. */
export const ROLE_LABEL = "ml-infra.role";
