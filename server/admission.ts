/**
 * Admission of sockets and auth requests: the per-address limits, the Origin
 * check, the `last` id of a resuming socket, the portal session, the
 * per-user limit, and the `<path>/auth` route that runs the same checks
 * without an upgrade.
 */
import type { HttpRequest, HttpResponse } from "@trufflesuite/uws-js-unofficial";
import type { Logger } from "../common/logger.ts";
import type { MessageId } from "../protocol/message-id.ts";
import type { AuthIdentity, PortalAuth } from "./auth.ts";
import type { Delivery } from "./delivery.ts";
import { ClientAddressResolver } from "./client-address.ts";
import { AuthError, ServerErrorCode } from "./errors.ts";
import { clipForLog, corsHeaders, preflightHeaders, writeEmpty, writeJson } from "./http.ts";
import type { PushMetrics } from "./metrics.ts";
import { SlotCounter, TokenBucketLimiter } from "./rate-limit.ts";
import { PER_IP_REASON, PER_USER_REASON, RejectionLog, writeRejection } from "./rejection.ts";
import { parseLastId } from "./resume.ts";

/** Options of {@link Admission}. */
export interface AdmissionOptions {
  allowedOrigins: readonly string[];
  /** Accepts a request without an Origin header. */
  allowMissingOrigin: boolean;
  /** Maximum open sockets of one user, or 0 for no limit. */
  maxSocketsPerUser: number;
  /** Maximum open and opening sockets of one remote address, or 0 for no limit. */
  maxSocketsPerIp: number;
  /** Upgrades and auth requests per second and remote address, or 0 for no limit. */
  upgradesPerIpPerSecond: number;
  /** Proxies whose `X-Forwarded-For` names the client address. */
  trustedProxies: readonly string[];
  auth: PortalAuth;
  delivery: Delivery;
  metrics: PushMetrics;
  /** Returns the number of open sockets of `user`. */
  socketsOfUser: (user: string) => number;
  /** Time an upgrade waits for the bus coverage and its `last` id, in milliseconds. */
  resumeWaitMs: number;
  /** Returns true once the push server is shutting down. */
  isClosing: () => boolean;
  logger: Logger;
  /** Clock in milliseconds since the epoch, replaceable in tests. @defaultValue `Date.now` */
  now?: () => number;
}

/**
 * An upgrade that passed every check so far. It takes one socket slot of its
 * remote address, which passes to the opened socket after
 * {@link Admission.complete}, or returns with {@link Admission.abandon}.
 */
export interface Admitted {
  identity: AuthIdentity;
  last: MessageId | undefined;
  /** The allowed cookies of the upgrade, which revalidation sends again. */
  sessionCookies: string;
  ip: string;
}

/** An upgrade in progress, which a logout of its user rejects. */
interface PendingUpgrade {
  user: string | undefined;
  /** Users logged out while the user of this upgrade was not known yet. */
  loggedOut: Set<string>;
  revoked: boolean;
}

/** Checks that decide whether a socket may open, and the auth route. */
export class Admission {
  readonly #allowedOrigins: ReadonlySet<string>;
  readonly #options: AdmissionOptions;
  readonly #upgradeRate: TokenBucketLimiter;
  readonly #socketsByIp = new SlotCounter();
  readonly #pending = new Map<Admitted | PendingUpgrade, PendingUpgrade>();
  readonly #rejections: RejectionLog;
  readonly #addresses: ClientAddressResolver;

  constructor(options: AdmissionOptions) {
    this.#allowedOrigins = new Set(options.allowedOrigins);
    this.#options = options;
    const clock = options.now === undefined ? {} : { now: options.now };
    this.#upgradeRate = new TokenBucketLimiter(options.upgradesPerIpPerSecond, clock);
    this.#rejections = new RejectionLog(options.logger, options.metrics, options.now);
    this.#addresses = new ClientAddressResolver(options.trustedProxies);
  }

  /**
   * Checks the upgrade rate and the socket count of `ip`, the Origin, the
   * `last` id and the session, in that order, so that a rejected address
   * costs the portal nothing. Then waits up to resumeWaitMs until the bus
   * has sent its coverage and reached `last`, so that the welcome id is
   * known and the replay can be complete. Rejects with an AuthError.
   */
  async admitSocket(
    ip: string,
    origin: string,
    cookieHeader: string,
    query: string | undefined,
  ): Promise<Admitted> {
    this.#checkRate(ip);
    if (!this.#socketsByIp.acquire(ip, this.#options.maxSocketsPerIp)) {
      const max = this.#options.maxSocketsPerIp;
      throw tooManySockets(
        PER_IP_REASON,
        `address ${ip} has ${max} sockets open or opening; raise maxSocketsPerIp if expected`,
      );
    }

    const pending: PendingUpgrade = { user: undefined, loggedOut: new Set(), revoked: false };
    this.#pending.set(pending, pending);
    try {
      this.#checkOrigin(origin);
      const last = parseLastId(query);
      const { auth, delivery, resumeWaitMs } = this.#options;
      const identity = await auth.authenticate(cookieHeader);
      pending.user = identity.user;
      pending.revoked = pending.loggedOut.has(identity.user);
      await delivery.waitUntilReady(last, resumeWaitMs);
      this.#checkNotClosing();
      this.#checkBusStarted();

      const admitted: Admitted = {
        identity,
        last,
        sessionCookies: auth.sessionCookies(cookieHeader),
        ip,
      };
      // The same record goes on under the admitted key, until complete() or abandon().
      this.#pending.set(admitted, pending);
      return admitted;
    } catch (error) {
      this.#socketsByIp.release(ip);
      throw error;
    } finally {
      this.#pending.delete(pending);
    }
  }

  /**
   * Runs the last checks of an admitted upgrade right before it opens: no
   * logout of its user since its check, no shutdown, and room under
   * maxSocketsPerUser. Call it synchronously before `res.upgrade`, so that
   * no other socket can open in between. On success, the socket keeps the
   * address slot until {@link releaseSocket}. Throws an AuthError and gives
   * the slot back otherwise.
   */
  complete(admitted: Admitted): void {
    const pending = this.#pending.get(admitted);
    this.#pending.delete(admitted);
    try {
      const { user } = admitted.identity;
      if (pending?.revoked) {
        throw new AuthError(
          ServerErrorCode.AUTH_REJECTED,
          401,
          "session logged out",
          `user ${user} logged out while the socket was being admitted`,
        );
      }
      this.#checkNotClosing();
      const max = this.#options.maxSocketsPerUser;
      if (max !== 0 && this.#options.socketsOfUser(user) >= max) {
        throw tooManySockets(
          PER_USER_REASON,
          `user ${user} has ${max} sockets open; raise maxSocketsPerUser if expected`,
        );
      }
    } catch (error) {
      this.#socketsByIp.release(admitted.ip);
      throw error;
    }
  }

  /** Gives back the address slot of an admitted upgrade whose client went away. */
  abandon(admitted: Admitted): void {
    this.#pending.delete(admitted);
    this.#socketsByIp.release(admitted.ip);
  }

  /** Gives back the address slot of a closed socket. */
  releaseSocket(ip: string): void {
    this.#socketsByIp.release(ip);
  }

  /** Rejects every upgrade of `user` still in progress, because its session check is stale. */
  revoke(user: string): void {
    for (const pending of new Set(this.#pending.values())) {
      if (pending.user === user) pending.revoked = true;
      else if (pending.user === undefined) pending.loggedOut.add(user);
    }
  }

  /** Drops the rate-limit and log-throttle entries that no longer matter. */
  prune(): void {
    this.#upgradeRate.prune();
    this.#rejections.prune();
  }

  /** Handles `GET <path>/auth`: the socket checks without `last` and without an upgrade. */
  onAuthRequest(res: HttpResponse, req: HttpRequest): void {
    let aborted = false;
    res.onAborted(() => {
      aborted = true;
    });
    const ip = this.clientAddress(res, req);
    const origin = req.getHeader("origin");
    const cookieHeader = req.getHeader("cookie");
    const cors = this.#allowedOrigins.has(origin) ? corsHeaders(origin) : [];

    this.#authorize(ip, origin, cookieHeader).then(
      (identity) => {
        if (aborted) return;
        const body = { user: identity.user, channels: identity.channels };
        res.cork(() => writeJson(res, 200, body, cors));
      },
      (error: unknown) => {
        if (aborted) return;
        const rejection = this.logRejection(error, ip, origin, "auth");
        res.cork(() => writeRejection(res, rejection, cors));
      },
    );
  }

  onAuthPreflight(res: HttpResponse, req: HttpRequest): void {
    const origin = req.getHeader("origin");
    if (this.#allowedOrigins.has(origin)) {
      writeEmpty(res, 204, preflightHeaders(origin));
      return;
    }
    writeJson(res, 403, { error: "origin not allowed", code: ServerErrorCode.ORIGIN_REJECTED });
  }

  /**
   * Returns the client address of a request: the TCP peer, or the address a
   * trusted proxy put in `X-Forwarded-For`. Call it while `req` is valid.
   */
  clientAddress(res: HttpResponse, req: HttpRequest): string {
    const peer = Buffer.from(res.getRemoteAddressAsText()).toString("latin1");
    return this.#addresses.resolve(peer, req.getHeader("x-forwarded-for"));
  }

  /** Logs and counts a rejected request, and returns the AuthError for the client. */
  logRejection(error: unknown, ip: string, origin: string, route: string): AuthError {
    return this.#rejections.log(error, ip, origin, route);
  }

  #checkRate(ip: string): void {
    const result = this.#upgradeRate.take(ip);
    if (result.allowed) return;
    throw new AuthError(
      ServerErrorCode.RATE_LIMITED,
      429,
      "too many requests",
      `address ${ip} started more than ${this.#options.upgradesPerIpPerSecond} upgrades or ` +
        "auth requests per second (upgradesPerIpPerSecond)",
      { retryAfterS: result.retryAfterS },
    );
  }

  /** Throws an AuthError (403) when `origin` is not allowed, or missing unless that is allowed. */
  #checkOrigin(origin: string): void {
    if (this.#allowedOrigins.has(origin)) return;
    if (origin === "" && this.#options.allowMissingOrigin) return;
    const originText = origin === "" ? "missing" : `"${clipForLog(origin)}"`;
    throw new AuthError(
      ServerErrorCode.ORIGIN_REJECTED,
      403,
      origin === "" ? "origin missing" : "origin not allowed",
      origin === ""
        ? "Origin header is missing; send one, or set allowMissingOrigin for non-browser clients"
        : `Origin ${originText} is not in allowedOrigins`,
    );
  }

  /**
   * Rejects while the bus has not sent its coverage, for example while Redis
   * was unreachable since start. A socket opened then would miss the
   * messages that the bus hands over as its backfill.
   */
  #checkBusStarted(): void {
    if (this.#options.delivery.covered) return;
    throw new AuthError(
      ServerErrorCode.NOT_READY,
      503,
      "server not ready",
      "socket rejected, because the message bus has not started; the client retries",
    );
  }

  #checkNotClosing(): void {
    if (!this.#options.isClosing()) return;
    throw new AuthError(
      ServerErrorCode.SERVER_CLOSING,
      503,
      "server shutting down",
      "socket rejected, because the push server is shutting down",
    );
  }

  /** Checks the rate, the Origin and then the session cookie. Rejects with an AuthError. */
  async #authorize(ip: string, origin: string, cookieHeader: string): Promise<AuthIdentity> {
    this.#checkRate(ip);
    this.#checkOrigin(origin);
    return this.#options.auth.authenticate(cookieHeader);
  }
}

function tooManySockets(reason: string, message: string): AuthError {
  return new AuthError(ServerErrorCode.TOO_MANY_SOCKETS, 429, reason, message);
}
