/**
 * What looks like a credential (pure). Config in a stack file is plain text in
 * git and in Pulumi's state; environment variables and build args end up in
 * task definitions and image history. So a value that looks like a secret is
 * refused there, and the message says where it belongs instead.
 *
 * The rules:
 * - names: a variable or build arg whose name has a word (split at `_`, `-`,
 *   `.` and lower-to-upper case changes) that names a secret: SECRET,
 *   PASSWORD, PASSWD, PASSPHRASE, PWD, TOKEN, CREDENTIAL(S), APIKEY, or KEY
 *   right after API, ACCESS, PRIVATE, SECRET, SIGNING, ENCRYPTION, CLIENT or
 *   MASTER (TOKENIZERS_PARALLELISM, CACHE_KEY or KEYRING are fine);
 * - values: the shapes of well-known credentials (AWS access key ids, GitHub,
 *   GitLab, Hugging Face, Slack, OpenAI, Anthropic, Stripe and Google API
 *   tokens, JSON Web Tokens, PEM private keys) and URLs carrying user info
 *   (`https://user:token@host`, `https://token@host`);
 * - an opaque key: one token of 32+ base64 characters with a random-looking
 *   stretch of 24+ characters (mixed case and digits, over 4 bits of entropy
 *   per character) between separators; digests (`sha256:…`), ARNs, paths,
 *   names such as TLS policy names and URLs without user info pass.
 */

const SECRET_WORDS = new Set(["SECRET", "SECRETS", "PASSWORD", "PASSWORDS", "PASSWD", "PASSPHRASE", "PWD", "TOKEN", "TOKENS", "CREDENTIAL", "CREDENTIALS", "APIKEY", "PRIVATEKEY"]);
const KEY_QUALIFIERS = new Set(["API", "ACCESS", "PRIVATE", "SECRET", "SIGNING", "ENCRYPTION", "CLIENT", "MASTER"]);

/** The words of a name: `HF_TOKEN` → HF, TOKEN; `apiKey` → API, KEY. */
export function nameWords(name: string): string[] {
    return name
        .replace(/([a-z0-9])([A-Z])/g, "$1_$2")
        .split(/[_\-.\s]+/)
        .filter((w) => w !== "")
        .map((w) => w.toUpperCase());
}

/** Does this variable or build arg name say it holds a secret? */
export function isCredentialName(name: string): boolean {
    const words = nameWords(name);
    return words.some((w, i) => SECRET_WORDS.has(w) || (w === "KEY" && i > 0 && KEY_QUALIFIERS.has(words[i - 1])));
}

const TOKEN_SHAPES: ReadonlyArray<{ readonly what: string; readonly re: RegExp }> = [
    { what: "an AWS access key id", re: /\b(AKIA|ASIA|AGPA|AIDA|AROA|ANPA|ANVA|AIPA)[A-Z0-9]{16}\b/ },
    { what: "a GitHub token", re: /\b(gh[pousr]_[A-Za-z0-9]{30,}|github_pat_[A-Za-z0-9_]{40,})\b/ },
    { what: "a GitLab token", re: /\bglpat-[A-Za-z0-9_-]{20,}\b/ },
    { what: "a Hugging Face token", re: /\bhf_[A-Za-z0-9]{30,}\b/ },
    { what: "a Slack token", re: /\bxox[abposr]-[A-Za-z0-9-]{10,}\b/ },
    { what: "an OpenAI or Anthropic key", re: /\bsk-(ant-|proj-)?[A-Za-z0-9_-]{20,}\b/ },
    { what: "a Stripe key", re: /\b(sk|rk)_(live|test)_[A-Za-z0-9]{16,}\b/ },
    { what: "a Google API key", re: /\bAIza[0-9A-Za-z_-]{35}\b/ },
    { what: "a JSON Web Token", re: /\beyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}/ },
    { what: "a private key", re: /-----BEGIN ([A-Z]+ )?PRIVATE KEY-----/ },
];

/** A URL with user info: `scheme://user[:password]@host`. */
const USERINFO_URL_RE = /\b[a-z][a-z0-9+.-]*:\/\/[^\s/@:]+(:[^\s/@]*)?@[^\s/@]+/i;

/** Why a value looks like a credential (undefined: it does not). */
export function credentialValueProblem(value: string): string | undefined {
    for (const shape of TOKEN_SHAPES) if (shape.re.test(value)) return `looks like ${shape.what}`;
    if (USERINFO_URL_RE.test(value)) return "is a URL with credentials in it (user info before @)";
    if (isOpaqueKey(value)) return "looks like an opaque key (a long random-looking run of mixed-case letters and digits)";
    return undefined;
}

/** Shannon entropy of a string, bits per character. */
function entropy(text: string): number {
    const counts = new Map<string, number>();
    for (const c of text) counts.set(c, (counts.get(c) ?? 0) + 1);
    let bits = 0;
    for (const n of counts.values()) bits -= (n / text.length) * Math.log2(n / text.length);
    return bits;
}

/** How often the character class (lower, upper, digit, other) changes between neighbours: ~0.6 in random base64, ~0.2 in CamelCase words. */
function classChanges(text: string): number {
    const cls = (c: string) => (/[a-z]/.test(c) ? 0 : /[A-Z]/.test(c) ? 1 : /\d/.test(c) ? 2 : 3);
    let changes = 0;
    for (let i = 1; i < text.length; i++) if (cls(text[i]) !== cls(text[i - 1])) changes++;
    return changes / (text.length - 1);
}

/**
 * A value that is one token of 32+ base64 characters (no spaces), with a
 * stretch of 24+ characters between `-`, `_` or `.` separators that mixes
 * upper case, lower case and digits and looks random: over 4 bits of entropy
 * per character, and the character class changing between neighbours more
 * than 38 % of the time (random base64: about 60 %; words such as
 * `ClassifierModelVersion2026November`: about 25 %). Names built of words and
 * dates, such as `ELBSecurityPolicy-TLS13-1-2-2021-06`, are not keys.
 */
function isOpaqueKey(value: string): boolean {
    if (value.length < 32 || !/^[A-Za-z0-9+/=_.-]+$/.test(value)) return false;
    return value
        .split(/[-_.]/)
        .some((part) => part.length >= 24 && /[a-z]/.test(part) && /[A-Z]/.test(part) && /\d/.test(part) && entropy(part) > 4 && classChanges(part) > 0.38);
}

/** Why a NAME=value pair must not be plain text (undefined: it may be). The value is never repeated in the message. */
export function credentialProblem(name: string, value: string): string | undefined {
    if (isCredentialName(name) && value !== "") return "is named like a secret";
    return credentialValueProblem(value);
}
