/**
 * Fuzzes the producer HTTP API with a valid key: random JSON (deep nesting,
 * huge numbers, unicode, `__proto__` and `constructor` keys, wrong types)
 * and broken bodies at POST /api/publish and POST /api/tasks. No request may
 * get a 5xx or an internal detail in its body, a rejected request must
 * leave Redis unchanged, an accepted message must be stored as validated,
 * and Object.prototype must stay clean. Set PATPUSH_SEED to repeat a run;
 * every run prints its seed.
 */
import assert from "node:assert/strict";
import { randomBytes, randomUUID } from "node:crypto";
import { dirname, join } from "node:path";
import { after, before, describe, it } from "node:test";
import { fileURLToPath } from "node:url";
import { Redis } from "ioredis";
import { startRedisServer, type RedisTestServer } from "../common/redis-test-server.ts";
import { MAX_DATA_DEPTH } from "../protocol/message.ts";
import { doneKey, MESSAGE_FIELD } from "../server/publish.ts";
import { RedisBus } from "../server/redis-bus.ts";
import { startPushServer, type PushServer } from "../server/push-server.ts";
import { captureLogs, startPortalStub, type PortalStub } from "../server/test-support.ts";
import { BullmqQueue } from "../tasks/bullmq-queue.ts";
import { createRandom, testSeed } from "./random.ts";
import { assertNoInternalDetail } from "./support.ts";

const PROJECT_ROOT = join(dirname(fileURLToPath(import.meta.url)), "..");
const SEED = testSeed();
const REQUESTS_PER_ROUTE = 1000;
const API_KEY = `api-${randomBytes(24).toString("hex")}`;
const ENCRYPTION_KEY = randomBytes(32).toString("hex");
/** Keys of a done message as the schema defines them; a stored message has no other. */
const MESSAGE_KEYS = new Set(["user", "channel", "html", "event", "data", "pushId", "logout"]);
/** Text that marks an internal detail in an error body: stacks, paths, Redis and JS errors. */
const INTERNAL_DETAIL = new RegExp(
  [
    "\\n\\s+at ",
    "node_modules",
    "file://",
    "\\.ts:\\d+",
    "ReplyError|WRONGTYPE|ERR |ECONN",
    "TypeError|RangeError|ReferenceError|SyntaxError|Maximum call stack",
    "bullmq|ioredis|zod",
  ].join("|"),
  "i",
);

const { next: random, int, pick, bytes: randomBuffer } = createRandom(SEED);

/** JSON texts of numbers that parse to odd values: huge, tiny, Infinity, past 2^53. */
const ODD_NUMBERS = [
  "1e308",
  "-1e308",
  "1e400",
  "-1e400",
  "5e-324",
  "-0",
  "123456789012345678901234567890",
  "9007199254740993",
  "0.1",
  "1E+2",
];

/** Strings with characters that often break parsers, logs and headers. */
const ODD_STRINGS = [
  "",
  " ",
  "\u0000",
  "\r\nX-Injected: 1",
  "\ud800",
  "\udfff\ud800",
  "\u202eevil",
  "\u200b",
  "😀🔥",
  "漢字",
  "<script>alert(1)</script>",
  "javascript:alert(1)",
  "../../etc/passwd",
  "%00%0d%0a",
  "${7*7}",
  "__proto__",
  "constructor",
  "prototype",
  "x".repeat(5000),
];

/** Keys that pollute a prototype when code merges objects carelessly. */
const POLLUTING_KEYS = ["__proto__", "constructor", "prototype"];

/** Returns random JSON text of at most about `depth` levels. */
function randomJson(depth: number): string {
  const choice = depth <= 0 ? int(5) : int(8);
  switch (choice) {
    case 0:
      return pick(ODD_NUMBERS);
    case 1:
      return JSON.stringify(pick(ODD_STRINGS));
    case 2:
      return pick(["true", "false", "null"]);
    case 3:
      return String(int(1_000_000) - 500_000);
    case 4:
      return JSON.stringify(randomBuffer(1 + int(30)).toString("base64"));
    case 5:
      return `[${Array.from({ length: int(5) }, () => randomJson(depth - 1)).join(",")}]`;
    default: {
      const keys = Array.from({ length: int(6) }, () =>
        random() < 0.3 ? pick(POLLUTING_KEYS) : pick([...MESSAGE_KEYS, "url", "cookies", "x"]),
      );
      const entries = keys.map((key) => `${JSON.stringify(key)}:${randomJson(depth - 1)}`);
      return `{${entries.join(",")}}`;
    }
  }
}

/** Returns deeply nested JSON text: arrays, objects or a mix, `depth` levels deep. */
function nestedJson(depth: number): string {
  const kind = int(3);
  let text = "1";
  for (let i = 0; i < depth; i++) {
    const asObject = kind === 1 || (kind === 2 && i % 2 === 0);
    text = asObject ? `{"data":${text}}` : `[${text}]`;
  }
  return text;
}

/**
 * Returns `base` with one field replaced by random JSON, a polluting key, or
 * removed. The fields live in a Map, because assigning `__proto__` on a plain
 * object would change its prototype instead of adding the key.
 */
function mutate(base: Record<string, string>): string {
  const fields = new Map(Object.entries(base));
  const keys = [...fields.keys()];
  const action = int(4);
  if (action === 0) {
    fields.set(pick(keys), randomJson(3));
  } else if (action === 1) {
    const key = pick(POLLUTING_KEYS);
    const target = pick([undefined, ...keys]);
    const pollution = `{${JSON.stringify(key)}:{"polluted":true,"prototype":{"polluted":true}}}`;
    if (target === undefined) fields.set(key, pollution);
    else fields.set(target, pollution);
  } else if (action === 2) {
    fields.delete(pick(keys));
  } else {
    fields.set(pick(["extra", "__proto__", "toString", "hasOwnProperty"]), randomJson(2));
  }
  return jsonObjectText(fields);
}

/** Returns a request body for a route: valid, mutated, random, nested or broken. */
function randomBody(valid: () => Record<string, string>): Buffer {
  const kind = int(10);
  if (kind <= 1) return Buffer.from(validText(valid()));
  if (kind <= 5) return Buffer.from(mutate(valid()));
  if (kind === 6) return Buffer.from(randomJson(6));
  if (kind === 7) return Buffer.from(nestedJson(pick([100, 1000, 10_000, 60_000])));
  if (kind === 8) return randomBuffer(1 + int(2000));
  const text = validText(valid());
  return Buffer.from(
    pick([
      text.slice(0, int(text.length)),
      `\ufeff${text}`,
      `${text}${text}`,
      `${text} trailing`,
      "",
      "null",
      "[]",
      '"text"',
    ]),
  );
}

function validText(fields: Record<string, string>): string {
  return jsonObjectText(new Map(Object.entries(fields)));
}

/** Returns the JSON text of an object whose values are JSON texts already. */
function jsonObjectText(fields: ReadonlyMap<string, string>): string {
  const members = [...fields].map(([key, value]) => `${JSON.stringify(key)}:${value}`);
  return `{${members.join(",")}}`;
}

/** Returns true when no prototype of a built-in got an own property called "polluted". */
function prototypesClean(): boolean {
  const prototypes = [Object.prototype, Array.prototype, Function.prototype, String.prototype];
  const ownKeyFree = prototypes.every((proto) => !Object.hasOwn(proto, "polluted"));
  return ownKeyFree && ({} as { polluted?: unknown }).polluted === undefined;
}

describe("api fuzzing", () => {
  const keyPrefix = `apifuzz-${randomUUID().slice(0, 8)}:`;
  let redisServer: RedisTestServer;
  let redis: Redis;
  let portal: PortalStub;
  let server: PushServer;
  let bus: RedisBus;
  let queue: BullmqQueue;
  const objectKeysBefore = Object.getOwnPropertyNames(Object.prototype).sort();

  before(async () => {
    console.log(`api fuzz seed ${SEED} (set PATPUSH_SEED=${SEED} to repeat this run)`);
    redisServer = await startRedisServer();
    redis = new Redis(redisServer.url);
    portal = await startPortalStub();
    const taskConfig = {
      allowedOrigins: [portal.origin],
      encryptionKey: ENCRYPTION_KEY,
      keyPrefix,
    };
    const logger = captureLogs("warn").logger;
    queue = new BullmqQueue({ redisUrl: redisServer.url, config: taskConfig, logger });
    bus = new RedisBus({ redisUrl: redisServer.url, keyPrefix });
    server = await startPushServer({
      config: { port: 0, authUrl: portal.authUrl, apiKey: API_KEY, keyPrefix },
      bus,
      logger,
      queue,
      taskConfig,
    });
  });

  after(async () => {
    await server?.close();
    await bus?.close();
    await queue?.close();
    await portal?.close();
    redis?.disconnect();
    await redisServer?.stop();
  });

  /** Returns the size of the Redis database and the length of the done stream. */
  async function redisState(): Promise<{ keys: number; stream: number }> {
    const [keys, stream] = await Promise.all([redis.dbsize(), redis.xlen(doneKey(keyPrefix))]);
    return { keys, stream };
  }

  async function post(route: string, body: Buffer): Promise<{ status: number; text: string }> {
    const response = await fetch(`${server.httpUrl}/api/${route}`, {
      method: "POST",
      headers: { authorization: `Bearer ${API_KEY}`, "content-type": "application/json" },
      body: new Uint8Array(body),
    });
    return { status: response.status, text: await response.text() };
  }

  /**
   * Sends `fixedBodies` (each with its expected status), then random ones,
   * to `route`, and checks each response and the Redis state after it.
   */
  async function fuzzRoute(
    route: "publish" | "tasks",
    valid: () => Record<string, string>,
    fixedBodies: ReadonlyArray<readonly [body: string, status: number]>,
  ): Promise<Map<number, number>> {
    const statuses = new Map<number, number>();
    const total = fixedBodies.length + REQUESTS_PER_ROUTE;
    for (let n = 0; n < total; n++) {
      const fixed = fixedBodies[n];
      const body = fixed === undefined ? randomBody(valid) : Buffer.from(fixed[0]);
      const label = `seed ${SEED}, ${route} request ${n} (${body.subarray(0, 120).toString()})`;
      const before = await redisState();
      const { status, text } = await post(route, body);
      const after = await redisState();
      statuses.set(status, (statuses.get(status) ?? 0) + 1);

      assert.ok(status < 500, `${label}: status ${status}: ${text.slice(0, 300)}`);
      assert.ok([202, 400, 413].includes(status), `${label}: unexpected status ${status}`);
      if (fixed !== undefined) assert.equal(status, fixed[1], `${label}: status ${text}`);
      assert.doesNotMatch(text, INTERNAL_DETAIL, `${label}: internal detail in the body`);
      assertNoInternalDetail(text, label);
      for (const secret of [API_KEY, ENCRYPTION_KEY, keyPrefix, PROJECT_ROOT]) {
        assert.ok(!text.includes(secret), `${label}: the body contains a configured value`);
      }
      assert.doesNotThrow(() => JSON.parse(text), `${label}: the body is not JSON`);
      assert.ok(prototypesClean(), `${label}: a built-in prototype was polluted`);

      if (status !== 202) {
        assert.deepEqual(after, before, `${label}: a rejected request changed Redis`);
      } else if (route === "publish") {
        assert.equal(after.stream, before.stream + 1, `${label}: the stream did not grow by one`);
        await assertStoredMessageValid(label);
      } else {
        assert.equal(after.stream, before.stream, `${label}: a task wrote to the done stream`);
        assert.ok(after.keys >= before.keys, `${label}: a task removed keys`);
      }
    }
    return statuses;
  }

  /** Asserts that the newest stream entry is a done message with only schema keys. */
  async function assertStoredMessageValid(label: string): Promise<void> {
    const [entry] = await redis.xrevrange(doneKey(keyPrefix), "+", "-", "COUNT", 1);
    assert.ok(entry, `${label}: no stream entry`);
    const fields = entry[1];
    const text = fields[fields.indexOf(MESSAGE_FIELD) + 1];
    const stored = JSON.parse(text ?? "null") as Record<string, unknown>;
    const keys = Object.keys(stored);
    assert.ok(keys.every((key) => MESSAGE_KEYS.has(key)), `${label}: stored keys ${keys}`);
    assert.ok(
      (typeof stored.user === "string") !== (typeof stored.channel === "string"),
      `${label}: the stored message has not exactly one recipient`,
    );
  }

  it("rejects bad publish bodies cleanly", { timeout: 60_000 }, async () => {
    const valid = () => ({
      user: JSON.stringify(pick(["alice", "bob", "user-1"])),
      html: JSON.stringify('<a href="/x#y" data-pat-inject="target: #y">x</a>'),
      data: randomJson(2),
    });
    const statuses = await fuzzRoute("publish", valid, [
      ['{"user":"alice","event":"x","__proto__":{"polluted":true}}', 400],
      ['{"user":"alice","event":"x","data":{"__proto__":{"polluted":true}}}', 202],
      ['{"user":"alice","event":"x","constructor":{"prototype":{"polluted":true}}}', 400],
      [`{"user":"alice","event":"x","data":${nestedJson(MAX_DATA_DEPTH)}}`, 202],
      [`{"user":"alice","event":"x","data":${nestedJson(MAX_DATA_DEPTH + 1)}}`, 400],
      [`{"user":"alice","event":"x","data":${nestedJson(20_000)}}`, 400],
      ['{"user":"alice","event":"x","data":1e400}', 202],
      ['{"user":"\\ud800","event":"x"}', 202],
    ]);
    console.log(`publish statuses: ${JSON.stringify([...statuses])}`);
    assert.ok((statuses.get(202) ?? 0) > 0, "no publish body was accepted");
    assert.ok((statuses.get(400) ?? 0) > 0, "no publish body was rejected");
  });

  it("rejects bad task bodies cleanly", { timeout: 60_000 }, async () => {
    const valid = () => ({
      url: JSON.stringify(`${portal.origin}/worker`),
      name: JSON.stringify("fuzz-task"),
      data: JSON.stringify({ field: "value" }),
      cookies: JSON.stringify({ __ac: "session-value" }),
      headers: JSON.stringify({ "X-Extra": "1" }),
      countdown: String(int(100)),
    });
    const task = (fields: string) => `{"url":"${portal.origin}/worker","name":"t",${fields}}`;
    const statuses = await fuzzRoute("tasks", valid, [
      [task('"countdown":1e308'), 400],
      [task('"expires":1e308'), 400],
      [task('"countdown":1e400'), 400],
      [task('"eta":"+275760-09-13T00:00:00.000Z"'), 202],
      [task('"eta":"-271821-04-20T00:00:00.000Z","expires":"+275760-09-13T00:00:00.000Z"'), 202],
      [task('"attempts":1e308'), 400],
      [task('"cookies":{"__proto__":{"polluted":"1"}}'), 400],
      // zod builds the headers record anew and leaves a `__proto__` key out of it.
      [task('"headers":{"__proto__":"x"}'), 202],
      [task('"data":{"constructor":{"prototype":"x"}}'), 400],
    ]);
    console.log(`task statuses: ${JSON.stringify([...statuses])}`);
    assert.ok((statuses.get(202) ?? 0) > 0, "no task body was accepted");
    assert.ok((statuses.get(400) ?? 0) > 0, "no task body was rejected");
  });

  it("stays up and unpolluted", async () => {
    const health = await fetch(`${server.httpUrl}/health`);
    assert.equal(health.status, 200);
    const accepted = await post("publish", Buffer.from('{"user":"alice","event":"after-fuzz"}'));
    assert.equal(accepted.status, 202, accepted.text);
    assert.ok(prototypesClean(), "a built-in prototype was polluted");
    assert.deepEqual(Object.getOwnPropertyNames(Object.prototype).sort(), objectKeysBefore);
  });
});
