/**
 * Schedule expressions (pure): the five-field cron Auto Scaling scheduled
 * actions take (minute hour day-of-month month day-of-week), and EventBridge
 * `rate(...)` / `cron(...)` expressions. Each field is checked against its
 * range; anything else (a shell word, a sixth field) is refused.
 */

interface Field {
    readonly name: string;
    readonly min: number;
    readonly max: number;
    readonly names?: readonly string[];
}

const MONTHS = ["JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"];
const DAYS = ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"];

const UNIX_FIELDS: readonly Field[] = [
    { name: "minute", min: 0, max: 59 },
    { name: "hour", min: 0, max: 23 },
    { name: "day of month", min: 1, max: 31 },
    { name: "month", min: 1, max: 12, names: MONTHS },
    { name: "day of week", min: 0, max: 7, names: DAYS },
];

function value(text: string, field: Field): number | undefined {
    if (/^\d{1,2}$/.test(text)) {
        const n = Number(text);
        return n >= field.min && n <= field.max ? n : undefined;
    }
    const i = field.names?.indexOf(text.toUpperCase()) ?? -1;
    return i >= 0 ? i + (field.names === MONTHS ? 1 : 0) : undefined;
}

function fieldProblem(text: string, field: Field): string | undefined {
    const bad = `${field.name} "${text}" must be *, a value ${field.min}-${field.max}${field.names ? ` or ${field.names[0]}-${field.names[field.names.length - 1]}` : ""}, a range a-b, a step */n or a-b/n, or a list of these`;
    for (const part of text.split(",")) {
        const m = /^(\*|[A-Za-z0-9]+(?:-[A-Za-z0-9]+)?)(?:\/(\d{1,2}))?$/.exec(part);
        if (!m) return bad;
        const [range, step] = [m[1], m[2]];
        if (step !== undefined && (Number(step) < 1 || Number(step) > field.max)) return bad;
        if (range === "*") continue;
        const [a, b] = range.split("-");
        const from = value(a, field);
        const to = b === undefined ? from : value(b, field);
        if (from === undefined || to === undefined || to < from) return bad;
    }
    return undefined;
}

/** Why a five-field cron expression is not valid (undefined: it is). */
export function cronProblem(expression: string): string | undefined {
    const fields = expression.trim().split(/\s+/);
    if (fields.length !== 5) return `must have 5 fields (minute hour day-of-month month day-of-week), found ${fields.length}`;
    for (const [i, f] of fields.entries()) {
        const problem = fieldProblem(f, UNIX_FIELDS[i]);
        if (problem) return problem;
    }
    return undefined;
}

/** Why an EventBridge schedule (`rate(5 minutes)` or `cron(0 20 ? * MON-FRI *)`) is not valid. */
export function scheduleExpressionProblem(expression: string): string | undefined {
    const rate = /^rate\((\d{1,6}) (minute|minutes|hour|hours|day|days)\)$/.exec(expression);
    if (rate) {
        const n = Number(rate[1]);
        if (n < 1) return "a rate must be at least 1";
        if ((n === 1) !== !rate[2].endsWith("s")) return `use "${n} ${n === 1 ? rate[2].replace(/s$/, "") : `${rate[2].replace(/s$/, "")}s`}"`;
        return undefined;
    }
    const cron = /^cron\((.+)\)$/.exec(expression);
    if (!cron) return 'must be rate(<n> minutes|hours|days) or cron(<6 fields>)';
    const fields = cron[1].trim().split(/\s+/);
    if (fields.length !== 6) return `cron() needs 6 fields (minute hour day-of-month month day-of-week year), found ${fields.length}`;
    const [dom, dow] = [fields[2], fields[4]];
    if ((dom === "?") === (dow === "?")) return "exactly one of day-of-month and day-of-week must be ?";
    const unix = [fields[0], fields[1], dom === "?" ? "*" : dom, fields[3], dow === "?" ? "*" : dow.replace(/\b([1-7])\b/g, (d) => String(Number(d) - 1))].join(" ");
    const problem = cronProblem(unix);
    if (problem) return problem;
    if (!/^(\*|\d{4}(-\d{4})?)(,(\d{4}(-\d{4})?))*$/.test(fields[5])) return `year "${fields[5]}" must be * or years such as 2026 or 2026-2030`;
    return undefined;
}
