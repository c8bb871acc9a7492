/**
 * Prometheus metrics of one push server, in a registry of its own, so two
 * servers in one process never share or clash over a metric.
 */
import type { HttpResponse } from "@trufflesuite/uws-js-unofficial";
import { Counter, Gauge, Registry } from "prom-client";
import type { Logger } from "../common/logger.ts";
import type { Recovery } from "../protocol/frames.ts";
import { writeJson } from "./http.ts";

/** Close codes counted under their own label value. Any other code counts as "other". */
const KNOWN_CLOSE_CODES: ReadonlySet<number> = new Set([
  1000, 1001, 1005, 1006, 1008, 1009, 1011, 4000, 4001, 4002, 4003,
]);

/** Labels of `patpush_revalidation_closes_total`. */
export const REVALIDATION_CLOSE_REASONS = ["revoked", "changed", "unavailable"] as const;

export type RevalidationCloseReason = (typeof REVALIDATION_CLOSE_REASONS)[number];

/** Returns the `code` label of a socket close: the code itself when known, else "other". */
export function closeCodeLabel(code: number): string {
  return KNOWN_CLOSE_CODES.has(code) ? String(code) : "other";
}

/** The metrics a push server updates, and the registry that `GET /metrics` renders. */
export class PushMetrics {
  readonly registry = new Registry();
  readonly messagesDelivered: Counter;
  readonly framesReplayed: Counter;
  readonly recoveries: Counter<"outcome">;
  readonly slowConsumerCloses: Counter;
  readonly socketCloses: Counter<"code">;
  readonly upgradesRejected: Counter<"reason">;
  readonly revalidationCloses: Counter<"reason">;
  readonly logoutCloses: Counter;
  readonly inboundFramesRejected: Counter<"reason">;

  /**
   * `openSockets` returns the number of open sockets when the registry is
   * read, and `rejectionReasons` lists the reason labels of rejected upgrades.
   */
  constructor(openSockets: () => number, rejectionReasons: readonly string[] = []) {
    const registers = [this.registry];
    new Gauge({
      name: "patpush_open_sockets",
      help: "Open WebSocket connections.",
      registers,
      collect() {
        this.set(openSockets());
      },
    });
    this.messagesDelivered = new Counter({
      name: "patpush_messages_delivered_total",
      help: "Messages published to the sockets of their user or channel, live ones included.",
      registers,
    });
    this.framesReplayed = new Counter({
      name: "patpush_frames_replayed_total",
      help: "Message frames replayed from the recovery history to resuming sockets.",
      registers,
    });
    this.recoveries = new Counter({
      name: "patpush_recoveries_total",
      help: "Opened sockets by the recovery outcome of their welcome frame.",
      labelNames: ["outcome"],
      registers,
    });
    this.slowConsumerCloses = new Counter({
      name: "patpush_slow_consumer_closes_total",
      help: "Sockets closed with 4003 because their send buffer passed maxBackpressureBytes.",
      registers,
    });
    this.socketCloses = new Counter({
      name: "patpush_socket_closes_total",
      help: "Closed sockets by close code.",
      labelNames: ["code"],
      registers,
    });
    this.upgradesRejected = new Counter({
      name: "patpush_upgrades_rejected_total",
      help: "Socket upgrades rejected with an HTTP status, by reason.",
      labelNames: ["reason"],
      registers,
    });
    this.revalidationCloses = new Counter({
      name: "patpush_revalidation_closes_total",
      help:
        "Sockets closed because revalidation at the auth URL failed: revoked (4001), " +
        "changed identity (4001 or 4000) or portal unavailable (4000).",
      labelNames: ["reason"],
      registers,
    });
    this.logoutCloses = new Counter({
      name: "patpush_logout_closes_total",
      help: "Sockets closed with 4001 by a logout message of their user.",
      registers,
    });
    this.inboundFramesRejected = new Counter({
      name: "patpush_inbound_frames_rejected_total",
      help: "Sockets closed for an inbound frame: binary (4002) or over maxPayloadBytes (1006).",
      labelNames: ["reason"],
      registers,
    });

    // Start every labelled series at 0, so a rate over it exists before the first event.
    for (const outcome of ["none", "complete", "gap"] satisfies Recovery[]) {
      this.recoveries.inc({ outcome }, 0);
    }
    for (const reason of rejectionReasons) this.upgradesRejected.inc({ reason }, 0);
    for (const reason of REVALIDATION_CLOSE_REASONS) this.revalidationCloses.inc({ reason }, 0);
    for (const reason of ["binary", "too_large"]) this.inboundFramesRejected.inc({ reason }, 0);
  }

  /** Renders every metric in the Prometheus text format. */
  render(): Promise<string> {
    return this.registry.metrics();
  }

  get contentType(): string {
    return this.registry.contentType;
  }
}

/** Handles `GET /metrics`: every metric of `metrics` in the Prometheus text format. */
export function writeMetrics(res: HttpResponse, metrics: PushMetrics, logger: Logger): void {
  let aborted = false;
  res.onAborted(() => {
    aborted = true;
  });
  metrics.render().then(
    (text) => {
      if (aborted) return;
      res.cork(() => {
        res.writeStatus("200 OK");
        res.writeHeader("Content-Type", metrics.contentType);
        res.writeHeader("Cache-Control", "no-store");
        res.end(text);
      });
    },
    (error: unknown) => {
      logger.error({ err: error }, "metrics failed");
      if (!aborted) res.cork(() => writeJson(res, 500, { error: "internal error" }));
    },
  );
}
