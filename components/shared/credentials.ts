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
 * - any value at least 32 characters long that is a single unbroken run of
 *   base64/hex characters with upper case, lower case and digits (an opaque
 *   key); digests (`sha256:…`), ARNs, paths and URLs without user info pass.
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
    if (value.length >= 32 && /^[A-Za-z0-9+/=_-]+$/.test(value) && /[a-z]/.test(value) && /[A-Z]/.test(value) && /\d/.test(value)) {
        return "looks like an opaque key (a long unbroken run of mixed-case letters and digits)";
    }
    return undefined;
}

/** Why a NAME=value pair must not be plain text (undefined: it may be). The value is never repeated in the message. */
export function credentialProblem(name: string, value: string): string | undefined {
    if (isCredentialName(name) && value !== "") return "is named like a secret";
    return credentialValueProblem(value);
}
