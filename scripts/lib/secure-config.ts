/**
 * Secret config values in stack files, for tools that run without the Pulumi
 * CLI (the offline plan, promote's validation). `pulumi config set --secret`
 * writes a value as `{secure: "v1:..."}`, either for a whole key
 * (`ml-infra:buildSecrets: {secure: ...}`, the decrypted text being the JSON of
 * the value) or nested inside a structured one (`--path`). Without the stack's
 * secrets provider nothing can be decrypted, so every secure value is replaced
 * by a stand-in: the string "[secret]" where a string is expected, or, for a
 * whole structured key listed in STRUCTURED_STAND_INS, a value of the shape
 * the schema wants. The keys holding secure values are the keys the Pulumi CLI
 * marks as secret (the whole top-level key, even for a nested value). Pure.
 */

/** What a secret value is replaced with (and how the plan shows secrets). */
export const SECRET_STAND_IN = "[secret]";

/** `{secure: "<ciphertext>"}`: a value `pulumi config set --secret` wrote. */
export function isSecureValue(value: unknown): value is { readonly secure: string } {
    if (value === null || typeof value !== "object" || Array.isArray(value)) return false;
    const keys = Object.keys(value);
    return keys.length === 1 && keys[0] === "secure" && typeof (value as { secure?: unknown }).secure === "string";
}

/** Does a config value hold a secure value anywhere? */
export function containsSecure(value: unknown): boolean {
    if (isSecureValue(value)) return true;
    if (Array.isArray(value)) return value.some(containsSecure);
    if (value !== null && typeof value === "object") return Object.values(value).some(containsSecure);
    return false;
}

/** The value with every nested secure value replaced by "[secret]". */
export function withStandIns(value: unknown): unknown {
    if (isSecureValue(value)) return SECRET_STAND_IN;
    if (Array.isArray(value)) return value.map(withStandIns);
    if (value !== null && typeof value === "object") {
        return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, withStandIns(v)]));
    }
    return value;
}

type StackConfigValues = Readonly<Record<string, unknown>>;

/** The ids the stack's images ask for (`<project>:build.images[].secrets`). */
function buildSecretIds(config: StackConfigValues, project: string): string[] {
    const build = withStandIns(config[`${project}:build`]) as { images?: unknown } | undefined;
    const images = Array.isArray(build?.images) ? build.images : [];
    const ids = images.flatMap((image: unknown) => {
        const secrets = (image as { secrets?: unknown } | null)?.secrets;
        return Array.isArray(secrets) ? secrets.filter((id): id is string => typeof id === "string") : [];
    });
    return [...new Set(ids)].sort();
}

/**
 * Stand-ins for whole keys whose decrypted value is structured (JSON), by key
 * without the project prefix. A key not listed gets the string "[secret]".
 * Add an entry when a structured key may be set with `--secret` as a whole.
 */
export const STRUCTURED_STAND_INS: Readonly<Record<string, (config: StackConfigValues, project: string) => unknown>> = {
    /** A map id -> token: every id an image asks for, each "[secret]". */
    buildSecrets: (config, project) => Object.fromEntries(buildSecretIds(config, project).map((id) => [id, SECRET_STAND_IN])),
};

/** The stand-in for a value (a whole secure key, or a structure that may hold secure values). */
export function standInFor(key: string, value: unknown, config: StackConfigValues, project: string): unknown {
    if (!isSecureValue(value)) return withStandIns(value);
    const name = key.startsWith(`${project}:`) ? key.slice(project.length + 1) : undefined;
    const structured = name === undefined ? undefined : STRUCTURED_STAND_INS[name];
    return structured ? structured(config, project) : SECRET_STAND_IN;
}

/** YAML's text of a number JSON cannot hold (`.inf`, `-.inf`, `.nan`), as the CLI keeps a scalar's text. */
function nonFiniteText(n: number): string {
    return Number.isNaN(n) ? ".nan" : n > 0 ? ".inf" : "-.inf";
}

/**
 * A config value as the Pulumi CLI hands it to a program: strings as they
 * are, everything else as JSON. A number JSON cannot hold (YAML `.inf`,
 * `.nan`) stays its YAML text, so the program names it instead of reading null.
 */
export function encodeConfigValue(value: unknown): string {
    if (typeof value === "string") return value;
    if (typeof value === "number" && !Number.isFinite(value)) return nonFiniteText(value);
    return JSON.stringify(value, (_, v: unknown) => (typeof v === "number" && !Number.isFinite(v) ? nonFiniteText(v) : v));
}

/**
 * A stack file's `config:` as the Pulumi CLI hands it to the program (flat
 * map of strings, stand-ins for secure values) and the keys it marks secret.
 */
export function cliValues(config: StackConfigValues, project: string): { values: Record<string, string>; secretKeys: string[] } {
    const values: Record<string, string> = {};
    const secretKeys: string[] = [];
    for (const [key, value] of Object.entries(config)) {
        values[key] = encodeConfigValue(standInFor(key, value, config, project));
        if (containsSecure(value)) secretKeys.push(key);
    }
    return { values, secretKeys };
}
