/** IPC messages between the load generator coordinator (loadgen.ts) and its workers. */
import type { PeerProtocol } from "./peers.ts";

/** The sockets one worker opens, and how. */
export interface OpenSpec {
  host: string;
  port: number;
  /** Request target of the upgrade: path and query. */
  path: string;
  protocol: PeerProtocol;
  origin: string;
  /** Global index of the first socket; socket i sends `__ac=u<s>-s<s>` with s = floor(i / socketsPerSession). */
  first: number;
  count: number;
  /** @defaultValue 1 */
  socketsPerSession?: number;
  /** A socket counts as open at its first frame (patpush's welcome) instead of at 101. */
  awaitWelcome: boolean;
  /** Remember each socket's last message id and resume with `?last=` (patpush). */
  resume: boolean;
  /** Count a message that a socket received twice (by `n`) as a duplicate instead of a delivery. */
  dedupe: boolean;
  /** Upgrades in flight at once in this worker. */
  concurrency: number;
  /** An attempt that is not open after this many ms fails with "timeout". */
  openTimeoutMs: number;
}

/** Counters and histograms of one worker since its last reset. */
export interface WorkerStats {
  /** Sockets open now. */
  open: number;
  /** Sockets with an attempt queued or in flight. */
  pending: number;
  /** Successful opens, first and reconnects. */
  opens: number;
  /** Failed attempts by reason: HTTP status, "timeout", an error code. */
  failed: Record<string, number>;
  /** Open sockets that the server or the network ended, by reason. */
  closed: Record<string, number>;
  delivered: number;
  duplicates: number;
  /** Messages with `n` below the reset's `minN`, from an earlier step. */
  late: number;
  /** Encoded LatencyHistogram of publish -> receive. */
  latency: string;
  /** Messages received on a resumed socket that were published while it was down. */
  replayed: number;
  /** Encoded LatencyHistogram of those messages' publish -> receive. */
  replayLatency: string;
  /** Per user index: messages delivered, when the reset requested it. */
  perUser?: Record<number, number>;
}

export type WorkerRequest =
  /** Opens the sockets; a failed attempt retries until `deadlineMs` after the start. */
  | { op: "open"; spec: OpenSpec; deadlineMs: number }
  | { op: "dropAll"; jitterMs: number; concurrency: number; deadlineMs: number }
  | { op: "forceClose"; fraction: number; reconnectDelayMs: number }
  | { op: "resetStats"; minN: number; perUser: boolean }
  | { op: "stats" }
  | { op: "closeAll" };

/** Result of "open" and "dropAll": how long until every socket was open, and how many are. */
export interface OpenResult {
  durationMs: number;
  open: number;
  /** Sockets still not open at the deadline. */
  missing: number;
  failed: Record<string, number>;
}

export type WorkerReply =
  | { id: number; ok: true; result: unknown }
  | { id: number; ok: false; error: string };
