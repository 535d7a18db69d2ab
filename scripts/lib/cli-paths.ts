/**
 * Paths for the command-line scripts: the project root is found from the
 * scripts' own location (never from the working directory), and the paths a
 * user passes (--json, --config, --from-outputs ...) are relative to the
 * directory they ran the command in. `npm run <script>` runs in the project
 * root and passes the caller's directory as INIT_CWD; it is used only when
 * this very script is the npm script being run.
 */
import * as fs from "node:fs";
import * as path from "node:path";

/** The project root: the directory holding Pulumi.yaml, one up from scripts/. */
export const PROJECT_ROOT = path.resolve(__dirname, "..", "..");

/** The directory the user ran `script` from (`npm run <script>`: INIT_CWD; otherwise the working directory). */
export function callerCwd(script: string, env: NodeJS.ProcessEnv = process.env): string {
    const init = env.INIT_CWD;
    if (init && env.npm_lifecycle_event === script && path.isAbsolute(init) && fs.existsSync(init)) return init;
    return process.cwd();
}

/** A path for messages: relative to `root` when inside it, absolute otherwise. */
export function displayPath(file: string, root: string = PROJECT_ROOT): string {
    const rel = path.relative(root, file);
    return rel && !rel.startsWith("..") && !path.isAbsolute(rel) ? rel : file;
}

/** Stack names as `stacks/Pulumi.<name>.yaml` allows them: letters, digits, _ . - (no path separators, no ".."). */
export function isStackName(name: string): boolean {
    return /^[A-Za-z0-9_.-]+$/.test(name) && !name.includes("..") && !/^\.+$/.test(name);
}
