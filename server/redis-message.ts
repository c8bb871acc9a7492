import type { DoneMessage } from "../protocol/message.ts";
import { validateMessage } from "./bus.ts";
import { MessageError } from "./errors.ts";
import { MESSAGE_FIELD } from "./publish.ts";

/** Outcome of parsing one done message that arrived through Redis. */
export type ParsedMessage = { message: DoneMessage } | { problems: string[] };

/** Parses and validates the JSON text of a done message without throwing. */
export function parseMessageText(text: string | undefined): ParsedMessage {
  if (text === undefined) return { problems: [`${MESSAGE_FIELD}: missing field`] };

  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (error) {
    return { problems: [`(root): invalid JSON: ${(error as Error).message}`] };
  }

  try {
    return { message: validateMessage(value) };
  } catch (error) {
    if (error instanceof MessageError) return { problems: error.problems };
    throw error;
  }
}

/** Returns the value of `name` in a flat `[field, value, field, value, ...]` list. */
export function fieldValue(fields: string[], name: string): string | undefined {
  for (let i = 0; i + 1 < fields.length; i += 2) {
    if (fields[i] === name) return fields[i + 1];
  }
  return undefined;
}
