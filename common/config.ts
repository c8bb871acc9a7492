import type { z } from "zod";
import { PatpushError } from "../protocol/errors.ts";

/** Thrown when configuration fails its schema; lists every problem at once. */
export class ConfigError extends PatpushError {
  readonly problems: string[];

  constructor(part: string, problems: string[]) {
    super("PATPUSH_CONFIG_INVALID", `invalid ${part} configuration:\n  ${problems.join("\n  ")}`);
    this.name = "ConfigError";
    this.problems = problems;
  }
}

/** Option names whose values are never printed, at any depth. */
const SECRET_KEYS = new Set([
  "secret",
  "key",
  "apiKey",
  "token",
  "password",
  "encryptionKey",
  "signingSecret",
  // A Redis URL may carry a password.
  "redisUrl",
]);

function valueAt(input: unknown, path: readonly PropertyKey[]): unknown {
  let value = input;
  for (const step of path) {
    if (typeof value !== "object" || value === null) return undefined;
    value = (value as Record<PropertyKey, unknown>)[step];
  }
  return value;
}

function describeValue(path: readonly PropertyKey[], value: unknown): string {
  if (path.some((step) => typeof step === "string" && SECRET_KEYS.has(step))) return "[redacted]";
  if (value === undefined) return "missing";
  const text = JSON.stringify(value) ?? String(value);
  // A URL with a user name or password carries a credential wherever it appears.
  if (/[a-z][a-z0-9+.-]*:\/\/[^/?#"\s]*@/i.test(text)) return "[redacted: contains a URL with credentials]";
  return text.length > 80 ? `${text.slice(0, 77)}...` : text;
}

/**
 * Parses `input` with `schema` and returns the typed result, or throws one
 * ConfigError whose lines read `path: rule (got value)`. `renamed` maps old
 * option names to their successors so a stale name is rejected by name.
 */
export function parseConfig<S extends z.ZodType>(
  part: string,
  schema: S,
  input: unknown,
  renamed: Record<string, string> = {},
): z.infer<S> {
  const problems: string[] = [];
  if (typeof input === "object" && input !== null) {
    for (const [oldName, newName] of Object.entries(renamed)) {
      if (oldName in input) problems.push(`${oldName}: renamed to ${newName}`);
    }
  }

  const result = schema.safeParse(input);
  if (!result.success) {
    for (const issue of result.error.issues) {
      const path = issue.path.length > 0 ? issue.path.join(".") : "(root)";
      problems.push(`${path}: ${issue.message} (got ${describeValue(issue.path, valueAt(input, issue.path))})`);
    }
  }

  if (problems.length > 0 || !result.success) throw new ConfigError(part, problems);
  return result.data;
}
