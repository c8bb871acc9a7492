import { randomBytes } from "node:crypto";
import type { IncomingMessage } from "node:http";
import { pickCookies } from "../../common/cookies.ts";

/** Name of the session cookie, as Plone names its auth cookie. */
export const SESSION_COOKIE = "__ac";

/** Default lifetime of a session, in milliseconds (12 hours). */
export const DEFAULT_SESSION_TTL_MS = 12 * 60 * 60 * 1000;

/** A session token is 32 random bytes in base64url: 43 characters. */
const TOKEN_PATTERN = /^[A-Za-z0-9_-]{43}$/;

interface SessionRecord {
  user: string;
  expiresAt: number;
}

/** The logged-in user behind a request, with the token that identifies the session. */
export interface Session {
  user: string;
  token: string;
}

/** In-memory sessions keyed by their random token; the token is the `__ac` cookie value. */
export class SessionStore {
  readonly #sessions = new Map<string, SessionRecord>();
  readonly #ttlMs: number;
  readonly #now: () => number;

  constructor(options: { ttlMs?: number; now?: () => number } = {}) {
    this.#ttlMs = options.ttlMs ?? DEFAULT_SESSION_TTL_MS;
    this.#now = options.now ?? Date.now;
  }

  /** Creates a session for `user` and returns its token. */
  create(user: string): string {
    const token = randomBytes(32).toString("base64url");
    this.#sessions.set(token, { user, expiresAt: this.#now() + this.#ttlMs });
    return token;
  }

  /** Returns the user of a live session, or undefined for an unknown or expired token. */
  userFor(token: string): string | undefined {
    const record = this.#sessions.get(token);
    if (record === undefined) return undefined;

    if (record.expiresAt <= this.#now()) {
      this.#sessions.delete(token);
      return undefined;
    }
    return record.user;
  }

  /** Ends a session; unknown tokens are ignored. */
  delete(token: string): void {
    this.#sessions.delete(token);
  }

  /** Returns the session named by the request's `__ac` cookie, or undefined. */
  sessionFrom(req: IncomingMessage): Session | undefined {
    const token = pickCookies(req.headers.cookie, [SESSION_COOKIE]).get(SESSION_COOKIE);
    if (token === undefined || !TOKEN_PATTERN.test(token)) return undefined;

    const user = this.userFor(token);
    return user === undefined ? undefined : { user, token };
  }
}

/** Returns the `Set-Cookie` value that stores `token` in the browser. */
export function sessionCookie(token: string): string {
  return `${SESSION_COOKIE}=${token}; Path=/; HttpOnly; SameSite=Lax`;
}

/** Returns the `Set-Cookie` value that removes the session cookie. */
export function expiredSessionCookie(): string {
  return `${SESSION_COOKIE}=; Path=/; HttpOnly; SameSite=Lax; Max-Age=0`;
}
