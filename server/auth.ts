import { Agent, request } from "undici";
import { z } from "zod";
import { formatCookieHeader, hashCookies, pickCookies, type CookieJar } from "../common/cookies.ts";
import { AuthError, ServerErrorCode } from "./errors.ts";

/** Identity of a valid session, as the portal's auth URL returns it. */
export interface AuthIdentity {
  /** User id. The socket receives the messages addressed to it. */
  user: string;
  /** Channels the socket receives besides the user's own messages. */
  channels: string[];
}

/** Options of {@link PortalAuth}, named as in the server configuration. */
export interface PortalAuthOptions {
  authUrl: string;
  cookieNames: readonly string[];
  authTimeoutMs: number;
  /** Maximum number of connections to the auth URL's origin at once; further requests wait. @defaultValue 32 */
  authConnections?: number;
  authCacheTtlMs: number;
  authRejectCacheTtlMs: number;
  /** Maximum number of cached sessions, past which the oldest goes. @defaultValue 10000 */
  maxCacheEntries?: number;
  /** Maximum length of the forwarded `Cookie` header, in characters. @defaultValue 4096 */
  maxCookieBytes?: number;
  /** Clock in milliseconds since the epoch, replaceable in tests. @defaultValue `Date.now` */
  now?: () => number;
}

/**
 * Body of a 200 from the auth URL. Each channel becomes one topic
 * subscription per socket, so the list is bounded.
 */
/** Default of {@link PortalAuthOptions.maxCookieBytes}: RFC 6265 requires browsers to support cookies of at least 4096 bytes. */
const DEFAULT_MAX_COOKIE_BYTES = 4096;

/** Default of {@link PortalAuthOptions.authConnections}. */
const DEFAULT_AUTH_CONNECTIONS = 32;

const identitySchema = z.object({
  user: z.string().min(1).max(256),
  channels: z.array(z.string().min(1).max(256)).max(256),
});

/** Maximum auth response body read, in bytes. The expected JSON is far smaller. */
const MAX_BODY_BYTES = 64 * 1024;

const DEFAULT_MAX_CACHE_ENTRIES = 10_000;

/** An auth request in flight, shared by every caller with the same cookies. */
interface InFlight {
  promise: Promise<AuthIdentity>;
  /** Users logged out while the request ran: a response naming one of them is stale. */
  loggedOut: Set<string>;
}

type CacheEntry = { expiresAt: number } & (
  | { identity: AuthIdentity; error?: undefined }
  | { identity?: undefined; error: AuthError }
);

/**
 * Authenticates sessions against the portal's auth URL. Only the allowed
 * cookies are forwarded. Accepted sessions and 401/403 rejections are cached
 * by a hash of those cookies, and concurrent calls for one session share a
 * single request, so a reconnect storm costs the portal one call per
 * session. Failures of the portal itself (503) are never cached.
 */
export class PortalAuth {
  readonly #options: Required<PortalAuthOptions>;
  readonly #agent: Agent;
  readonly #cache = new Map<string, CacheEntry>();
  readonly #inFlight = new Map<string, InFlight>();
  /** Controllers of the portal requests in flight, which close() aborts. */
  readonly #requests = new Set<AbortController>();
  #closed = false;

  constructor(options: PortalAuthOptions) {
    this.#options = {
      ...options,
      authConnections: options.authConnections ?? DEFAULT_AUTH_CONNECTIONS,
      maxCacheEntries: options.maxCacheEntries ?? DEFAULT_MAX_CACHE_ENTRIES,
      maxCookieBytes: options.maxCookieBytes ?? DEFAULT_MAX_COOKIE_BYTES,
      now: options.now ?? Date.now,
    };
    this.#agent = new Agent({
      connections: this.#options.authConnections,
      headersTimeout: options.authTimeoutMs,
      bodyTimeout: options.authTimeoutMs,
      connect: { timeout: options.authTimeoutMs },
    });
  }

  /** Number of cached sessions, accepted or rejected. */
  get cacheSize(): number {
    return this.#cache.size;
  }

  /**
   * Resolves the session that `cookieHeader` (a raw `Cookie` header) carries,
   * or rejects with an AuthError whose status is 401, 403 or 503.
   */
  authenticate(cookieHeader: string | undefined): Promise<AuthIdentity> {
    const jar = pickCookies(cookieHeader, this.#options.cookieNames);
    if (jar.size === 0) return Promise.reject(this.#missingCookies());
    if (this.#tooLarge(jar)) return Promise.reject(this.#cookiesTooLarge());

    const key = hashCookies(jar);
    const cached = this.#lookup(key);
    if (cached?.identity) return Promise.resolve(cached.identity);
    if (cached?.error) return Promise.reject(cached.error);
    return this.#request(key, jar);
  }

  /**
   * Like {@link authenticate}, but skips the cache and requests the auth URL,
   * so a session that ended at the portal is seen. The response replaces the
   * cached one. A call for a session whose request is already in flight shares it.
   */
  revalidate(cookieHeader: string): Promise<AuthIdentity> {
    const jar = pickCookies(cookieHeader, this.#options.cookieNames);
    if (jar.size === 0) return Promise.reject(this.#missingCookies());
    if (this.#tooLarge(jar)) return Promise.reject(this.#cookiesTooLarge());
    return this.#request(hashCookies(jar), jar);
  }

  /**
   * Returns the allowed cookies of a raw `Cookie` header as a `Cookie` header
   * value, the only part of the request that the auth URL receives.
   */
  sessionCookies(cookieHeader: string | undefined): string {
    return formatCookieHeader(pickCookies(cookieHeader, this.#options.cookieNames));
  }

  /**
   * Drops every cached session of `user`, and makes the requests in flight
   * reject with 401 where they return `user`, because the portal responded
   * to them before the logout.
   */
  dropUser(user: string): number {
    let dropped = 0;
    for (const [key, entry] of this.#cache) {
      if (entry.identity?.user !== user) continue;
      this.#cache.delete(key);
      dropped += 1;
    }
    for (const request of this.#inFlight.values()) request.loggedOut.add(user);
    return dropped;
  }

  /** Aborts requests in flight and closes the HTTP connections to the portal. */
  async close(): Promise<void> {
    this.#closed = true;
    for (const controller of this.#requests) controller.abort();
    await this.#agent.destroy();
    this.#cache.clear();
  }

  #tooLarge(jar: CookieJar): boolean {
    return formatCookieHeader(jar).length > this.#options.maxCookieBytes;
  }

  /**
   * Returns the rejection of oversized cookies, made before any portal
   * request, because a portal would return 431 or fail on them.
   */
  #cookiesTooLarge(): AuthError {
    return new AuthError(
      ServerErrorCode.COOKIE_TOO_LARGE,
      431,
      "session cookie too large",
      "the allowed cookies are longer than maxCookieBytes, so the portal was not asked",
    );
  }

  #missingCookies(): AuthError {
    const names = this.#options.cookieNames.join(", ");
    return new AuthError(
      ServerErrorCode.AUTH_MISSING,
      401,
      "no session cookie",
      `request carries none of the allowed cookies (${names}); log in to the portal first`,
    );
  }

  #request(key: string, jar: CookieJar): Promise<AuthIdentity> {
    const existing = this.#inFlight.get(key);
    if (existing) return existing.promise;

    const loggedOut = new Set<string>();
    const promise = this.#fetchIdentity(formatCookieHeader(jar)).then(
      (identity) => this.#settle(key, loggedOut, { identity }),
      (error: unknown) => this.#settle(key, loggedOut, { error: error as AuthError }),
    );
    this.#inFlight.set(key, { promise, loggedOut });
    return promise;
  }

  #lookup(key: string): CacheEntry | undefined {
    const entry = this.#cache.get(key);
    if (!entry) return undefined;
    if (entry.expiresAt > this.#options.now()) return entry;
    this.#cache.delete(key);
    return undefined;
  }

  #settle(
    key: string,
    loggedOut: ReadonlySet<string>,
    outcome: { identity: AuthIdentity } | { error: AuthError },
  ): AuthIdentity {
    this.#inFlight.delete(key);
    if ("identity" in outcome && loggedOut.has(outcome.identity.user)) {
      throw new AuthError(
        ServerErrorCode.AUTH_REJECTED,
        401,
        "session logged out",
        `user ${outcome.identity.user} logged out while the auth request was in flight`,
      );
    }
    if ("identity" in outcome) {
      const expiresAt = this.#options.now() + this.#options.authCacheTtlMs;
      this.#store(key, { identity: outcome.identity, expiresAt });
      return outcome.identity;
    }

    const { error } = outcome;
    if (error.code === ServerErrorCode.AUTH_REJECTED) {
      const expiresAt = this.#options.now() + this.#options.authRejectCacheTtlMs;
      this.#store(key, { error, expiresAt });
    }
    throw error;
  }

  #store(key: string, entry: CacheEntry): void {
    if (entry.expiresAt <= this.#options.now()) return;
    this.#cache.delete(key);
    this.#cache.set(key, entry);
    // A Map iterates in insertion order, so the first key is the oldest entry.
    while (this.#cache.size > this.#options.maxCacheEntries) {
      const oldest = this.#cache.keys().next();
      if (oldest.done) break;
      this.#cache.delete(oldest.value);
    }
  }

  /**
   * Requests the identity of `cookie` under one abort controller and a timer
   * that is cleared when the request ends. AbortSignal.timeout() would keep
   * its signal and timer alive for the whole authTimeoutMs after the response,
   * which in a burst of upgrades costs memory for every recent socket.
   */
  async #fetchIdentity(cookie: string): Promise<AuthIdentity> {
    const controller = new AbortController();
    const timer = setTimeout(() => {
      controller.abort(new DOMException("auth request timed out", "TimeoutError"));
    }, this.#options.authTimeoutMs);
    this.#requests.add(controller);
    if (this.#closed) controller.abort();
    try {
      return await this.#requestIdentity(cookie, controller.signal);
    } finally {
      clearTimeout(timer);
      this.#requests.delete(controller);
    }
  }

  async #requestIdentity(cookie: string, signal: AbortSignal): Promise<AuthIdentity> {
    const { authUrl, authTimeoutMs } = this.#options;
    let response: Awaited<ReturnType<typeof request>>;
    try {
      // undici's request() does not follow redirects, so a 3xx arrives here as is.
      response = await request(authUrl, {
        method: "GET",
        headers: { cookie, accept: "application/json" },
        dispatcher: this.#agent,
        signal,
      });
    } catch (error) {
      throw requestFailure(authUrl, authTimeoutMs, error);
    }

    const { statusCode, body } = response;
    if (statusCode !== 200) {
      await body.dump().catch(() => undefined);
      if (statusCode === 401 || statusCode === 403) {
        throw new AuthError(
          ServerErrorCode.AUTH_REJECTED,
          statusCode,
          `portal returned ${statusCode}`,
          `auth URL ${authUrl} rejected the session with ${statusCode}`,
        );
      }
      throw unavailable(
        `portal returned ${statusCode}`,
        `auth URL ${authUrl} returned ${statusCode} (expected 200, 401 or 403); check authUrl`,
      );
    }

    return parseIdentity(authUrl, await readBody(authUrl, authTimeoutMs, body));
  }
}

function unavailable(reason: string, message: string, cause?: unknown): AuthError {
  return new AuthError(ServerErrorCode.AUTH_UNAVAILABLE, 503, reason, message, { cause });
}

function isTimeout(error: unknown): boolean {
  if (!(error instanceof Error)) return false;
  const code = (error as { code?: unknown }).code;
  return (
    error.name === "TimeoutError" ||
    code === "UND_ERR_HEADERS_TIMEOUT" ||
    code === "UND_ERR_BODY_TIMEOUT" ||
    code === "UND_ERR_CONNECT_TIMEOUT"
  );
}

function requestFailure(authUrl: string, timeoutMs: number, error: unknown): AuthError {
  if (isTimeout(error)) {
    return unavailable(
      "portal timed out",
      `auth URL ${authUrl} did not respond within ${timeoutMs} ms; ` +
        "check the portal or raise authTimeoutMs",
      error,
    );
  }
  const detail = error instanceof Error ? error.message : String(error);
  return unavailable(
    "portal unreachable",
    `auth request to ${authUrl} failed: ${detail}; check that the portal is running`,
    error,
  );
}

async function readBody(
  authUrl: string,
  timeoutMs: number,
  body: AsyncIterable<Buffer | Uint8Array>,
): Promise<string> {
  const chunks: Buffer[] = [];
  let size = 0;
  try {
    for await (const chunk of body) {
      size += chunk.byteLength;
      if (size > MAX_BODY_BYTES) {
        throw unavailable(
          "invalid portal response",
          `auth URL ${authUrl} returned a body over ${MAX_BODY_BYTES} bytes; ` +
            'expected {"user","channels"}',
        );
      }
      chunks.push(Buffer.from(chunk));
    }
  } catch (error) {
    if (error instanceof AuthError) throw error;
    throw requestFailure(authUrl, timeoutMs, error);
  }
  return Buffer.concat(chunks).toString("utf8");
}

function parseIdentity(authUrl: string, text: string): AuthIdentity {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (error) {
    throw unavailable(
      "invalid portal response",
      `auth URL ${authUrl} returned 200 with a body that is not JSON; expected {"user","channels"}`,
      error,
    );
  }

  const result = identitySchema.safeParse(value);
  if (!result.success) {
    const problems = result.error.issues.map((issue) => {
      const path = issue.path.length > 0 ? issue.path.join(".") : "(root)";
      return `${path}: ${issue.message}`;
    });
    throw unavailable(
      "invalid portal response",
      `auth URL ${authUrl} returned 200 with invalid JSON (${problems.join("; ")}); ` +
        'expected {"user","channels"}',
    );
  }
  return { user: result.data.user, channels: result.data.channels };
}
