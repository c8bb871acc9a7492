import assert from "node:assert/strict";
import type { IncomingHttpHeaders } from "node:http";
import { after, describe, it } from "node:test";
import { request } from "undici";
import type { ServerConfigInput } from "./config.ts";
import {
  expectRejected,
  metricValue,
  openSocket,
  rejectedUpgrade,
  sessionResponder,
  startPortalStub,
  startTestServer,
  type PortalStub,
  type TestServer,
  type TestSocket,
} from "./test-support.ts";

const cleanups: (() => Promise<void>)[] = [];
const sockets: TestSocket[] = [];

after(async () => {
  for (const socket of sockets) socket.ws.terminate();
  for (const cleanup of cleanups.reverse()) await cleanup();
});

interface Setup {
  portal: PortalStub;
  test: TestServer;
  /** Headers of every request the portal received. */
  portalHeaders: IncomingHttpHeaders[];
}

/** Starts a portal stub and a push server that allows its origin, with `config` on top. */
async function setup(config: Partial<ServerConfigInput> = {}): Promise<Setup> {
  const portalHeaders: IncomingHttpHeaders[] = [];
  const respond = sessionResponder();
  const portal = await startPortalStub((req, res) => {
    portalHeaders.push(req.headers);
    respond(req, res);
  });
  cleanups.push(() => portal.close());
  const test = await startTestServer({ authUrl: portal.authUrl, ...config });
  cleanups.push(() => test.close());
  return { portal, test, portalHeaders };
}

/** Opens a socket from the loopback address `localAddress`. */
async function connect(
  { portal, test }: Setup,
  session: string,
  localAddress = "127.0.0.1",
): Promise<TestSocket> {
  const socket = await openSocket(test.server.url, {
    origin: portal.origin,
    cookie: `__ac=${session}`,
    localAddress,
  });
  sockets.push(socket);
  await socket.waitFor((frame) => frame.type === "welcome");
  return socket;
}

async function metricsOf(test: TestServer): Promise<string> {
  const response = await request(`${test.server.httpUrl}/metrics`);
  return response.body.text();
}

/** Resolves once `condition` holds, polling every 10 ms for up to 2 seconds. */
async function waitUntil(condition: () => boolean, what: string): Promise<void> {
  const deadline = Date.now() + 2000;
  while (!condition()) {
    if (Date.now() > deadline) assert.fail(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

describe("per-user socket limit", { timeout: 30_000 }, () => {
  it("rejects past maxSocketsPerUser", async () => {
    const env = await setup({ maxSocketsPerUser: 2 });
    await connect(env, "alice-session");
    await connect(env, "alice-session-2");

    const rejection = await expectRejected(env.test.server.url, {
      origin: env.portal.origin,
      cookie: "__ac=alice-session",
    });

    assert.equal(rejection.status, 429);
    assert.deepEqual(JSON.parse(rejection.body), {
      error: "too many sockets for this user",
      code: "PATPUSH_TOO_MANY_SOCKETS",
    });
    await connect(env, "bob-session");
    const metrics = await metricsOf(env.test);
    const series = 'patpush_upgrades_rejected_total{reason="sockets_per_user"}';
    assert.equal(metricValue(metrics, series), 1);
  });

  it("frees a slot on close", async () => {
    const env = await setup({ maxSocketsPerUser: 1 });
    const first = await connect(env, "alice-session");

    first.ws.close();
    await first.closed;
    await waitUntil(() => env.test.server.connectionCount() === 0, "the close");

    await connect(env, "alice-session");
  });
});

describe("per-address socket limit", { timeout: 30_000 }, () => {
  it("rejects before the portal", async () => {
    const env = await setup({ maxSocketsPerIp: 2, authCacheTtlMs: 0 });
    await connect(env, "alice-session", "127.0.0.2");
    await connect(env, "bob-session", "127.0.0.2");
    const requests = env.portal.requests.length;

    const rejection = await rejectedUpgrade(
      env.test.server.url,
      { origin: env.portal.origin, cookie: "__ac=carol-session" },
      "127.0.0.2",
    );

    assert.equal(rejection.status, 429);
    assert.deepEqual(JSON.parse(rejection.body), {
      error: "too many sockets from this address",
      code: "PATPUSH_TOO_MANY_SOCKETS",
    });
    assert.equal(env.portal.requests.length, requests, "the portal was not asked");
    await connect(env, "carol-session", "127.0.0.3");
  });

  it("counts opening sockets too", async () => {
    let release: () => void = () => undefined;
    const answered = new Promise<void>((resolve) => (release = resolve));
    const respond = sessionResponder();
    const portal = await startPortalStub((req, res) => void answered.then(() => respond(req, res)));
    cleanups.push(() => portal.close());
    const test = await startTestServer({ authUrl: portal.authUrl, maxSocketsPerIp: 2 });
    cleanups.push(() => test.close());
    const options = {
      origin: portal.origin,
      cookie: "__ac=alice-session",
      localAddress: "127.0.0.4",
    };

    const opening = [openSocket(test.server.url, options), openSocket(test.server.url, options)];
    await waitUntil(() => portal.requests.length === 1, "the auth request");
    const rejection = await expectRejected(test.server.url, options);
    release();
    const opened = await Promise.all(opening);
    sockets.push(...opened);

    assert.equal(rejection.status, 429);
    assert.equal(JSON.parse(rejection.body).code, "PATPUSH_TOO_MANY_SOCKETS");
    assert.equal(test.server.connectionCount(), 2);
  });

  it("frees the slot of a rejection", async () => {
    const env = await setup({ maxSocketsPerIp: 1 });

    for (let i = 0; i < 3; i += 1) {
      const rejection = await rejectedUpgrade(
        env.test.server.url,
        { origin: env.portal.origin, cookie: "__ac=unknown" },
        "127.0.0.5",
      );
      assert.equal(rejection.status, 401);
    }

    await connect(env, "alice-session", "127.0.0.5");
  });
});

describe("upgrade rate limit", { timeout: 30_000 }, () => {
  it("rejects past the burst with Retry-After", async () => {
    const env = await setup({ upgradesPerIpPerSecond: 3, authCacheTtlMs: 0 });
    for (let i = 0; i < 3; i += 1) await connect(env, "alice-session", "127.0.0.6");
    const requests = env.portal.requests.length;

    const rejection = await rejectedUpgrade(
      env.test.server.url,
      { origin: env.portal.origin, cookie: "__ac=alice-session" },
      "127.0.0.6",
    );

    assert.equal(rejection.status, 429);
    assert.equal(rejection.headers["retry-after"], "1");
    assert.deepEqual(JSON.parse(rejection.body), {
      error: "too many requests",
      code: "PATPUSH_RATE_LIMITED",
    });
    assert.equal(env.portal.requests.length, requests, "the portal was not asked");
    await connect(env, "alice-session", "127.0.0.7");
  });

  it("passes again after refilling", async () => {
    const env = await setup({ upgradesPerIpPerSecond: 2 });
    await connect(env, "alice-session", "127.0.0.8");
    await connect(env, "alice-session", "127.0.0.8");
    const headers = { origin: env.portal.origin, cookie: "__ac=alice-session" };
    assert.equal((await rejectedUpgrade(env.test.server.url, headers, "127.0.0.8")).status, 429);

    await new Promise((resolve) => setTimeout(resolve, 550));

    await connect(env, "alice-session", "127.0.0.8");
  });

  it("limits the auth route too", async () => {
    const env = await setup({ upgradesPerIpPerSecond: 1 });
    const url = `${env.test.server.httpUrl}/push/auth`;
    const headers = { origin: env.portal.origin, cookie: "__ac=alice-session" };

    const first = await request(url, { headers });
    await first.body.dump();
    const second = await request(url, { headers });

    assert.equal(first.statusCode, 200);
    assert.equal(second.statusCode, 429);
    assert.equal(second.headers["retry-after"], "1");
    assert.equal(((await second.body.json()) as { code: string }).code, "PATPUSH_RATE_LIMITED");
  });

  it("logs one line per reason and address", async () => {
    const env = await setup({ upgradesPerIpPerSecond: 1 });
    await connect(env, "alice-session", "127.0.0.9");
    const headers = { origin: env.portal.origin, cookie: "__ac=alice-session" };

    for (let i = 0; i < 5; i += 1) {
      const rejection = await rejectedUpgrade(env.test.server.url, headers, "127.0.0.9");
      assert.equal(rejection.status, 429);
    }

    const lines = env.test.logs
      .records()
      .filter((record) => record.msg === "auth rejected" && record.code === "PATPUSH_RATE_LIMITED");
    assert.equal(lines.length, 1);
    assert.equal(lines[0]?.ip, "127.0.0.9");
    assert.equal(lines[0]?.skipped, 0);
    const metrics = await metricsOf(env.test);
    const series = 'patpush_upgrades_rejected_total{reason="rate_limited"}';
    assert.equal(metricValue(metrics, series), 5, "every rejection is counted");
  });

  it("has no limit at 0", async () => {
    const env = await setup({ upgradesPerIpPerSecond: 0, maxSocketsPerUser: 0 });

    for (let i = 0; i < 30; i += 1) await connect(env, "alice-session", "127.0.0.10");

    assert.equal(env.test.server.connectionCount(), 30);
  });
});

describe("origin check", { timeout: 30_000 }, () => {
  it("rejects a missing origin by default", async () => {
    const env = await setup();

    const rejection = await rejectedUpgrade(env.test.server.url, { cookie: "__ac=alice-session" });

    assert.equal(rejection.status, 403);
    assert.equal(JSON.parse(rejection.body).code, "PATPUSH_ORIGIN_REJECTED");
    assert.equal(env.portal.requests.length, 0);
  });

  it("accepts a missing origin when allowed", async () => {
    const env = await setup({ allowMissingOrigin: true });

    const socket = await openSocket(env.test.server.url, { cookie: "__ac=alice-session" });
    sockets.push(socket);

    const welcome = await socket.waitFor((frame) => frame.type === "welcome");
    assert.equal(welcome.type === "welcome" && welcome.user, "alice");
  });

  it("still rejects a foreign origin when allowed", async () => {
    const env = await setup({ allowMissingOrigin: true });

    for (const origin of ["http://evil.test", "null", "http://127.0.0.1"]) {
      const headers: Record<string, string> = { origin, cookie: "__ac=alice-session" };
      const rejection = await rejectedUpgrade(env.test.server.url, headers);
      assert.equal(rejection.status, 403, origin);
      assert.equal(JSON.parse(rejection.body).code, "PATPUSH_ORIGIN_REJECTED");
    }
    assert.equal(env.portal.requests.length, 0);
  });
});

describe("portal request headers", { timeout: 30_000 }, () => {
  it("carry no client header", async () => {
    const env = await setup({ authCacheTtlMs: 0, cookieNames: ["__ac", "lang"] });
    const clientHeaders = {
      origin: env.portal.origin,
      cookie: "tracking=track-value; __ac=alice-session; lang=en; other=other-value",
      authorization: "Bearer client-bearer-value",
      "x-forwarded-for": "203.0.113.9",
      "x-forwarded-host": "evil.test",
      "x-real-ip": "203.0.113.10",
      forwarded: "for=203.0.113.11",
      "x-csrf-token": "client-csrf-value",
      "user-agent": "client-agent-value",
      referer: "http://evil.test/page",
      "accept-language": "xx",
    };

    const socket = await openSocket(env.test.server.url, { headers: clientHeaders });
    sockets.push(socket);
    await socket.waitFor((frame) => frame.type === "welcome");
    const auth = await request(`${env.test.server.httpUrl}/push/auth`, { headers: clientHeaders });
    await auth.body.dump();

    assert.equal(auth.statusCode, 200);
    assert.equal(env.portalHeaders.length, 2);
    for (const headers of env.portalHeaders) {
      assert.equal(headers.cookie, "__ac=alice-session; lang=en");
      const names = Object.keys(headers).sort();
      assert.deepEqual(names, ["accept", "connection", "cookie", "host"]);
      assert.equal(headers.accept, "application/json");
      const text = JSON.stringify(headers);
      for (const value of Object.values(clientHeaders)) {
        if (value === "__ac=alice-session") continue;
        if (value === clientHeaders.cookie || value === clientHeaders.origin) continue;
        assert.ok(!text.includes(value), `portal received ${value}`);
      }
    }
  });
});

describe("trusted proxies", { timeout: 30_000 }, () => {
  /** Opens a socket from `localAddress` with `X-Forwarded-For: forwardedFor`. */
  async function connectVia(env: Setup, localAddress: string, forwardedFor: string) {
    const socket = await openSocket(env.test.server.url, {
      origin: env.portal.origin,
      cookie: "__ac=alice-session",
      headers: { "x-forwarded-for": forwardedFor },
      localAddress,
    });
    sockets.push(socket);
    await socket.waitFor((frame) => frame.type === "welcome");
    return socket;
  }

  it("limits by forwarded address", async () => {
    const env = await setup({ maxSocketsPerIp: 1, trustedProxies: ["127.0.0.11"] });
    await connectVia(env, "127.0.0.11", "198.51.100.1");
    await connectVia(env, "127.0.0.11", "198.51.100.2");

    const rejection = await rejectedUpgrade(
      env.test.server.url,
      {
        origin: env.portal.origin,
        cookie: "__ac=alice-session",
        "x-forwarded-for": "198.51.100.1",
      },
      "127.0.0.11",
    );

    assert.equal(rejection.status, 429);
    assert.equal(JSON.parse(rejection.body).code, "PATPUSH_TOO_MANY_SOCKETS");
    const line = env.test.logs.records().find((record) => record.msg === "auth rejected");
    assert.equal(line?.ip, "198.51.100.1");
  });

  it("ignores the header of others", async () => {
    const env = await setup({ maxSocketsPerIp: 1, trustedProxies: ["127.0.0.11"] });
    await connectVia(env, "127.0.0.12", "198.51.100.1");

    const rejection = await rejectedUpgrade(
      env.test.server.url,
      {
        origin: env.portal.origin,
        cookie: "__ac=alice-session",
        "x-forwarded-for": "198.51.100.3",
      },
      "127.0.0.12",
    );

    assert.equal(rejection.status, 429, "a forged header does not make a new client");
  });
});
