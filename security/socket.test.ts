/**
 * Hostile clients at the socket endpoint of a push server: forged or missing
 * Origins, missing, foreign or wrong cookies, a failing portal, an invalid
 * `last` id, socket and rate limits, bad inbound frames, a logout and a
 * revoked session. Each case runs against its own portal stub and push
 * server. It asserts the documented status or close code and how many
 * requests reached the portal. Neither the response body nor any log line
 * may show a cookie value or internal detail.
 */
import assert from "node:assert/strict";
import type { IncomingHttpHeaders, IncomingMessage, ServerResponse } from "node:http";
import { randomBytes } from "node:crypto";
import { after, describe, it } from "node:test";
import { request } from "undici";
import type { ServerConfigInput } from "../server/config.ts";
import {
  metricValue,
  openSocket,
  rejectedUpgrade,
  sessionResponder,
  SESSIONS,
  startPortalStub,
  startTestServer,
  type PortalStub,
  type TestServer,
  type TestSocket,
  type RawRejection,
} from "../server/test-support.ts";
import { assertNoInternalDetail, assertNoSecrets, type HostileCase } from "./support.ts";

const ORIGIN = "http://portal.test";
/** A session the portal accepts as alice. Its value must never show in a body or a log. */
const SESSION = `secret-session-${randomBytes(8).toString("hex")}`;
/** A session the portal does not know. */
const WRONG_SESSION = `wrong-session-${randomBytes(8).toString("hex")}`;
/** A cookie outside the allow-list, which must never reach the portal. */
const FOREIGN_COOKIE = `foreign-cookie-${randomBytes(8).toString("hex")}`;
const SECRETS = [SESSION, WRONG_SESSION, FOREIGN_COOKIE];
const VALID_COOKIE = `__ac=${SESSION}; tracking=${FOREIGN_COOKIE}`;

/** The response of the portal stub to every auth request. */
type PortalMode = "sessions" | "error" | "hang" | "not-json" | "no-user" | "redirect" | "revoke";

/** An upgrade with the given headers, after `before` sockets of alice from the same address. */
interface UpgradeAttack {
  kind: "upgrade";
  origin?: string;
  cookie?: string;
  query?: string;
  /** An `X-Forwarded-For` header, which only a trusted proxy may set. */
  forwardedFor?: string;
  portal?: PortalMode;
  config?: Partial<ServerConfigInput>;
  before?: number;
}

/** An open socket of alice that sends `frame`, or that meets a logout or a revalidation. */
interface SocketAttack {
  kind: "frame" | "logout" | "revalidate";
  frame?: string | Buffer;
  config?: Partial<ServerConfigInput>;
}

type Attack = UpgradeAttack | SocketAttack;

/** The rejection of an upgrade, and the number of auth requests the attack caused. */
interface RejectedUpgrade {
  status: number;
  code: string;
  portalRequests: number;
  retryAfter?: string;
}

/** The close of an open socket, and the metric series that counted it. */
interface ClosedSocket {
  closeCode: number;
  metric?: string;
}

type Expected = RejectedUpgrade | ClosedSocket;

const CASES: HostileCase<Attack, Expected>[] = [
  {
    name: "missing Origin",
    attack: { kind: "upgrade", cookie: VALID_COOKIE },
    expected: { status: 403, code: "PATPUSH_ORIGIN_REJECTED", portalRequests: 0 },
  },
  {
    name: "foreign Origin",
    attack: { kind: "upgrade", origin: "http://evil.test", cookie: VALID_COOKIE },
    expected: { status: 403, code: "PATPUSH_ORIGIN_REJECTED", portalRequests: 0 },
  },
  {
    name: "null Origin",
    attack: { kind: "upgrade", origin: "null", cookie: VALID_COOKIE },
    expected: { status: 403, code: "PATPUSH_ORIGIN_REJECTED", portalRequests: 0 },
  },
  {
    name: "Origin on another port",
    attack: { kind: "upgrade", origin: "http://portal.test:8080", cookie: VALID_COOKIE },
    expected: { status: 403, code: "PATPUSH_ORIGIN_REJECTED", portalRequests: 0 },
  },
  {
    name: "Origin with another scheme",
    attack: { kind: "upgrade", origin: "https://portal.test", cookie: VALID_COOKIE },
    expected: { status: 403, code: "PATPUSH_ORIGIN_REJECTED", portalRequests: 0 },
  },
  {
    name: "Origin as a suffix domain",
    attack: { kind: "upgrade", origin: "http://portal.test.evil.test", cookie: VALID_COOKIE },
    expected: { status: 403, code: "PATPUSH_ORIGIN_REJECTED", portalRequests: 0 },
  },
  {
    name: "no cookie",
    attack: { kind: "upgrade", origin: ORIGIN },
    expected: { status: 401, code: "PATPUSH_AUTH_MISSING", portalRequests: 0 },
  },
  {
    name: "only cookies outside the allow-list",
    attack: { kind: "upgrade", origin: ORIGIN, cookie: `session=${SESSION}; x=${FOREIGN_COOKIE}` },
    expected: { status: 401, code: "PATPUSH_AUTH_MISSING", portalRequests: 0 },
  },
  {
    name: "session cookie over maxCookieBytes",
    attack: { kind: "upgrade", origin: ORIGIN, cookie: `__ac=${"x".repeat(60_000)}` },
    expected: { status: 431, code: "PATPUSH_COOKIE_TOO_LARGE", portalRequests: 0 },
  },
  {
    name: "wrong session cookie",
    attack: { kind: "upgrade", origin: ORIGIN, cookie: `__ac=${WRONG_SESSION}` },
    expected: { status: 401, code: "PATPUSH_AUTH_REJECTED", portalRequests: 1 },
  },
  {
    name: "portal error 500",
    attack: { kind: "upgrade", origin: ORIGIN, cookie: VALID_COOKIE, portal: "error" },
    expected: { status: 503, code: "PATPUSH_AUTH_UNAVAILABLE", portalRequests: 1 },
  },
  {
    name: "portal timeout",
    attack: {
      kind: "upgrade",
      origin: ORIGIN,
      cookie: VALID_COOKIE,
      portal: "hang",
      config: { authTimeoutMs: 300 },
    },
    expected: { status: 503, code: "PATPUSH_AUTH_UNAVAILABLE", portalRequests: 1 },
  },
  {
    name: "portal body not JSON",
    attack: { kind: "upgrade", origin: ORIGIN, cookie: VALID_COOKIE, portal: "not-json" },
    expected: { status: 503, code: "PATPUSH_AUTH_UNAVAILABLE", portalRequests: 1 },
  },
  {
    name: "portal JSON without user",
    attack: { kind: "upgrade", origin: ORIGIN, cookie: VALID_COOKIE, portal: "no-user" },
    expected: { status: 503, code: "PATPUSH_AUTH_UNAVAILABLE", portalRequests: 1 },
  },
  {
    name: "portal redirect not followed",
    attack: { kind: "upgrade", origin: ORIGIN, cookie: VALID_COOKIE, portal: "redirect" },
    expected: { status: 503, code: "PATPUSH_AUTH_UNAVAILABLE", portalRequests: 1 },
  },
  {
    name: "invalid last id",
    attack: { kind: "upgrade", origin: ORIGIN, cookie: VALID_COOKIE, query: "last=../../etc" },
    expected: { status: 400, code: "PATPUSH_LAST_ID_INVALID", portalRequests: 0 },
  },
  {
    name: "sockets per user past the limit",
    attack: {
      kind: "upgrade",
      origin: ORIGIN,
      cookie: VALID_COOKIE,
      config: { maxSocketsPerUser: 2 },
      before: 2,
    },
    // The cache returns the session, so the rejected upgrade sends no request to the portal.
    expected: { status: 429, code: "PATPUSH_TOO_MANY_SOCKETS", portalRequests: 0 },
  },
  {
    name: "sockets per address past the limit",
    attack: {
      kind: "upgrade",
      origin: ORIGIN,
      cookie: VALID_COOKIE,
      config: { maxSocketsPerIp: 2, authCacheTtlMs: 0 },
      before: 2,
    },
    expected: { status: 429, code: "PATPUSH_TOO_MANY_SOCKETS", portalRequests: 0 },
  },
  {
    name: "forged X-Forwarded-For past the address limit",
    attack: {
      kind: "upgrade",
      origin: ORIGIN,
      cookie: VALID_COOKIE,
      forwardedFor: "198.51.100.77",
      config: { maxSocketsPerIp: 2 },
      before: 2,
    },
    expected: { status: 429, code: "PATPUSH_TOO_MANY_SOCKETS", portalRequests: 0 },
  },
  {
    name: "upgrades per second past the burst",
    attack: {
      kind: "upgrade",
      origin: ORIGIN,
      cookie: VALID_COOKIE,
      config: { upgradesPerIpPerSecond: 2, authCacheTtlMs: 0 },
      before: 2,
    },
    expected: {
      status: 429,
      code: "PATPUSH_RATE_LIMITED",
      portalRequests: 0,
      retryAfter: "1",
    },
  },
  {
    name: "inbound frame over maxPayloadBytes",
    attack: { kind: "frame", frame: "x".repeat(2048), config: { maxPayloadBytes: 1024 } },
    expected: {
      closeCode: 1006,
      metric: 'patpush_inbound_frames_rejected_total{reason="too_large"}',
    },
  },
  {
    name: "binary inbound frame",
    attack: { kind: "frame", frame: Buffer.from([0, 159, 146, 150]) },
    expected: { closeCode: 4002, metric: 'patpush_inbound_frames_rejected_total{reason="binary"}' },
  },
  {
    name: "logout of the user",
    attack: { kind: "logout" },
    expected: { closeCode: 4001, metric: "patpush_logout_closes_total" },
  },
  {
    name: "session revoked at the portal",
    attack: { kind: "revalidate", config: { revalidateIntervalMs: 1000 } },
    expected: {
      closeCode: 4001,
      metric: 'patpush_revalidation_closes_total{reason="revoked"}',
    },
  },
];

const cleanups: (() => Promise<void>)[] = [];
after(async () => {
  for (const cleanup of cleanups.reverse()) await cleanup();
});

/** A portal stub whose response follows `mode`, and the headers of every request it got. */
interface Portal {
  stub: PortalStub;
  headers: IncomingHttpHeaders[];
  setMode(mode: PortalMode): void;
}

async function startPortal(initial: PortalMode): Promise<Portal> {
  let mode = initial;
  const headers: IncomingHttpHeaders[] = [];
  const sessions = sessionResponder({ ...SESSIONS, [SESSION]: { user: "alice", channels: [] } });
  const respond = (req: IncomingMessage, res: ServerResponse): void => {
    headers.push(req.headers);
    if (mode === "sessions") sessions(req, res);
    else if (mode === "error") res.writeHead(500).end("Traceback: /srv/portal/auth.py line 3");
    else if (mode === "not-json") res.writeHead(200).end("<html>login</html>");
    else if (mode === "no-user") res.writeHead(200).end('{"channels":[]}');
    else if (mode === "redirect") res.writeHead(302, { location: "/login" }).end();
    else if (mode === "revoke") res.writeHead(401).end();
    // "hang" never responds, so the push server's authTimeoutMs ends the request.
  };
  const stub = await startPortalStub(respond);
  cleanups.push(() => stub.close());
  return { stub, headers, setMode: (next) => (mode = next) };
}

async function startServer(portal: Portal, config: Partial<ServerConfigInput> = {}) {
  const test = await startTestServer({
    authUrl: portal.stub.authUrl,
    allowedOrigins: [ORIGIN],
    ...config,
  });
  cleanups.push(() => test.close());
  return test;
}

async function openAlice(test: TestServer): Promise<TestSocket> {
  const socket = await openSocket(test.server.url, { origin: ORIGIN, cookie: VALID_COOKIE });
  cleanups.push(async () => socket.ws.terminate());
  await socket.waitFor((frame) => frame.type === "welcome");
  return socket;
}

/** Sends the upgrade of `attack` and resolves with the HTTP response that rejects it. */
function upgradeRejection(url: string, attack: UpgradeAttack): Promise<RawRejection> {
  const headers: Record<string, string> = {};
  if (attack.origin !== undefined) headers.origin = attack.origin;
  if (attack.cookie !== undefined) headers.cookie = attack.cookie;
  if (attack.forwardedFor !== undefined) headers["x-forwarded-for"] = attack.forwardedFor;
  const target = attack.query === undefined ? url : `${url}?${attack.query}`;
  return rejectedUpgrade(target, headers);
}

async function metrics(test: TestServer): Promise<string> {
  return (await request(`${test.server.httpUrl}/metrics`)).body.text();
}

async function runUpgrade(attack: UpgradeAttack, expected: RejectedUpgrade): Promise<void> {
  const portal = await startPortal("sessions");
  const test = await startServer(portal, attack.config);
  for (let i = 0; i < (attack.before ?? 0); i += 1) await openAlice(test);
  portal.setMode(attack.portal ?? "sessions");
  const requestsBefore = portal.headers.length;

  const response = await upgradeRejection(test.server.url, attack);

  assert.equal(response.status, expected.status);
  assert.equal(JSON.parse(response.body).code, expected.code);
  assert.equal(portal.headers.length - requestsBefore, expected.portalRequests, "portal requests");
  assert.equal(response.headers["retry-after"], expected.retryAfter);
  assertNoSecrets(response.body, SECRETS, "response body");
  assertNoInternalDetail(response.body, "response body");
  assert.doesNotMatch(response.body, /srv\/portal|Traceback|127\.0\.0\.1/);
  for (const headers of portal.headers) {
    assertNoSecrets(JSON.stringify(headers), [FOREIGN_COOKIE], "portal request");
  }
  assertNoSecrets(test.logs.text(), SECRETS, "log");
  const rejected = await metrics(test);
  assert.ok(
    rejected.includes("patpush_upgrades_rejected_total{reason="),
    "rejection metric rendered",
  );
}

async function runSocket(attack: SocketAttack, expected: ClosedSocket): Promise<void> {
  const portal = await startPortal("sessions");
  const test = await startServer(portal, attack.config);
  const socket = await openAlice(test);

  if (attack.kind === "frame") socket.ws.send(attack.frame ?? "");
  else if (attack.kind === "logout") await test.bus.publish({ user: "alice", logout: true });
  else portal.setMode("revoke");

  const closed = await socket.closed;
  assert.equal(closed.code, expected.closeCode);
  assert.deepEqual(
    socket.frames.map((frame) => frame.type),
    ["welcome"],
    "the socket received nothing but its welcome",
  );
  if (expected.metric !== undefined) {
    const text = await metrics(test);
    assert.equal(metricValue(text, expected.metric), 1, expected.metric);
  }
  // The upgrade sends one auth request, and a revalidation sends one more.
  const portalRequests = attack.kind === "revalidate" ? 2 : 1;
  assert.equal(portal.headers.length, portalRequests, "portal requests");
  assertNoSecrets(test.logs.text(), SECRETS, "log");
  assertNoSecrets(closed.reason, SECRETS, "close reason");
}

describe("socket security table", { timeout: 60_000 }, () => {
  it("has at least 14 cases", () => {
    assert.ok(CASES.length >= 14);
    assert.equal(new Set(CASES.map((c) => c.name)).size, CASES.length, "names are unique");
  });

  for (const { name, attack, expected } of CASES) {
    it(name, async () => {
      if (attack.kind === "upgrade") await runUpgrade(attack, expected as RejectedUpgrade);
      else await runSocket(attack, expected as ClosedSocket);
    });
  }
});
