import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { Redis } from "ioredis";
import WebSocket from "ws";
import { freePort } from "../../common/free-port.ts";
import { startRedisServer, type RedisTestServer } from "../../common/redis-test-server.ts";
import {
  CHANNEL_RECIPIENT,
  message,
  PEER_NAMES,
  PEERS,
  startPeer,
  userRecipient,
  type PeerName,
} from "../lib/peers.ts";
import { startPortalStub, type PortalStub } from "../lib/portal-stub.ts";
import type { PinnedProcess } from "../lib/processes.ts";

const WAIT_MS = 5_000;

/** A test socket that collects the `n` of every message it receives. */
interface TestSocket {
  received: number[];
  /** Resolves once the server can deliver to the socket; rejects with the reason it cannot. */
  ready: Promise<void>;
  waitFor(n: number): Promise<void>;
  close(): void;
}

/** Returns the `data.n` of a patpush or peer message frame, or undefined for other frames. */
function plainMessageN(text: string): number | undefined {
  const frame = JSON.parse(text) as { type?: string; data?: { n?: number } };
  if (frame.type !== undefined && frame.type !== "message") return undefined;
  return frame.data?.n;
}

/**
 * Connects like a browser (Origin and Cookie) and speaks the peer's
 * protocol: plain frames, or Engine.IO v4 with the Socket.IO connect.
 */
function openSocket(name: PeerName, port: number, cookie: string, origin: string): TestSocket {
  const peer = PEERS[name];
  const ws = new WebSocket(peer.socketUrl(port), { headers: { cookie, origin } });
  const received: number[] = [];
  const waiters: Array<() => void> = [];
  const record = (n: number | undefined): void => {
    if (n === undefined) return;
    received.push(n);
    for (const wake of waiters.splice(0)) wake();
  };

  const ready = new Promise<void>((resolve, reject) => {
    ws.once("unexpected-response", (_request, response) => {
      reject(new Error(`upgrade failed with ${response.statusCode}`));
      ws.terminate();
    });
    ws.once("error", reject);
    ws.on("message", (raw) => {
      const text = raw.toString();
      if (peer.protocol === "plain") {
        // patpush's first frame is the welcome; the peers send none.
        resolve();
        return record(plainMessageN(text));
      }
      if (text.startsWith("0")) ws.send("40");
      else if (text.startsWith("40")) resolve();
      else if (text.startsWith("44")) reject(new Error(`connect_error ${text.slice(2)}`));
      else if (text === "2") ws.send("3");
      else if (text.startsWith("42")) {
        const [, payload] = JSON.parse(text.slice(2)) as [string, { data?: { n?: number } }];
        record(payload.data?.n);
      }
    });
    // The peers send nothing on open, so for them the open itself means ready.
    if (peer.protocol === "plain" && name !== "patpush") ws.once("open", () => resolve());
  });
  ready.catch(() => {});

  const waitFor = async (n: number): Promise<void> => {
    const deadline = Date.now() + WAIT_MS;
    while (!received.includes(n)) {
      const remaining = deadline - Date.now();
      if (remaining <= 0) {
        throw new Error(`message ${n} did not arrive (got ${received.join(",")})`);
      }
      await new Promise<void>((wake) => {
        const timer = setTimeout(wake, remaining);
        waiters.push(() => {
          clearTimeout(timer);
          wake();
        });
      });
    }
  };

  return { received, ready, waitFor, close: () => ws.terminate() };
}

let redisServer: RedisTestServer;
let redis: Redis;
let stub: PortalStub;

before(async () => {
  redisServer = await startRedisServer();
  redis = new Redis(redisServer.url);
  stub = await startPortalStub();
});

after(async () => {
  redis.disconnect();
  await stub.close();
  await redisServer.stop();
});

for (const name of PEER_NAMES) {
  describe(`peer ${name}`, () => {
    let server: PinnedProcess;
    let port: number;
    const sockets: TestSocket[] = [];

    before(async () => {
      port = await freePort();
      const { authUrl, origin } = stub;
      const redisUrl = redisServer.url;
      server = await startPeer(name, { port, authUrl, origin, redisUrl, cpus: "0-1" });
    });

    after(async () => {
      for (const socket of sockets) socket.close();
      await server.stop();
    });

    it("delivers unicast and broadcast", async () => {
      const alice = openSocket(name, port, "__ac=u1-s1", stub.origin);
      const bob = openSocket(name, port, "theme=dark; __ac=u2-s1", stub.origin);
      sockets.push(alice, bob);
      await Promise.all([alice.ready, bob.ready]);

      const t = Number(process.hrtime.bigint() / 1000n);
      await PEERS[name].publish(redis, [
        message(userRecipient(1), t, 1),
        message(CHANNEL_RECIPIENT, t, 2),
        message(userRecipient(2), t, 3),
        message(CHANNEL_RECIPIENT, t, 4),
      ]);

      await alice.waitFor(4);
      await bob.waitFor(4);
      assert.deepEqual(alice.received, [1, 2, 4]);
      assert.deepEqual(bob.received, [2, 3, 4]);
    });

    it("rejects an invalid cookie", async () => {
      const rejectedBefore = stub.stats().rejected;
      const intruder = openSocket(name, port, "__ac=admin", stub.origin);
      sockets.push(intruder);
      const expected = PEERS[name].protocol === "socketio" ? /connect_error/ : /401/;
      await assert.rejects(intruder.ready, expected);
      assert.equal(stub.stats().rejected, rejectedBefore + 1);
    });
  });
}
