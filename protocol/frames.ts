/**
 * Socket frames: JSON text frames sent by the push server. Every message
 * frame has the message id of its done message (see message-id.ts), so a
 * client can tell the order, drop duplicates and resume after a reconnect.
 */
import { isMessageId, type MessageId } from "./message-id.ts";

/**
 * Recovery outcome that a welcome frame reports:
 * - `"none"`: the client sent no last id, so nothing was replayed.
 * - `"complete"`: every message after the client's last id follows this frame, in order.
 * - `"gap"`: messages after the client's last id may be missing, because they
 *   are older than the recovery window or the server never held them. The
 *   page must reload what it shows from the portal.
 */
export type Recovery = "none" | "complete" | "gap";

/** First frame on every socket, sent right after the upgrade. */
export interface WelcomeFrame {
  type: "welcome";
  /**
   * Id after which this socket's message frames start: the client's last id
   * when `recovery` is "complete", otherwise the id of the newest message
   * the server holds.
   */
  id: MessageId;
  recovery: Recovery;
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
  /**
   * Message id. For a live frame, the id of the newest stored message before
   * it, so live frames may repeat an id.
   */
  id: MessageId;
  /**
   * True for a message that was never stored (Redis PUBLISH): it is sent
   * once, never replayed, and does not move the client's last id.
   */
  live?: true;
  /** Present when the message was published to a channel. */
  channel?: string;
  html?: string;
  event?: string;
  data?: unknown;
  pushId?: string;
}

export type ServerFrame = WelcomeFrame | MessageFrame;

const RECOVERY_VALUES: ReadonlySet<unknown> = new Set(["none", "complete", "gap"]);

/** Parses a server frame; returns undefined for anything that is not one. */
export function parseServerFrame(text: string): ServerFrame | undefined {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    return undefined;
  }

  if (typeof value !== "object" || value === null) return undefined;
  const frame = value as { type?: unknown; id?: unknown; recovery?: unknown; live?: unknown };
  if (!isMessageId(frame.id)) return undefined;
  if (frame.type === "welcome") {
    return RECOVERY_VALUES.has(frame.recovery) ? (value as WelcomeFrame) : undefined;
  }
  if (frame.type !== "message") return undefined;
  if (frame.live !== undefined && frame.live !== true) return undefined;
  return value as MessageFrame;
}
