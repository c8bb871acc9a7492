import assert from "node:assert/strict";
import { createHmac } from "node:crypto";
import { describe, it } from "node:test";
import { CsrfAuthenticator } from "./authenticator.ts";

const SECRET = Buffer.from("0123456789abcdef0123456789abcdef");

describe("csrf authenticator", () => {
  it("derives the HMAC-SHA256 of the session", () => {
    const authenticator = new CsrfAuthenticator(SECRET);
    const expected = createHmac("sha256", SECRET).update("session-a").digest("hex");

    assert.equal(authenticator.tokenFor("session-a"), expected);
    assert.match(authenticator.tokenFor("session-a"), /^[0-9a-f]{64}$/);
  });

  it("accepts the token of the session", () => {
    const authenticator = new CsrfAuthenticator(SECRET);
    assert.equal(authenticator.verify("session-a", authenticator.tokenFor("session-a")), true);
  });

  it("rejects another session's token", () => {
    const authenticator = new CsrfAuthenticator(SECRET);
    assert.equal(authenticator.verify("session-a", authenticator.tokenFor("session-b")), false);
  });

  it("rejects missing and malformed values", () => {
    const authenticator = new CsrfAuthenticator(SECRET);
    const token = authenticator.tokenFor("session-a");

    for (const value of [
      undefined,
      null,
      "",
      42,
      token.slice(1),
      token.toUpperCase(),
      `${token}0`,
      ` ${token}`,
    ]) {
      assert.equal(authenticator.verify("session-a", value), false, `accepted ${String(value)}`);
    }
  });

  it("rejects tokens made with another secret", () => {
    const first = new CsrfAuthenticator(SECRET);
    const second = new CsrfAuthenticator(Buffer.from("fedcba9876543210fedcba9876543210"));
    assert.equal(second.verify("session-a", first.tokenFor("session-a")), false);
  });

  it("rejects a secret shorter than 16 bytes", () => {
    assert.throws(() => new CsrfAuthenticator(Buffer.alloc(8)), {
      name: "RangeError",
      message: "authenticator secret must be at least 16 bytes",
    });
  });
});
