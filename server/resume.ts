/**
 * Resuming a socket: the `last` query parameter of the upgrade, and the
 * recovery outcome, welcome id and replayed frames of the opened socket.
 */
import type { WebSocket } from "@trufflesuite/uws-js-unofficial";
import type { Recovery } from "../protocol/frames.ts";
import {
  compareMessageIds,
  isMessageId,
  ZERO_MESSAGE_ID,
  type MessageId,
} from "../protocol/message-id.ts";
import { AuthError, ServerErrorCode } from "./errors.ts";
import type { RecoveryHistory } from "./history.ts";
import type { RegisteredConnection, SocketRegistry } from "./socket-registry.ts";

/** The start of an opening socket: the welcome's `recovery` and `id`, then `frames`. */
export interface Resumption {
  recovery: Recovery;
  id: MessageId;
  /** Encoded message frames to send right after the welcome, in id order. */
  frames: string[];
}

/**
 * Parses the `last` parameter of an upgrade's query string: undefined when
 * absent, else a message id. Throws AuthError (400, PATPUSH_LAST_ID_INVALID)
 * for anything else, including an empty value, `last` without `=`, and a
 * repeated `last`.
 */
export function parseLastId(query: string | undefined): MessageId | undefined {
  const values = new URLSearchParams(query ?? "").getAll("last");
  if (values.length === 0) return undefined;
  if (values.length > 1) {
    throw invalidLastId(`last appears ${values.length} times; send it once`);
  }
  const value: string = values[0] ?? "";
  const quotedValue = JSON.stringify(value.slice(0, 64));
  if (isMessageId(value)) return value;
  throw invalidLastId(`last id ${quotedValue} is not a message id (<ms>-<seq>)`);
}

function invalidLastId(detail: string): AuthError {
  return new AuthError(ServerErrorCode.LAST_ID_INVALID, 400, "invalid last id", detail);
}

/**
 * Decides how a socket with the topics `topics` resumes after `last`:
 * - no last id: "none", from the server's position;
 * - a last id above the position, or no coverage yet: "gap", from the position;
 * - otherwise the history's replay: "complete" with the frames after `last`,
 *   or "gap" from the position.
 */
export function resumeSocket(
  history: RecoveryHistory,
  position: MessageId | undefined,
  topics: readonly string[],
  last: MessageId | undefined,
): Resumption {
  const newest = position ?? ZERO_MESSAGE_ID;
  if (last === undefined) return { recovery: "none", id: newest, frames: [] };
  if (position === undefined || compareMessageIds(last, position) > 0) {
    return { recovery: "gap", id: newest, frames: [] };
  }

  const replay = history.replay(topics, last);
  if (replay.recovery === "gap") return { recovery: "gap", id: newest, frames: [] };
  return { recovery: "complete", id: last, frames: replay.frames };
}

/**
 * Sends the replayed frames to `ws` and returns how many it sent. A replay
 * larger than maxBackpressureBytes stops there with SLOW_CONSUMER, so the
 * client reads what was sent and its next socket resumes after it.
 */
export function sendReplay<T extends RegisteredConnection>(
  ws: WebSocket<T>,
  frames: readonly string[],
  sockets: SocketRegistry<T>,
): number {
  let sent = 0;
  for (const frame of frames) {
    if (sockets.endIfSlow(ws)) break;
    ws.send(frame, false, false);
    sent += 1;
  }
  return sent;
}
