import { createHmac, randomBytes, timingSafeEqual } from "node:crypto";

/** Name of the form field that carries the token, as plone.protect names it. */
export const AUTHENTICATOR_FIELD = "_authenticator";

const TOKEN_PATTERN = /^[0-9a-f]{64}$/;

/**
 * CSRF tokens in the manner of plone.protect: the token of a session is
 * HMAC-SHA256(secret, session token) in hex. A page embeds it in every form
 * that changes state, and the handler accepts the POST only when the field
 * matches the session that sent it, so another site cannot forge the request.
 */
export class CsrfAuthenticator {
  readonly #secret: Buffer;

  /** `secret` defaults to 32 random bytes, so tokens do not outlive the process. */
  constructor(secret: Buffer = randomBytes(32)) {
    if (secret.length < 16) throw new RangeError("authenticator secret must be at least 16 bytes");
    this.#secret = secret;
  }

  /** Returns the token that forms of this session must carry. */
  tokenFor(sessionToken: string): string {
    return createHmac("sha256", this.#secret).update(sessionToken).digest("hex");
  }

  /** Returns true when `value` is the token of `sessionToken`, compared in constant time. */
  verify(sessionToken: string, value: unknown): boolean {
    if (typeof value !== "string" || !TOKEN_PATTERN.test(value)) return false;

    const expected = Buffer.from(this.tokenFor(sessionToken), "utf8");
    return timingSafeEqual(expected, Buffer.from(value, "utf8"));
  }
}
