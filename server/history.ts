/**
 * The recovery history: the recent stored message frames of every topic
 * (`user:<id>` and `channel:<name>`), kept as the encoded text that went out,
 * so a reconnecting socket gets the same bytes again. It is bounded by age
 * (the milliseconds part of each message id against `windowMs`) and by a
 * number of frames per topic (`maxMessages`).
 *
 * A replay is "complete" only when the history can prove that no message
 * after the client's last id is missing. So the bus's coverage must start at
 * or before that id, and no later frame may have left the history, neither
 * for age nor because one of the socket's topics was full.
 */
import {
  compareMessageIds,
  maxMessageId,
  ZERO_MESSAGE_ID,
  type MessageId,
} from "../protocol/message-id.ts";

/** Options of {@link RecoveryHistory}. */
export interface RecoveryHistoryOptions {
  /** Age in milliseconds, by the message id's time, after which a frame is dropped. */
  windowMs: number;
  /** Frames kept per topic. Storing one more drops the oldest. */
  maxMessages: number;
  /** Clock, in milliseconds since the epoch. @defaultValue `Date.now` */
  now?: () => number;
}

/** Result of {@link RecoveryHistory.replay}. */
export interface Replay {
  recovery: "complete" | "gap";
  /**
   * Encoded message frames with an id above the requested one, in id order.
   * Always empty for "gap", because the client reloads instead.
   */
  frames: string[];
}

/** The stored frames of one topic, oldest first, in a ring of `capacity` slots. */
class TopicLog {
  readonly topic: string;
  readonly #ids: MessageId[] = [];
  readonly #texts: string[] = [];
  readonly #capacity: number;
  #start = 0;
  #size = 0;
  /** Highest id dropped from this topic because the topic was full. */
  evictedId: MessageId | undefined;

  constructor(topic: string, capacity: number) {
    this.topic = topic;
    this.#capacity = capacity;
  }

  get size(): number {
    return this.#size;
  }

  /** Returns the id of the frame at `index`, counted from the oldest. */
  idAt(index: number): MessageId {
    return this.#ids[(this.#start + index) % this.#capacity] as MessageId;
  }

  textAt(index: number): string {
    return this.#texts[(this.#start + index) % this.#capacity] as string;
  }

  /** Appends a frame, dropping the oldest when the ring is full. */
  push(id: MessageId, text: string): void {
    if (this.#capacity === 0) {
      this.evictedId = id;
      return;
    }
    if (this.#size === this.#capacity) {
      this.evictedId = this.#ids[this.#start];
      this.#ids[this.#start] = id;
      this.#texts[this.#start] = text;
      this.#start = (this.#start + 1) % this.#capacity;
      return;
    }
    const slot = (this.#start + this.#size) % this.#capacity;
    this.#ids[slot] = id;
    this.#texts[slot] = text;
    this.#size += 1;
  }

  /** Drops the oldest frame. */
  shift(): void {
    // Release the text now, because the slot may not be overwritten for a long time.
    this.#texts[this.#start] = "";
    this.#start = (this.#start + 1) % this.#capacity;
    this.#size -= 1;
  }

  /** Returns the index of the first frame with an id above `last`, or `size` when none. */
  firstAfter(last: MessageId): number {
    let low = 0;
    let high = this.#size;
    while (low < high) {
      const middle = (low + high) >>> 1;
      if (compareMessageIds(this.idAt(middle), last) <= 0) low = middle + 1;
      else high = middle;
    }
    return low;
  }
}

/**
 * Stored frames of every topic, with what a replay needs to tell "complete"
 * from "gap". Frames must arrive in id order, so {@link store} ignores a
 * frame whose id is not above the newest stored one.
 */
export class RecoveryHistory {
  readonly #windowMs: number;
  readonly #maxMessages: number;
  readonly #now: () => number;
  readonly #topics = new Map<string, TopicLog>();
  /**
   * Every stored frame in id order, as parallel queues from #queueStart on,
   * so that dropping frames for age costs only the frames it drops.
   * NOTE: the queues keep the id of every frame within the window, also of
   * frames a full topic dropped, so their size grows with the message rate.
   */
  #queueIds: MessageId[] = [];
  #queueTimes: number[] = [];
  #queueLogs: TopicLog[] = [];
  #queueStart = 0;
  #coverage: MessageId | undefined;
  #newestId: MessageId | undefined;
  /** Highest id dropped because it was older than the window, from any topic. */
  #agePrunedId: MessageId = ZERO_MESSAGE_ID;
  /** Highest id held or covered before the latest reset, ZERO_MESSAGE_ID before any reset. */
  #resetCeiling: MessageId = ZERO_MESSAGE_ID;

  constructor(options: RecoveryHistoryOptions) {
    this.#windowMs = options.windowMs;
    this.#maxMessages = options.maxMessages;
    this.#now = options.now ?? Date.now;
  }

  /** Start of the bus's coverage, or undefined while the bus has sent none. */
  get coverage(): MessageId | undefined {
    return this.#coverage;
  }

  /** Number of frames held, over all topics. */
  get size(): number {
    let size = 0;
    for (const log of this.#topics.values()) size += log.size;
    return size;
  }

  /**
   * Records a coverage event of the bus. A reset drops every frame and every
   * record of dropped frames, because the ids of the new stream may start
   * over lower. Otherwise the coverage only moves up: a lower `from` without
   * a reset does not prove that the frames in between were handed over.
   */
  setCoverage(from: MessageId, reset: boolean): void {
    if (reset) {
      // A client's last id at or below the newest id of the old range may belong to either
      // stream, so the messages after it cannot be proven complete.
      for (const id of [this.#newestId, this.#coverage]) {
        if (id !== undefined) this.#resetCeiling = maxMessageId(this.#resetCeiling, id);
      }
      this.#topics.clear();
      this.#queueIds = [];
      this.#queueTimes = [];
      this.#queueLogs = [];
      this.#queueStart = 0;
      this.#newestId = undefined;
      this.#agePrunedId = ZERO_MESSAGE_ID;
      this.#coverage = from;
      return;
    }
    if (this.#coverage === undefined || compareMessageIds(from, this.#coverage) > 0) {
      this.#coverage = from;
    }
  }

  /** Stores the encoded frame `text` of message `id` for `topic`. Returns false for an old id. */
  store(topic: string, id: MessageId, text: string): boolean {
    if (this.#newestId !== undefined && compareMessageIds(id, this.#newestId) <= 0) return false;
    this.#newestId = id;

    let log = this.#topics.get(topic);
    if (log === undefined) {
      log = new TopicLog(topic, this.#maxMessages);
      this.#topics.set(topic, log);
    }
    log.push(id, text);
    this.#queueIds.push(id);
    this.#queueTimes.push(idTimeMs(id));
    this.#queueLogs.push(log);
    this.prune();
    return true;
  }

  /** Drops every frame older than the window. Runs on each store and replay, and on a timer. */
  prune(): void {
    const oldestKeptMs = this.#now() - this.#windowMs;
    const ids = this.#queueIds;
    const times = this.#queueTimes;
    const logs = this.#queueLogs;
    let start = this.#queueStart;

    while (start < ids.length && (times[start] as number) < oldestKeptMs) {
      const id = ids[start] as MessageId;
      const log = logs[start] as TopicLog;
      this.#agePrunedId = id;
      // The frame may have left its topic already, because the topic was full.
      if (log.size > 0 && log.idAt(0) === id) log.shift();
      if (log.size === 0 && this.#topics.get(log.topic) === log) this.#topics.delete(log.topic);
      start += 1;
    }
    this.#queueStart = start;
    this.#compactQueue();
  }

  /**
   * Returns every stored frame of `topics` with an id above `last`, merged in
   * id order, or "gap" when frames after `last` may be missing.
   */
  replay(topics: readonly string[], last: MessageId): Replay {
    this.prune();
    const coverage = this.#coverage;
    if (coverage === undefined || compareMessageIds(last, coverage) < 0) return gap();
    if (compareMessageIds(last, this.#agePrunedId) < 0) return gap();
    const ceiling = this.#resetCeiling;
    if (ceiling !== ZERO_MESSAGE_ID && compareMessageIds(last, ceiling) <= 0) return gap();

    const logs: TopicLog[] = [];
    const cursors: number[] = [];
    for (const topic of topics) {
      const log = this.#topics.get(topic);
      if (log === undefined) continue;
      if (log.evictedId !== undefined && compareMessageIds(last, log.evictedId) < 0) return gap();
      const cursor = log.firstAfter(last);
      if (cursor === log.size) continue;
      logs.push(log);
      cursors.push(cursor);
    }
    return { recovery: "complete", frames: mergeFrames(logs, cursors) };
  }

  /** Drops the consumed head of the queue once it is at least half of it. */
  #compactQueue(): void {
    const start = this.#queueStart;
    if (start < 1024 || start * 2 < this.#queueIds.length) return;
    this.#queueIds = this.#queueIds.slice(start);
    this.#queueTimes = this.#queueTimes.slice(start);
    this.#queueLogs = this.#queueLogs.slice(start);
    this.#queueStart = 0;
  }
}

/**
 * Returns the milliseconds part of a message id, like messageIdTime, but
 * reads the digits in place instead of allocating a substring. Exact up to
 * 2^53, which covers every clock time in milliseconds.
 */
function idTimeMs(id: MessageId): number {
  let ms = 0;
  for (let i = 0; i < id.length; i += 1) {
    const digit = id.charCodeAt(i) - 48;
    if (digit < 0 || digit > 9) break;
    ms = ms * 10 + digit;
  }
  return ms;
}

function gap(): Replay {
  return { recovery: "gap", frames: [] };
}

/** Merges the frames of `logs` from their cursors on, in id order. Moves the cursors. */
function mergeFrames(logs: TopicLog[], cursors: number[]): string[] {
  const frames: string[] = [];
  if (logs.length === 1) {
    const log = logs[0] as TopicLog;
    for (let i = cursors[0] as number; i < log.size; i += 1) frames.push(log.textAt(i));
    return frames;
  }

  for (;;) {
    let next = -1;
    let nextId: MessageId | undefined;
    for (let i = 0; i < logs.length; i += 1) {
      const log = logs[i] as TopicLog;
      const cursor = cursors[i] as number;
      if (cursor === log.size) continue;
      const id = log.idAt(cursor);
      if (nextId === undefined || compareMessageIds(id, nextId) < 0) {
        next = i;
        nextId = id;
      }
    }
    if (next === -1) return frames;
    frames.push((logs[next] as TopicLog).textAt(cursors[next] as number));
    cursors[next] = (cursors[next] as number) + 1;
  }
}
