/**
 * Randomized isolation check: many users with random channel grants hold
 * sockets on two push servers that share one Redis, and thousands of random
 * done messages go to users and channels, stored (XADD) and live (PUBLISH).
 * No socket may receive a message for another user or for a channel it was
 * not granted, and every socket must receive every message meant for it.
 * Set PATPUSH_SEED to repeat a run; every run prints its seed.
 */
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { after, before, describe, it } from "node:test";
import { Redis } from "ioredis";
import WebSocket from "ws";
import { startRedisServer, type RedisTestServer } from "../common/redis-test-server.ts";
import { parseServerFrame, type MessageFrame, type WelcomeFrame } from "../protocol/frames.ts";
import type { MessageId } from "../protocol/message-id.ts";
import type { DoneMessage } from "../protocol/message.ts";
import type { AuthIdentity } from "../server/auth.ts";
import { doneKey, publishDoneMessage } from "../server/publish.ts";
import { RedisBus } from "../server/redis-bus.ts";
import {
  sessionResponder,
  startPortalStub,
  startTestServerWith,
  type PortalStub,
  type TestServer,
} from "../server/test-support.ts";
import { createRandom, testSeed } from "./random.ts";

const SEED = testSeed();
const USER_COUNT = 30;
const CHANNEL_COUNT = 10;
/** Users that messages name but that hold no socket. */
const ABSENT_USER_COUNT = 5;
const LIVE_PHASE_MESSAGES = 2400;
const RESUME_PHASE_MESSAGES = 600;
/** Sockets closed before the resume phase and reopened with their last id after it. */
const RESUMING_SOCKETS = 15;
const DELIVERY_TIMEOUT_MS = 20_000;
/** Attempts to open one socket when the server closes it before its welcome. */
const MAX_OPEN_ATTEMPTS = 3;

/** Data of every test message: a sequence number and the recipient it was published to. */
interface Tag {
  seq: number;
  to: string;
}

/** One socket of the test, by the user and the session it authenticated with. */
class TestClient {
  readonly received: Array<{ frame: MessageFrame; tag: Tag }> = [];
  readonly foreign: string[] = [];
  /** Closes and errors after the welcome that the test did not cause, which fail the test. */
  readonly events: string[] = [];
  /** Times the socket was opened again because the server closed it before its welcome. */
  reopened = 0;
  welcome: WelcomeFrame | undefined;
  #ws: WebSocket | undefined;

  constructor(
    readonly index: number,
    readonly user: string,
    readonly channels: ReadonlySet<string>,
    readonly session: string,
    readonly server: TestServer<RedisBus>,
    readonly origin: string,
  ) {}

  /** Recipients this socket may receive: its user and its granted channels. */
  accepts(to: string): boolean {
    return to === `user:${this.user}` || this.channels.has(to.slice("channel:".length));
  }

  /** Id of the last stored message this socket received, or its welcome id. */
  lastId(): MessageId {
    const stored = this.received.filter((entry) => entry.frame.live !== true);
    return stored.at(-1)?.frame.id ?? this.welcome!.id;
  }

  /**
   * Opens the socket from its own loopback address, so the per-address
   * upgrade limits of the push server do not apply across clients. Like the
   * browser client, it opens the socket again with the same `last` when the
   * server closed it before its welcome (see docs/protocol.md).
   */
  async open(last?: MessageId): Promise<void> {
    for (let attempt = 1; ; attempt++) {
      if (await this.#connect(last)) return;
      if (attempt === MAX_OPEN_ATTEMPTS) {
        throw new Error(`socket ${this.index} closed before its welcome ${attempt} times`);
      }
      this.reopened += 1;
    }
  }

  /** Opens one socket. Resolves with true on its welcome, false when it closed before it. */
  #connect(last: MessageId | undefined): Promise<boolean> {
    const query = last === undefined ? "" : `?last=${encodeURIComponent(last)}`;
    const ws = new WebSocket(`${this.server.server.url}${query}`, {
      origin: this.origin,
      headers: { cookie: `__ac=${this.session}` },
      localAddress: `127.0.${1 + Math.floor(this.index / 200)}.${2 + (this.index % 200)}`,
    });
    this.#ws = ws;
    let welcomed = false;
    return new Promise<boolean>((resolve, reject) => {
      ws.once("error", reject);
      ws.once("unexpected-response", (_req, res) =>
        reject(new Error(`socket ${this.index} rejected with ${res.statusCode}`)),
      );
      ws.on("close", (code, reason) => {
        if (!welcomed) {
          resolve(false);
        } else if (this.#ws === ws) {
          this.events.push(`closed ${code} "${String(reason)}" at ${new Date().toISOString()}`);
        }
      });
      ws.on("error", (error) => this.events.push(`error ${error.message}`));
      ws.on("message", (data, isBinary) => {
        const frame = isBinary ? undefined : parseServerFrame(String(data));
        if (frame === undefined) {
          this.foreign.push(`unparsable frame: ${String(data).slice(0, 200)}`);
        } else if (frame.type === "welcome") {
          welcomed = true;
          this.welcome = frame;
          resolve(true);
        } else {
          this.#record(frame);
        }
      });
    });
  }

  #record(frame: MessageFrame): void {
    const tag = frame.data as Tag | undefined;
    if (tag === undefined || typeof tag.seq !== "number" || typeof tag.to !== "string") {
      this.foreign.push(`message without a tag: ${JSON.stringify(frame).slice(0, 200)}`);
      return;
    }
    if (!this.accepts(tag.to)) this.foreign.push(`message ${tag.seq} for ${tag.to}`);
    if (frame.channel !== undefined && `channel:${frame.channel}` !== tag.to) {
      this.foreign.push(`message ${tag.seq} for ${tag.to} came as channel ${frame.channel}`);
    }
    this.received.push({ frame, tag });
  }

  async close(): Promise<void> {
    const ws = this.#ws;
    if (ws === undefined || ws.readyState === WebSocket.CLOSED) return;
    this.#ws = undefined;
    const closed = new Promise((resolve) => ws.once("close", resolve));
    ws.close();
    await closed;
  }

  terminate(): void {
    this.#ws?.terminate();
  }
}

/** A message the test publishes, and whether it goes live (PUBLISH) or stored (XADD). */
interface Planned {
  message: DoneMessage;
  tag: Tag;
  live: boolean;
}

describe("isolation", () => {
  const { next: random, int, pick } = createRandom(SEED);
  const keyPrefix = `iso-${randomUUID().slice(0, 8)}:`;
  const clients: TestClient[] = [];
  const users: string[] = [];
  const channels: string[] = [];
  let redisServer: RedisTestServer;
  let redis: Redis;
  let portal: PortalStub;
  const servers: TestServer<RedisBus>[] = [];
  let seq = 0;

  before(async () => {
    console.log(`isolation seed ${SEED} (set PATPUSH_SEED=${SEED} to repeat this run)`);
    redisServer = await startRedisServer();
    redis = new Redis(redisServer.url);

    for (let c = 0; c < CHANNEL_COUNT; c++) channels.push(`channel-${c}`);
    const sessions: Record<string, AuthIdentity> = {};
    const grants = new Map<string, string[]>();
    for (let u = 0; u < USER_COUNT; u++) {
      const user = `user-${u}`;
      users.push(user);
      const granted = channels.filter(() => random() < 0.3);
      grants.set(user, granted);
      const socketCount = random() < 0.5 ? 2 : 3;
      for (let s = 0; s < socketCount; s++) {
        sessions[`${user}-session-${s}`] = { user, channels: granted };
      }
    }
    portal = await startPortalStub(sessionResponder(sessions));

    for (let i = 0; i < 2; i++) {
      const bus = new RedisBus({ redisUrl: redisServer.url, keyPrefix });
      servers.push(
        await startTestServerWith(
          { authUrl: portal.authUrl, recoveryMaxMessages: 10_000, keyPrefix },
          bus,
        ),
      );
    }

    for (const [session, identity] of Object.entries(sessions)) {
      const client = new TestClient(
        clients.length,
        identity.user,
        new Set(grants.get(identity.user)),
        session,
        pick(servers),
        portal.origin,
      );
      clients.push(client);
    }
    // A bounded pace: 25 upgrades at a time, each from its own address.
    for (let i = 0; i < clients.length; i += 25) {
      await Promise.all(clients.slice(i, i + 25).map((client) => client.open()));
    }
  });

  after(() => {
    const reopened = clients.reduce((sum, client) => sum + client.reopened, 0);
    console.log(`isolation: ${reopened} sockets opened again after a close before their welcome`);
  });

  after(async () => {
    for (const client of clients) client.terminate();
    for (const server of servers) await server.close();
    await portal?.close();
    redis?.disconnect();
    await redisServer?.stop();
  });

  /** Returns a random message to a user (some without sockets) or to a channel. */
  function planMessage(allowLive: boolean): Planned {
    seq += 1;
    const toChannel = random() < 0.4;
    const absent = random() < 0.05;
    const to = toChannel
      ? `channel:${pick(channels)}`
      : `user:${absent ? `absent-${int(ABSENT_USER_COUNT)}` : pick(users)}`;
    const tag: Tag = { seq, to };
    const recipient = toChannel
      ? { channel: to.slice("channel:".length) }
      : { user: to.slice("user:".length) };
    const message: DoneMessage = { ...recipient, event: "isolation-check", data: tag };
    if (random() < 0.3) message.html = `<p id="m${seq}">message ${seq}</p>`;
    return { message, tag, live: allowLive && random() < 0.5 };
  }

  /** Publishes messages in pipelined batches, stored ones with XADD, live ones with PUBLISH. */
  async function publishAll(planned: readonly Planned[]): Promise<void> {
    const channel = doneKey(keyPrefix);
    for (let i = 0; i < planned.length; i += 200) {
      const batch = planned.slice(i, i + 200);
      await Promise.all(
        batch.map((entry) =>
          entry.live
            ? redis.publish(channel, JSON.stringify(entry.message))
            : publishDoneMessage(redis, entry.message, { keyPrefix }),
        ),
      );
    }
  }

  /** Waits until each client has received every expected seq, or the timeout passes. */
  async function waitForDelivery(expected: Map<TestClient, Set<number>>): Promise<void> {
    const deadline = Date.now() + DELIVERY_TIMEOUT_MS;
    const complete = () =>
      [...expected].every(([client, seqs]) => {
        const got = new Set(client.received.map((entry) => entry.tag.seq));
        return [...seqs].every((value) => got.has(value));
      });
    while (!complete() && Date.now() < deadline) {
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  }

  /** Asserts that each client received the expected seqs, each once, and nothing foreign. */
  function assertDeliveries(expected: Map<TestClient, Set<number>>, phase: string): void {
    for (const client of clients) {
      assert.deepEqual(
        client.foreign,
        [],
        `seed ${SEED}: socket ${client.index} of ${client.user} received foreign messages`,
      );
      assert.deepEqual(
        client.events,
        [],
        `seed ${SEED}: socket ${client.index} of ${client.user} closed unexpectedly; ` +
          `server log of the socket:\n${serverLog(client)}`,
      );
      const seqs = client.received.map((entry) => entry.tag.seq);
      const duplicates = seqs.filter((value, i) => seqs.indexOf(value) !== i);
      assert.deepEqual(duplicates, [], `seed ${SEED}: socket ${client.index} got duplicates`);
    }
    for (const [client, want] of expected) {
      const got = new Set(client.received.map((entry) => entry.tag.seq));
      const missing = [...want].filter((value) => !got.has(value));
      assert.deepEqual(
        missing.slice(0, 20),
        [],
        `seed ${SEED}, ${phase}: socket ${client.index} of ${client.user} missed ` +
          `${missing.length} of ${want.size} messages; server log of the socket:\n` +
          serverLog(client),
      );
    }
  }

  /** Returns the server's log lines about `client`'s socket, one per line. */
  function serverLog(client: TestClient): string {
    const conn = client.welcome?.conn;
    return client.server.logs
      .records()
      .filter((record) => conn !== undefined && record.conn === conn)
      .map((record) => JSON.stringify(record))
      .join("\n");
  }

  /** Returns the seqs of `planned` that `client` should receive. */
  function expectedFor(client: TestClient, planned: readonly Planned[]): Set<number> {
    return new Set(planned.filter((entry) => client.accepts(entry.tag.to)).map((e) => e.tag.seq));
  }

  it("delivers only to the right sockets", { timeout: 60_000 }, async () => {
    // Phase 1: every socket is open, messages are stored and live.
    const livePhase = Array.from({ length: LIVE_PHASE_MESSAGES }, () => planMessage(true));
    await publishAll(livePhase);
    const expected = new Map(clients.map((client) => [client, expectedFor(client, livePhase)]));
    await waitForDelivery(expected);
    assertDeliveries(expected, "live phase");
    const totalExpected = [...expected.values()].reduce((sum, seqs) => sum + seqs.size, 0);
    assert.ok(totalExpected > LIVE_PHASE_MESSAGES, `only ${totalExpected} deliveries expected`);

    // Phase 2: some sockets are closed while stored messages go out, then resume with ?last=.
    const resuming = [...clients].sort(() => random() - 0.5).slice(0, RESUMING_SOCKETS);
    const lastIds = new Map(resuming.map((client) => [client, client.lastId()]));
    await Promise.all(resuming.map((client) => client.close()));
    const resumePhase = Array.from({ length: RESUME_PHASE_MESSAGES }, () => planMessage(false));
    await publishAll(resumePhase);
    await Promise.all(resuming.map((client) => client.open(lastIds.get(client))));
    for (const client of resuming) {
      assert.equal(client.welcome?.recovery, "complete", `seed ${SEED}: socket ${client.index}`);
    }

    // Resume-phase messages are all stored, so a resuming socket gets them by replay.
    const all = [...livePhase, ...resumePhase];
    for (const client of clients) expected.set(client, expectedFor(client, all));
    await waitForDelivery(expected);
    assertDeliveries(expected, "resume phase");
  });
});
