/**
 * Socket frames: JSON text frames sent by the push server. Every frame has a
 * numeric `id` that increases for the life of the server, so a client can
 * tell the order and spot duplicates.
 */

/** First frame on every socket, sent right after the upgrade. */
export interface WelcomeFrame {
  type: "welcome";
  /** Id of the last message the server delivered before this socket opened. */
  id: number;
  /** Authenticated user id. */
  user: string;
  /** Channels this socket receives besides the user's own messages. */
  channels: string[];
  /** Connection id, as it appears in the server's logs. */
  conn: string;
}

/** A done message, delivered to one socket; the recipient fields are stripped. */
export interface MessageFrame {
  type: "message";
  id: number;
  /** Present when the message was published to a channel. */
  channel?: string;
  html?: string;
  event?: string;
  data?: unknown;
  pushId?: string;
}

export type ServerFrame = WelcomeFrame | MessageFrame;

/** Parses a server frame; returns undefined for anything that is not one. */
export function parseServerFrame(text: string): ServerFrame | undefined {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    return undefined;
  }

  if (typeof value !== "object" || value === null) return undefined;
  const frame = value as { type?: unknown; id?: unknown };
  if (typeof frame.id !== "number" || !Number.isSafeInteger(frame.id)) return undefined;
  if (frame.type !== "welcome" && frame.type !== "message") return undefined;
  return value as ServerFrame;
}
