/**
 * Revalidation of open sockets: every `revalidateIntervalMs`, give or take a
 * quarter, each socket's session goes to the auth URL again, past the cache.
 * A rejected session closes the socket with 4001, and a portal failure with
 * 4000, so that the client reconnects and authenticates again.
 */
import type { WebSocket } from "@trufflesuite/uws-js-unofficial";
import type { Logger } from "../common/logger.ts";
import { CloseCode } from "../protocol/close-codes.ts";
import type { AuthIdentity, PortalAuth } from "./auth.ts";
import { AuthError } from "./errors.ts";
import { LogThrottle } from "./log-throttle.ts";
import type { PushMetrics, RevalidationCloseReason } from "./metrics.ts";
import { connectionFields } from "./socket-registry.ts";

/** Socket user data that revalidation reads and writes. */
export interface RevalidatedConnection extends AuthIdentity {
  /** Id of the connection in the logs. */
  conn: string;
  /** The allowed cookies of the upgrade, as a `Cookie` header value. */
  sessionCookies: string;
  /** True once the socket has closed, after which it must not be touched. */
  closed: boolean;
  /** Second of the next check, the key of its slot in the schedule. */
  revalidateAtS: number | undefined;
}

/** Options of {@link Revalidation}. */
export interface RevalidationOptions {
  /** Mean time between two checks of one socket, in milliseconds; 0 disables revalidation. */
  intervalMs: number;
  auth: PortalAuth;
  metrics: PushMetrics;
  logger: Logger;
  /** Clock in milliseconds since the epoch. @defaultValue `Date.now` */
  now?: () => number;
  /** Random number in [0, 1) that spreads the checks. @defaultValue `Math.random` */
  random?: () => number;
}

/**
 * The schedule of socket checks, in slots of one second, so that a tick
 * touches only the sockets that are due.
 */
export class Revalidation<T extends RevalidatedConnection> {
  readonly #options: RevalidationOptions;
  readonly #now: () => number;
  readonly #random: () => number;
  readonly #slots = new Map<number, Set<WebSocket<T>>>();
  /** One warning per close reason every 10 seconds, because a portal outage closes many. */
  readonly #logThrottle: LogThrottle;

  constructor(options: RevalidationOptions) {
    this.#options = options;
    this.#now = options.now ?? Date.now;
    this.#random = options.random ?? Math.random;
    this.#logThrottle = new LogThrottle(10_000, { now: this.#now });
  }

  /** Number of sockets waiting for a check. */
  get size(): number {
    let size = 0;
    for (const slot of this.#slots.values()) size += slot.size;
    return size;
  }

  /** Plans the next check of `ws` at 0.75 to 1.25 times the interval from now. */
  schedule(ws: WebSocket<T>): void {
    const { intervalMs } = this.#options;
    if (intervalMs === 0) return;

    const delayMs = intervalMs * (0.75 + 0.5 * this.#random());
    const atS = Math.ceil((this.#now() + delayMs) / 1000);
    let slot = this.#slots.get(atS);
    if (slot === undefined) {
      slot = new Set();
      this.#slots.set(atS, slot);
    }
    slot.add(ws);
    ws.getUserData().revalidateAtS = atS;
  }

  /** Removes `ws` from the schedule. Call it from the close handler. */
  unschedule(ws: WebSocket<T>): void {
    const connection = ws.getUserData();
    const atS = connection.revalidateAtS;
    if (atS === undefined) return;
    connection.revalidateAtS = undefined;
    const slot = this.#slots.get(atS);
    slot?.delete(ws);
    if (slot?.size === 0) this.#slots.delete(atS);
  }

  /** Starts the check of every socket that is due. Call it about once a second. */
  tick(): void {
    this.#logThrottle.prune();
    const nowS = this.#now() / 1000;
    for (const [atS, slot] of this.#slots) {
      if (atS > nowS) continue;
      this.#slots.delete(atS);
      for (const ws of slot) {
        ws.getUserData().revalidateAtS = undefined;
        this.#check(ws);
      }
    }
  }

  /** Asks the portal about the session of `ws`, then closes it or plans its next check. */
  #check(ws: WebSocket<T>): void {
    const connection = ws.getUserData();
    this.#options.auth.revalidate(connection.sessionCookies).then(
      (identity) => {
        if (connection.closed) return;
        if (identity.user !== connection.user) {
          this.#close(ws, "changed", CloseCode.AUTH_REVOKED, "session changed user");
        } else if (!sameChannels(identity.channels, connection.channels)) {
          // The client reconnects and its new socket gets the channels the portal grants now.
          this.#close(ws, "changed", CloseCode.RESTART, "session channels changed");
        } else {
          this.#options.logger.debug(connectionFields(connection), "session revalidated");
          this.schedule(ws);
        }
      },
      (error: unknown) => {
        if (connection.closed) return;
        const status = error instanceof AuthError ? error.status : undefined;
        if (status === 401 || status === 403) {
          this.#close(ws, "revoked", CloseCode.AUTH_REVOKED, "session revoked", error);
        } else {
          this.#close(ws, "unavailable", CloseCode.RESTART, "revalidation failed", error);
        }
      },
    );
  }

  #close(
    ws: WebSocket<T>,
    reason: RevalidationCloseReason,
    code: number,
    text: string,
    error?: unknown,
  ): void {
    this.#options.metrics.revalidationCloses.inc({ reason });
    const { logger } = this.#options;
    // The error message names the auth URL and status, never a cookie.
    const fields = {
      ...connectionFields(ws.getUserData()),
      code,
      reason,
      ...(error === undefined ? {} : { err: error }),
    };
    const skipped = this.#logThrottle.admit(reason);
    if (skipped === undefined) logger.debug(fields, "socket closed by revalidation");
    else logger.warn({ ...fields, skipped }, "socket closed by revalidation");
    ws.end(code, text);
  }
}

function sameChannels(a: readonly string[], b: readonly string[]): boolean {
  const granted = new Set(a);
  const current = new Set(b);
  if (granted.size !== current.size) return false;
  for (const channel of granted) {
    if (!current.has(channel)) return false;
  }
  return true;
}
