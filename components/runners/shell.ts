/** Shell quoting for the scripts and commands the runners and CI run (pure). */

/** Single-quotes a value for a POSIX shell. */
export function shellQuote(value: string): string {
    return `'${value.replace(/'/g, `'\\''`)}'`;
}
