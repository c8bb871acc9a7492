import assert from "node:assert/strict";
import type { IncomingMessage } from "node:http";
import { describe, it } from "node:test";
import { expiredSessionCookie, sessionCookie, SessionStore } from "./sessions.ts";

function requestWithCookie(cookie: string | undefined): IncomingMessage {
  return { headers: cookie === undefined ? {} : { cookie } } as IncomingMessage;
}

describe("session store", () => {
  it("creates distinct random tokens", () => {
    const store = new SessionStore();
    const first = store.create("alice");
    const second = store.create("alice");

    assert.match(first, /^[A-Za-z0-9_-]{43}$/);
    assert.notEqual(first, second);
    assert.equal(store.userFor(first), "alice");
    assert.equal(store.userFor(second), "alice");
  });

  it("reads the session from __ac", () => {
    const store = new SessionStore();
    const token = store.create("bob");

    const session = store.sessionFrom(requestWithCookie(`other=1; __ac=${token}; theme=dark`));
    assert.deepEqual(session, { user: "bob", token });
  });

  it("ignores unknown and malformed cookies", () => {
    const store = new SessionStore();
    store.create("alice");

    assert.equal(store.sessionFrom(requestWithCookie(undefined)), undefined);
    assert.equal(store.sessionFrom(requestWithCookie("__ac=")), undefined);
    assert.equal(store.sessionFrom(requestWithCookie(`__ac=${"A".repeat(43)}`)), undefined);
    assert.equal(store.sessionFrom(requestWithCookie("__ac=not a token")), undefined);
  });

  it("ends a deleted session", () => {
    const store = new SessionStore();
    const token = store.create("alice");
    store.delete(token);

    assert.equal(store.userFor(token), undefined);
    assert.equal(store.sessionFrom(requestWithCookie(`__ac=${token}`)), undefined);
  });

  it("expires a session after its ttl", () => {
    let now = 1_000;
    const store = new SessionStore({ ttlMs: 500, now: () => now });
    const token = store.create("alice");

    now = 1_499;
    assert.equal(store.userFor(token), "alice");
    now = 1_500;
    assert.equal(store.userFor(token), undefined);
  });
});

describe("session cookie", () => {
  it("is HttpOnly and SameSite Lax", () => {
    assert.equal(sessionCookie("abc"), "__ac=abc; Path=/; HttpOnly; SameSite=Lax");
  });

  it("expires on logout", () => {
    assert.equal(expiredSessionCookie(), "__ac=; Path=/; HttpOnly; SameSite=Lax; Max-Age=0");
  });
});
