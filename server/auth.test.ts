import assert from "node:assert/strict";
import { after, describe, it } from "node:test";
import { PortalAuth, type PortalAuthOptions } from "./auth.ts";
import { AuthError } from "./errors.ts";
import {
  closedPortUrl,
  startPortalStub,
  type PortalResponder,
  type PortalStub,
} from "./test-support.ts";

const cleanups: (() => Promise<void>)[] = [];
after(async () => {
  for (const cleanup of cleanups) await cleanup();
});

/** Starts a portal stub and an auth client against it; both are closed after the file. */
async function setup(
  respond?: PortalResponder,
  options: Partial<PortalAuthOptions> = {},
): Promise<{ portal: PortalStub; auth: PortalAuth }> {
  const portal = await startPortalStub(respond);
  const auth = new PortalAuth({
    authUrl: portal.authUrl,
    cookieNames: ["__ac"],
    authTimeoutMs: 2000,
    authCacheTtlMs: 10_000,
    authRejectCacheTtlMs: 10_000,
    ...options,
  });
  cleanups.push(() => auth.close(), () => portal.close());
  return { portal, auth };
}

/** Asserts that `promise` rejects with an AuthError of `code` and `status`; returns it. */
async function expectAuthError(
  promise: Promise<unknown>,
  code: string,
  status: number,
): Promise<AuthError> {
  let caught: unknown;
  await assert.rejects(promise, (error) => {
    caught = error;
    return true;
  });
  assert.ok(caught instanceof AuthError, `expected AuthError, got ${String(caught)}`);
  assert.equal(caught.code, code);
  assert.equal(caught.status, status);
  return caught;
}

describe("portal auth", () => {
  it("forwards only allowed cookies", async () => {
    const { portal, auth } = await setup();

    await auth.authenticate("tracking=abc; __ac=alice-session; other=secret-other");

    assert.equal(portal.requests.length, 1);
    assert.equal(portal.requests[0]?.cookie, "__ac=alice-session");
    assert.equal(portal.requests[0]?.method, "GET");
  });

  it("forwards each configured cookie name", async () => {
    const { portal, auth } = await setup(undefined, { cookieNames: ["__ac", "auth_tkt"] });

    await auth.authenticate("auth_tkt=t1; x=1; __ac=alice-session");

    assert.equal(portal.requests[0]?.cookie, "auth_tkt=t1; __ac=alice-session");
  });

  it("accepts a 200 identity", async () => {
    const { auth } = await setup();

    assert.deepEqual(await auth.authenticate("__ac=carol-session"), {
      user: "carol",
      channels: ["news"],
    });
  });

  it("rejects without calling when no cookie", async () => {
    const { portal, auth } = await setup();

    for (const header of [undefined, "", "tracking=abc; other=1"]) {
      const error = await expectAuthError(auth.authenticate(header), "PATPUSH_AUTH_MISSING", 401);
      assert.match(error.message, /none of the allowed cookies \(__ac\)/);
    }
    assert.equal(portal.requests.length, 0);
  });

  it("rejects on portal 401", async () => {
    const { auth } = await setup();

    const error = await expectAuthError(
      auth.authenticate("__ac=unknown-session"),
      "PATPUSH_AUTH_REJECTED",
      401,
    );
    assert.equal(error.reason, "portal returned 401");
  });

  it("rejects on portal 403", async () => {
    const { auth } = await setup();

    const error = await expectAuthError(
      auth.authenticate("__ac=forbidden-session"),
      "PATPUSH_AUTH_REJECTED",
      403,
    );
    assert.equal(error.reason, "portal returned 403");
  });

  interface UnavailableCase {
    name: string;
    respond: PortalResponder;
    reason: string;
    message: RegExp;
  }
  const unavailableCases: UnavailableCase[] = [
    {
      name: "redirect",
      respond: (_req, res) => res.writeHead(302, { location: "/login" }).end(),
      reason: "portal returned 302",
      message: /returned 302 \(expected 200, 401 or 403\); check authUrl/,
    },
    {
      name: "server error",
      respond: (_req, res) => res.writeHead(500).end("boom"),
      reason: "portal returned 500",
      message: /returned 500/,
    },
    {
      name: "body not JSON",
      respond: (_req, res) => res.writeHead(200).end("<html>login</html>"),
      reason: "invalid portal response",
      message: /body that is not JSON/,
    },
    {
      name: "JSON of wrong shape",
      respond: (_req, res) => {
        res.writeHead(200).end(JSON.stringify({ user: "", channels: "news" }));
      },
      reason: "invalid portal response",
      message: /user: .*; channels: /,
    },
  ];

  for (const testCase of unavailableCases) {
    it(`returns 503 on ${testCase.name}`, async () => {
      const { auth } = await setup(testCase.respond);

      const error = await expectAuthError(
        auth.authenticate("__ac=alice-session"),
        "PATPUSH_AUTH_UNAVAILABLE",
        503,
      );
      assert.equal(error.reason, testCase.reason);
      assert.match(error.message, testCase.message);
    });
  }

  it("limits connections to the portal", async () => {
    let inFlight = 0;
    let maxInFlight = 0;
    const connections = new Set<string>();
    const { auth } = await setup(
      (req, res) => {
        connections.add(`${req.socket.remoteAddress}:${req.socket.remotePort}`);
        inFlight++;
        maxInFlight = Math.max(maxInFlight, inFlight);
        setTimeout(() => {
          inFlight--;
          res.writeHead(200, { "content-type": "application/json" });
          res.end(JSON.stringify({ user: "u", channels: [] }));
        }, 30);
      },
      { authConnections: 2 },
    );

    const sessions = Array.from({ length: 12 }, (_, i) => auth.authenticate(`__ac=session-${i}`));
    const identities = await Promise.all(sessions);

    assert.equal(identities.length, 12);
    assert.ok(identities.every((identity) => identity.user === "u"));
    assert.equal(maxInFlight, 2, "requests in flight at once");
    assert.ok(connections.size <= 2, `${connections.size} connections opened`);
  });

  it("returns 503 on timeout", async () => {
    // The stub never responds, so only the client's time limit ends the request.
    const { auth } = await setup(() => undefined, { authTimeoutMs: 200 });

    const error = await expectAuthError(
      auth.authenticate("__ac=alice-session"),
      "PATPUSH_AUTH_UNAVAILABLE",
      503,
    );
    assert.equal(error.reason, "portal timed out");
    assert.match(error.message, /did not respond within 200 ms/);
  });

  it("returns 503 on a stalled body", async () => {
    // Headers arrive at once, but the body never ends.
    const { auth } = await setup(
      (_req, res) => {
        res.writeHead(200, { "content-type": "application/json" });
        res.write('{"user":');
      },
      { authTimeoutMs: 200 },
    );

    const error = await expectAuthError(
      auth.authenticate("__ac=alice-session"),
      "PATPUSH_AUTH_UNAVAILABLE",
      503,
    );
    assert.equal(error.reason, "portal timed out");
  });

  it("aborts a request in flight on close", async () => {
    // The stub never responds and the time limit is far off, so only close() ends the request.
    const { portal, auth } = await setup(() => undefined, { authTimeoutMs: 60_000 });
    const pending = auth.authenticate("__ac=alice-session");
    while (portal.requests.length === 0) await new Promise((resolve) => setTimeout(resolve, 10));

    const rejected = expectAuthError(pending, "PATPUSH_AUTH_UNAVAILABLE", 503);
    await auth.close();

    const error = await rejected;
    assert.equal(error.reason, "portal unreachable");
  });

  it("returns 503 on connection refused", async () => {
    const auth = new PortalAuth({
      authUrl: await closedPortUrl(),
      cookieNames: ["__ac"],
      authTimeoutMs: 2000,
      authCacheTtlMs: 10_000,
      authRejectCacheTtlMs: 10_000,
    });
    cleanups.push(() => auth.close());

    const error = await expectAuthError(
      auth.authenticate("__ac=alice-session"),
      "PATPUSH_AUTH_UNAVAILABLE",
      503,
    );
    assert.equal(error.reason, "portal unreachable");
    assert.match(error.message, /ECONNREFUSED/);
  });

  it("never puts cookie values in errors", async () => {
    const { auth } = await setup((_req, res) => res.writeHead(500).end());

    const error = await expectAuthError(
      auth.authenticate("__ac=secret-cookie-value-123"),
      "PATPUSH_AUTH_UNAVAILABLE",
      503,
    );
    assert.ok(!error.message.includes("secret-cookie-value-123"));
    assert.ok(!error.reason.includes("secret-cookie-value-123"));
  });
});

const FORBIDDEN = "__ac=forbidden-session";

describe("auth cache", () => {
  it("serves a repeat from cache", async () => {
    const { portal, auth } = await setup();

    const first = await auth.authenticate("__ac=alice-session");
    const second = await auth.authenticate("x=1; __ac=alice-session");

    assert.deepEqual(second, first);
    assert.equal(portal.requests.length, 1);
  });

  it("shares one request per key", async () => {
    const { portal, auth } = await setup();

    const results = await Promise.all(
      Array.from({ length: 5 }, () => auth.authenticate("__ac=bob-session")),
    );

    assert.equal(portal.requests.length, 1);
    for (const result of results) assert.deepEqual(result, { user: "bob", channels: [] });
  });

  it("shares one rejection per key", async () => {
    const { portal, auth } = await setup();

    const results = await Promise.allSettled(
      Array.from({ length: 3 }, () => auth.authenticate("__ac=unknown-session")),
    );

    assert.equal(portal.requests.length, 1);
    for (const result of results) {
      assert.equal(result.status, "rejected");
      assert.equal((result as PromiseRejectedResult).reason.code, "PATPUSH_AUTH_REJECTED");
    }
  });

  it("caches rejections", async () => {
    const { portal, auth } = await setup();

    await expectAuthError(auth.authenticate("__ac=unknown"), "PATPUSH_AUTH_REJECTED", 401);
    await expectAuthError(auth.authenticate("__ac=unknown"), "PATPUSH_AUTH_REJECTED", 401);
    await expectAuthError(auth.authenticate(FORBIDDEN), "PATPUSH_AUTH_REJECTED", 403);
    await expectAuthError(auth.authenticate(FORBIDDEN), "PATPUSH_AUTH_REJECTED", 403);

    assert.equal(portal.requests.length, 2);
  });

  it("skips rejection cache at TTL 0", async () => {
    const { portal, auth } = await setup(undefined, { authRejectCacheTtlMs: 0 });

    await expectAuthError(auth.authenticate("__ac=unknown"), "PATPUSH_AUTH_REJECTED", 401);
    await expectAuthError(auth.authenticate("__ac=unknown"), "PATPUSH_AUTH_REJECTED", 401);

    assert.equal(portal.requests.length, 2);
    assert.equal(auth.cacheSize, 0);
  });

  it("never caches unavailability", async () => {
    const { portal, auth } = await setup((_req, res) => res.writeHead(500).end());

    await expectAuthError(auth.authenticate("__ac=alice-session"), "PATPUSH_AUTH_UNAVAILABLE", 503);
    await expectAuthError(auth.authenticate("__ac=alice-session"), "PATPUSH_AUTH_UNAVAILABLE", 503);

    assert.equal(portal.requests.length, 2);
    assert.equal(auth.cacheSize, 0);
  });

  it("keys entries by cookie", async () => {
    const { portal, auth } = await setup();

    const alice = await auth.authenticate("__ac=alice-session");
    const bob = await auth.authenticate("__ac=bob-session");
    const aliceAgain = await auth.authenticate("__ac=alice-session");

    assert.deepEqual(alice, { user: "alice", channels: [] });
    assert.deepEqual(bob, { user: "bob", channels: [] });
    assert.deepEqual(aliceAgain, alice);
    assert.equal(portal.requests.length, 2);
    assert.equal(auth.cacheSize, 2);
  });

  it("expires entries after the TTL", async () => {
    let now = 1_000_000;
    const { portal, auth } = await setup(undefined, {
      authCacheTtlMs: 100,
      authRejectCacheTtlMs: 50,
      now: () => now,
    });

    await auth.authenticate("__ac=alice-session");
    await expectAuthError(auth.authenticate("__ac=unknown"), "PATPUSH_AUTH_REJECTED", 401);
    now += 99;
    await auth.authenticate("__ac=alice-session");
    await expectAuthError(auth.authenticate("__ac=unknown"), "PATPUSH_AUTH_REJECTED", 401);
    assert.equal(portal.requests.length, 3, "only the rejection expired after 99 ms");

    now += 1;
    await auth.authenticate("__ac=alice-session");
    assert.equal(portal.requests.length, 4, "the success expired after 100 ms");
  });

  it("evicts the oldest past the bound", async () => {
    const { portal, auth } = await setup(undefined, { maxCacheEntries: 2 });

    await auth.authenticate("__ac=alice-session");
    await auth.authenticate("__ac=bob-session");
    await auth.authenticate("__ac=carol-session");
    assert.equal(auth.cacheSize, 2);

    await auth.authenticate("__ac=carol-session");
    await auth.authenticate("__ac=bob-session");
    assert.equal(portal.requests.length, 3, "bob and carol are still cached");

    await auth.authenticate("__ac=alice-session");
    assert.equal(portal.requests.length, 4, "alice was evicted");
  });
});

describe("auth revalidation", () => {
  it("asks the portal past the cache", async () => {
    const { portal, auth } = await setup();

    await auth.authenticate("__ac=alice-session");
    const identity = await auth.revalidate("__ac=alice-session");

    assert.deepEqual(identity, { user: "alice", channels: [] });
    assert.equal(portal.requests.length, 2);
  });

  it("replaces the cached answer", async () => {
    let valid = true;
    const { portal, auth } = await setup((_req, res) => {
      if (valid) res.writeHead(200).end('{"user":"alice","channels":[]}');
      else res.writeHead(401).end();
    });

    await auth.authenticate("__ac=alice-session");
    valid = false;
    await expectAuthError(auth.revalidate("__ac=alice-session"), "PATPUSH_AUTH_REJECTED", 401);
    await expectAuthError(auth.authenticate("__ac=alice-session"), "PATPUSH_AUTH_REJECTED", 401);

    assert.equal(portal.requests.length, 2, "the cached rejection answered the last call");
  });

  it("forwards only allowed cookies", async () => {
    const { portal, auth } = await setup();

    await auth.revalidate("other=secret; __ac=bob-session; __ac=second");

    assert.equal(portal.requests[0]?.cookie, "__ac=bob-session");
  });

  it("keeps only allowed session cookies", async () => {
    const { auth } = await setup();

    assert.equal(auth.sessionCookies("a=1; __ac=alice-session; b=2"), "__ac=alice-session");
    assert.equal(auth.sessionCookies(undefined), "");
  });
});

describe("auth logout", () => {
  it("drops the cached sessions of a user", async () => {
    const { portal, auth } = await setup();
    await auth.authenticate("__ac=alice-session");
    await auth.authenticate("__ac=alice-session-2");
    await auth.authenticate("__ac=bob-session");

    const dropped = auth.dropUser("alice");
    await auth.authenticate("__ac=alice-session");
    await auth.authenticate("__ac=bob-session");

    assert.equal(dropped, 2);
    assert.equal(portal.requests.length, 4, "alice asked again, bob served from cache");
  });

  it("rejects a request in flight", async () => {
    let release: () => void = () => undefined;
    const answered = new Promise<void>((resolve) => (release = resolve));
    const { auth } = await setup((_req, res) => {
      void answered.then(() => res.writeHead(200).end('{"user":"alice","channels":[]}'));
    });

    const pending = auth.authenticate("__ac=alice-session");
    await new Promise((resolve) => setTimeout(resolve, 50));
    auth.dropUser("alice");
    release();

    const error = await expectAuthError(pending, "PATPUSH_AUTH_REJECTED", 401);
    assert.equal(error.reason, "session logged out");
    assert.equal(auth.cacheSize, 0);
  });

  it("keeps a request in flight of others", async () => {
    const { auth } = await setup();

    const pending = auth.authenticate("__ac=bob-session");
    auth.dropUser("alice");

    assert.deepEqual(await pending, { user: "bob", channels: [] });
    assert.equal(auth.cacheSize, 1);
  });
});
