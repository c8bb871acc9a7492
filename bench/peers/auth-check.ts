/**
 * The cookie check that every peer server runs on every socket upgrade:
 * GET the portal's auth URL with only the `__ac` cookie. A 200 with
 * `{"user":...,"channels":[...]}` accepts the socket, anything else rejects it.
 * Unlike patpush, the peers keep no cache, so each upgrade costs one request.
 */
import { Agent, request } from "undici";
import { sessionToken, SESSION_COOKIE } from "../lib/portal-stub.ts";

/** The session that the portal accepted. */
export interface PeerIdentity {
  user: string;
  channels: string[];
}

/** Timeout of one auth request, in milliseconds (patpush's default authTimeoutMs). */
const AUTH_TIMEOUT_MS = 5_000;

function parseIdentity(body: unknown): PeerIdentity | undefined {
  if (typeof body !== "object" || body === null) return undefined;
  const { user, channels } = body as { user?: unknown; channels?: unknown };
  if (typeof user !== "string" || user === "") return undefined;
  if (!Array.isArray(channels) || !channels.every((c) => typeof c === "string")) return undefined;
  return { user, channels };
}

/** Checks session cookies against one auth URL over a keep-alive connection pool. */
export class AuthCheck {
  readonly #authUrl: string;
  // The same connection limit as patpush's default authConnections, so every server
  // keeps as many connections to the portal during a reconnect storm.
  readonly #agent = new Agent({
    connections: 32,
    headersTimeout: AUTH_TIMEOUT_MS,
    bodyTimeout: AUTH_TIMEOUT_MS,
    connect: { timeout: AUTH_TIMEOUT_MS },
  });

  constructor(authUrl: string) {
    this.#authUrl = authUrl;
  }

  /**
   * Returns the identity for a raw `Cookie` header, or undefined when the
   * cookie is missing or the portal did not return 200 with a valid body.
   * Throws when the portal cannot be reached.
   */
  async check(cookieHeader: string | undefined): Promise<PeerIdentity | undefined> {
    const token = sessionToken(cookieHeader);
    if (token === "") return undefined;

    const { statusCode, body } = await request(this.#authUrl, {
      method: "GET",
      headers: { cookie: `${SESSION_COOKIE}=${token}`, accept: "application/json" },
      dispatcher: this.#agent,
    });
    if (statusCode !== 200) {
      await body.dump();
      return undefined;
    }
    return parseIdentity(await body.json());
  }

  async close(): Promise<void> {
    await this.#agent.close();
  }
}
