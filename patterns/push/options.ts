/**
 * Parser for Patternslib-style pattern options, as written in a
 * `data-pat-<name>` attribute: `key: value; key: value`, kebab-case keys,
 * `&&` between option sets, or the shorthand form of values separated by
 * spaces in declaration order. A bad value or an unknown key logs a warning
 * and the default applies, so a wrong attribute never breaks the page.
 */
import { getLogger, type Logger } from "../../client/log.ts";

export type OptionValue = string | number | boolean | null;

export interface OptionSpec {
  /** Kebab-case name as written in markup, such as `push-id`. */
  name: string;
  /** Value when the option is absent or invalid. Its type sets the parse rule unless `type` is given. */
  default: OptionValue;
  /** Value type, needed when the default is null and otherwise taken from the default. */
  type?: "string" | "number" | "boolean";
  /** Allowed values. Any other value is rejected. */
  choices?: readonly string[];
}

/** Parsed options, keyed by camelCase name (`push-id` becomes `pushId`). */
export type ParsedOptions = Record<string, OptionValue>;

/** Options of the pat-push pattern, in shorthand order. */
export const PUSH_OPTIONS: readonly OptionSpec[] = [
  { name: "push-id", default: null, type: "string" },
  { name: "url", default: null, type: "string" },
  { name: "mode", default: "replace", choices: ["replace", "append"] },
  { name: "socket-url", default: null, type: "string" },
  { name: "allowed-origins", default: null, type: "string" },
  { name: "debug", default: false },
];

const NAMED_OPTION = /^\s*([a-zA-Z0-9-]+)\s*:(.*)$/s;
const TRUE_WORDS = new Set(["true", "yes", "y", "on", "1"]);
const FALSE_WORDS = new Set(["false", "no", "n", "off", "0"]);

const defaultLogger = getLogger("pat-push");

/** Converts a kebab-case option name to the camelCase key of the parsed result. */
export function camelCase(name: string): string {
  return name.replace(/-([a-z0-9])/g, (_match, letter: string) => letter.toUpperCase());
}

/**
 * Parses one option set from `text`, the first one when `text` contains
 * `&&`. Never throws, because every problem is logged as a warning instead.
 */
export function parseOptions(
  text: string | null | undefined,
  specs: readonly OptionSpec[] = PUSH_OPTIONS,
  logger: Logger = defaultLogger,
): ParsedOptions {
  const [first] = parseOptionSets(text, specs, logger);
  return first ?? defaults(specs);
}

/** Parses every `&&`-separated option set in `text` and returns at least one set. */
export function parseOptionSets(
  text: string | null | undefined,
  specs: readonly OptionSpec[],
  logger: Logger = defaultLogger,
): ParsedOptions[] {
  if (typeof text !== "string" || text.trim() === "") return [defaults(specs)];

  return text.split("&&").map((part) => parseOptionSet(part, specs, logger));
}

function parseOptionSet(text: string, specs: readonly OptionSpec[], logger: Logger): ParsedOptions {
  const options = defaults(specs);
  const assignments = NAMED_OPTION.test(text)
    ? namedAssignments(text, logger)
    : shorthandAssignments(text, specs, logger);

  for (const [name, raw] of assignments) {
    const spec = specs.find((candidate) => candidate.name === name);
    if (spec === undefined) {
      logger.warn(`unknown option "${name}" ignored`, { value: raw });
      continue;
    }
    const value = convertValue(spec, raw);
    if (value === undefined) {
      logger.warn(`invalid value for option "${name}": ${JSON.stringify(raw)}, using the default`, {
        default: spec.default,
        choices: spec.choices,
      });
      continue;
    }
    options[camelCase(name)] = value;
  }
  return options;
}

function namedAssignments(text: string, logger: Logger): Array<[string, string]> {
  const assignments: Array<[string, string]> = [];
  for (const part of text.split(";")) {
    if (part.trim() === "") continue;

    const match = NAMED_OPTION.exec(part);
    if (match === null) {
      logger.warn(`invalid option syntax ignored: ${JSON.stringify(part.trim())}`);
      continue;
    }
    assignments.push([match[1]!.toLowerCase(), match[2]!.trim()]);
  }
  return assignments;
}

function shorthandAssignments(
  text: string,
  specs: readonly OptionSpec[],
  logger: Logger,
): Array<[string, string]> {
  const values = text.trim().split(/\s+/);
  if (values.length > specs.length) {
    logger.warn(`extra shorthand values ignored: ${values.slice(specs.length).join(" ")}`);
  }
  return values
    .slice(0, specs.length)
    .map((value, index): [string, string] => [specs[index]!.name, value]);
}

/** Returns the converted value, or undefined when `raw` is not valid for `spec`. */
function convertValue(spec: OptionSpec, raw: string): OptionValue | undefined {
  const type = spec.type ?? (spec.default === null ? "string" : typeof spec.default);

  if (type === "boolean") {
    const word = raw.toLowerCase();
    if (TRUE_WORDS.has(word)) return true;
    if (FALSE_WORDS.has(word)) return false;
    return undefined;
  }

  if (type === "number") {
    const number = Number(raw);
    return raw !== "" && Number.isFinite(number) ? number : undefined;
  }

  if (spec.choices !== undefined && !spec.choices.includes(raw)) return undefined;
  return raw;
}

function defaults(specs: readonly OptionSpec[]): ParsedOptions {
  const options: ParsedOptions = {};
  for (const spec of specs) options[camelCase(spec.name)] = spec.default;
  return options;
}
