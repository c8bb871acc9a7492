/**
 * Reads the benchmark fields out of a frame's bytes without JSON.parse: the
 * publisher's `"t":<us>` and `"n":<seq>`, and patpush's `"id":"<ms>-<seq>"`.
 * Frames of every server carry these keys once, in the message's `data`.
 */

const T_KEY = Buffer.from('"t":');
const N_KEY = Buffer.from('"n":');
const ID_KEY = Buffer.from('"id":"');
const LIVE_KEY = Buffer.from('"live":true');

const DIGIT_0 = 0x30;
const DIGIT_9 = 0x39;
const DASH = 0x2d;

/** Returns the non-negative integer after `key` in `data[start, end)`, or -1 when it is absent. */
function integerAfter(key: Buffer, data: Buffer, start: number, end: number): number {
  const at = data.indexOf(key, start);
  if (at < 0 || at >= end) return -1;
  let position = at + key.length;
  let value = 0;
  let digits = 0;
  while (position < end) {
    const byte = data[position]!;
    if (byte < DIGIT_0 || byte > DIGIT_9) break;
    value = value * 10 + (byte - DIGIT_0);
    position++;
    digits++;
  }
  return digits === 0 ? -1 : value;
}

/** Returns the publisher's timestamp in microseconds, or -1 when the frame has none. */
export function stampUs(data: Buffer, start: number, end: number): number {
  return integerAfter(T_KEY, data, start, end);
}

/** Returns the message's sequence number, or -1 when the frame has none. */
export function sequence(data: Buffer, start: number, end: number): number {
  return integerAfter(N_KEY, data, start, end);
}

/** A patpush message id `<ms>-<seq>` as two integers. */
export interface MessageId {
  ms: number;
  seq: number;
}

/**
 * Writes the frame's stored message id into `into` and returns true. Returns false
 * when the frame has no id or is a live frame, because a live frame does not move the last id.
 */
export function readMessageId(data: Buffer, start: number, end: number, into: MessageId): boolean {
  const at = data.indexOf(ID_KEY, start);
  if (at < 0 || at >= end) return false;
  const live = data.indexOf(LIVE_KEY, start);
  if (live >= 0 && live < end) return false;
  let position = at + ID_KEY.length;
  let ms = 0;
  while (position < end && data[position]! >= DIGIT_0 && data[position]! <= DIGIT_9) {
    ms = ms * 10 + (data[position]! - DIGIT_0);
    position++;
  }
  if (data[position] !== DASH) return false;
  position++;
  let seq = 0;
  while (position < end && data[position]! >= DIGIT_0 && data[position]! <= DIGIT_9) {
    seq = seq * 10 + (data[position]! - DIGIT_0);
    position++;
  }
  into.ms = ms;
  into.seq = seq;
  return true;
}
