/**
 * Fuzzes the socket endpoint of a `patpush push-server` child process over
 * raw TCP: random bytes instead of or before an upgrade, malformed upgrade
 * requests, and random, oversized, binary, fragmented, control and invalid
 * UTF-8 frames on authenticated sockets. Afterwards the server must still
 * return 200 from /health and deliver to a fresh socket, and its resident
 * memory must not grow by more than a generous bound. Set PATPUSH_SEED to
 * repeat a run; every run prints its seed.
 */
import assert from "node:assert/strict";
import { spawn, type ChildProcess } from "node:child_process";
import { randomBytes } from "node:crypto";
import { once } from "node:events";
import { readFileSync } from "node:fs";
import { connect, type Socket } from "node:net";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { after, before, describe, it } from "node:test";
import { CloseCode } from "../protocol/close-codes.ts";
import { openSocket, startPortalStub, type PortalStub } from "../server/test-support.ts";
import { createRandom, testSeed } from "./random.ts";

const SEED = testSeed();
const PROJECT_ROOT = join(dirname(fileURLToPath(import.meta.url)), "..");
const API_KEY = randomBytes(24).toString("hex");
/** The push server's default maxPayloadBytes. */
const MAX_PAYLOAD_BYTES = 4096;
/** Connections of each fuzz group; the groups together stay under about 30 s. */
const CASES_PER_GROUP = 80;
/** Time a fuzz connection waits for the server to respond or close, in milliseconds. */
const CONNECTION_WAIT_MS = 400;
/** Growth of the server's resident memory that the test accepts, in bytes. */
const MAX_RSS_GROWTH_BYTES = 64 * 1024 * 1024;

const { next: random, int, pick, bytes: randomBuffer } = createRandom(SEED);

/** Random valid UTF-8 text with ASCII, accented letters, CJK and astral characters. */
function randomText(length: number): string {
  const pools = ["abc {}[]\":,0123456789", "äöüßé", "漢字テスト", "😀🔥🧪"];
  let text = "";
  while (text.length < length) text += pick([...pick(pools)]);
  return text;
}

/** Source address of the n-th connection, so per-address upgrade limits do not throttle the run. */
function sourceAddress(n: number): string {
  return `127.0.${10 + Math.floor(n / 250)}.${1 + (n % 250)}`;
}

/** Options of one client frame; a client frame is masked unless `mask` is false. */
interface FrameOptions {
  opcode: number;
  payload: Buffer;
  fin?: boolean;
  rsv?: number;
  mask?: boolean;
  /** Length to announce instead of the payload's, for lying headers. */
  announcedLength?: number;
}

/** Encodes one WebSocket frame (RFC 6455 section 5.2). */
function encodeFrame(options: FrameOptions): Buffer {
  const { opcode, payload } = options;
  const masked = options.mask ?? true;
  const length = options.announcedLength ?? payload.length;
  const first = ((options.fin ?? true) ? 0x80 : 0) | ((options.rsv ?? 0) << 4) | (opcode & 0x0f);
  let header: Buffer;
  if (length < 126) {
    header = Buffer.from([first, (masked ? 0x80 : 0) | length]);
  } else if (length < 65536) {
    header = Buffer.from([first, (masked ? 0x80 : 0) | 126, length >> 8, length & 0xff]);
  } else {
    header = Buffer.alloc(10);
    header[0] = first;
    header[1] = (masked ? 0x80 : 0) | 127;
    header.writeBigUInt64BE(BigInt(length), 2);
  }
  if (!masked) return Buffer.concat([header, payload]);
  const mask = randomBuffer(4);
  const body = Buffer.from(payload);
  for (let i = 0; i < body.length; i++) body[i]! ^= mask[i % 4]!;
  return Buffer.concat([header, mask, body]);
}

/** What the server did on one raw connection. */
interface RawOutcome {
  /** Status code of the HTTP response, when one came. */
  status?: number;
  /** Close code of the first close frame after a 101 response. */
  closeCode?: number;
  /** True when the server ended or reset the connection before the wait ran out. */
  closedByServer: boolean;
}

/** Returns the close code of the first close frame in `data`, which starts after the 101 head. */
function findCloseCode(data: Buffer): number | undefined {
  let offset = 0;
  while (offset + 2 <= data.length) {
    const opcode = data[offset]! & 0x0f;
    let length = data[offset + 1]! & 0x7f;
    let start = offset + 2;
    if (length === 126) {
      if (start + 2 > data.length) return undefined;
      length = data.readUInt16BE(start);
      start += 2;
    } else if (length === 127) {
      if (start + 8 > data.length) return undefined;
      length = Number(data.readBigUInt64BE(start));
      start += 8;
    }
    if (opcode === 0x8) return length >= 2 ? data.readUInt16BE(start) : 1005;
    offset = start + length;
  }
  return undefined;
}

/**
 * Opens a TCP connection from `localAddress`, writes each chunk of `chunks`
 * (a function gets the connection after the server's 101), and waits up to
 * `waitMs` for the server to close. Never rejects: errors count as closes.
 */
async function rawExchange(
  port: number,
  localAddress: string,
  chunks: Array<Buffer | ((socket: Socket) => void)>,
  waitMs = CONNECTION_WAIT_MS,
): Promise<RawOutcome> {
  const socket = connect({ host: "127.0.0.1", port, localAddress });
  socket.on("error", () => undefined);
  let received = Buffer.alloc(0);
  let closed = false;
  const closedPromise = new Promise<void>((resolve) =>
    socket.once("close", () => {
      closed = true;
      resolve();
    }),
  );
  const upgraded = new Promise<void>((resolve) => {
    socket.on("data", (chunk: Buffer) => {
      received = Buffer.concat([received, chunk]);
      if (received.includes("\r\n\r\n")) resolve();
    });
    socket.once("close", () => resolve());
  });
  await Promise.race([once(socket, "connect"), closedPromise]);

  for (const chunk of chunks) {
    if (closed) break;
    if (typeof chunk === "function") {
      await Promise.race([upgraded, new Promise((resolve) => setTimeout(resolve, waitMs))]);
      if (!closed) chunk(socket);
    } else {
      socket.write(chunk);
    }
  }
  await Promise.race([closedPromise, new Promise((resolve) => setTimeout(resolve, waitMs))]);
  const closedByServer = closed;
  socket.destroy();

  const headEnd = received.indexOf("\r\n\r\n");
  const statusMatch = /^HTTP\/1\.[01] (\d{3})/.exec(received.subarray(0, 64).toString("latin1"));
  const outcome: RawOutcome = { closedByServer };
  if (statusMatch) outcome.status = Number(statusMatch[1]);
  if (outcome.status === 101 && headEnd >= 0) {
    const code = findCloseCode(received.subarray(headEnd + 4));
    if (code !== undefined) outcome.closeCode = code;
  }
  return outcome;
}

/** Header lines of a valid upgrade request, which a case may change or extend. */
function upgradeHeaders(origin: string, port: number): Map<string, string> {
  return new Map([
    ["Host", `127.0.0.1:${port}`],
    ["Upgrade", "websocket"],
    ["Connection", "Upgrade"],
    ["Sec-WebSocket-Key", randomBytes(16).toString("base64")],
    ["Sec-WebSocket-Version", "13"],
    ["Origin", origin],
    ["Cookie", "__ac=alice-session"],
  ]);
}

function upgradeRequest(headers: Map<string, string>, target = "/push"): Buffer {
  const lines = [`GET ${target} HTTP/1.1`, ...[...headers].map(([n, v]) => `${n}: ${v}`)];
  return Buffer.from(`${lines.join("\r\n")}\r\n\r\n`, "utf8");
}

/** Returns the resident set size of process `pid`, in bytes, from /proc. */
function residentBytes(pid: number): number {
  const status = readFileSync(`/proc/${pid}/status`, "utf8");
  const match = /^VmRSS:\s+(\d+) kB$/m.exec(status);
  assert.ok(match, `no VmRSS in /proc/${pid}/status`);
  return Number(match[1]) * 1024;
}

/** Runs `count` cases made by `makeCase`, 10 at a time. */
async function runCases<T>(count: number, makeCase: (n: number) => Promise<T>): Promise<T[]> {
  const results: T[] = [];
  for (let i = 0; i < count; i += 10) {
    const batch = Array.from({ length: Math.min(10, count - i) }, (_, j) => makeCase(i + j));
    results.push(...(await Promise.all(batch)));
  }
  return results;
}

describe("socket fuzzing", () => {
  let portal: PortalStub;
  let child: ChildProcess;
  let port: number;
  let connectionNumber = 0;
  const output: string[] = [];

  before(async () => {
    console.log(`socket fuzz seed ${SEED} (set PATPUSH_SEED=${SEED} to repeat this run)`);
    portal = await startPortalStub();
    child = spawn(process.execPath, [join(PROJECT_ROOT, "bin", "patpush.mjs"), "push-server"], {
      cwd: PROJECT_ROOT,
      env: {
        PATH: process.env.PATH ?? "",
        PATPUSH_AUTH_URL: portal.authUrl,
        PATPUSH_PUSH_PORT: "0",
        PATPUSH_API_KEY: API_KEY,
        PATPUSH_LOG_LEVEL: "info",
      },
      stdio: ["ignore", "pipe", "pipe"],
    });
    child.stdout!.setEncoding("utf8");
    child.stderr!.setEncoding("utf8");
    child.stderr!.on("data", (chunk: string) => output.push(chunk));
    port = await new Promise<number>((resolve, reject) => {
      let text = "";
      child.stdout!.on("data", (chunk: string) => {
        output.push(chunk);
        text += chunk;
        const match = /"port":(\d+),"path":"[^"]*","msg":"push server listening"/.exec(text);
        if (match) resolve(Number(match[1]));
      });
      child.once("exit", (code) => reject(new Error(`push server exited with ${code}`)));
    });
  });

  after(async () => {
    if (child && child.exitCode === null && child.signalCode === null) {
      const exited = once(child, "exit");
      child.kill("SIGTERM");
      await exited;
    }
    await portal?.close();
  });

  const nextAddress = () => sourceAddress(connectionNumber++);

  /** Opens a socket with the ws client, publishes to alice through the API, and waits for it. */
  async function assertDelivers(label: string): Promise<void> {
    const socket = await openSocket(`ws://127.0.0.1:${port}/push`, {
      origin: portal.origin,
      cookie: "__ac=alice-session",
    });
    try {
      const marker = `${label}-${randomBytes(4).toString("hex")}`;
      const response = await fetch(`http://127.0.0.1:${port}/api/publish`, {
        method: "POST",
        headers: { authorization: `Bearer ${API_KEY}`, "content-type": "application/json" },
        body: JSON.stringify({ user: "alice", event: "fuzz-check", data: marker }),
      });
      assert.equal(response.status, 202, await response.text());
      const frame = await Promise.race([
        socket.waitFor((f) => f.type === "message" && f.data === marker),
        new Promise((_, reject) => setTimeout(() => reject(new Error("no message")), 5000)),
      ]);
      assert.ok(frame, `${label}: the fresh socket got no message`);
    } finally {
      socket.ws.terminate();
    }
  }

  it("survives malformed input", { timeout: 90_000 }, async () => {
    const started = Date.now();
    const origin = portal.origin;
    await assertDelivers("warm-up");
    await runCases(20, async () => {
      const headers = upgradeHeaders(origin, port);
      return rawExchange(port, nextAddress(), [upgradeRequest(headers)]);
    });
    const rssBefore = residentBytes(child.pid!);

    // Random bytes instead of an HTTP request, and before a valid upgrade.
    await runCases(CASES_PER_GROUP, async () => {
      const noise = randomBuffer(1 + int(4096));
      const chunks = [noise];
      if (random() < 0.5) chunks.push(upgradeRequest(upgradeHeaders(origin, port)));
      return rawExchange(port, nextAddress(), chunks);
    });

    // Malformed upgrade requests: each changes one part of a valid request. uWS upgrades a
    // request with any Sec-WebSocket-Version, or without Upgrade, as long as the key is there,
    // so those cases only have to leave the server up. Origin and cookie are still checked.
    type Mutation = {
      name: string;
      apply: (headers: Map<string, string>) => string | void;
      reject: boolean;
    };
    const mutations: Mutation[] = [
      { name: "empty key", apply: (h) => void h.set("Sec-WebSocket-Key", ""), reject: true },
      { name: "short key", apply: (h) => void h.set("Sec-WebSocket-Key", "short"), reject: true },
      {
        name: "key not base64",
        apply: (h) => void h.set("Sec-WebSocket-Key", "!!!not base64!!!not base64!!!"),
        reject: true,
      },
      {
        name: "huge key",
        apply: (h) => void h.set("Sec-WebSocket-Key", "A".repeat(8000)),
        reject: true,
      },
      { name: "no key", apply: (h) => void h.delete("Sec-WebSocket-Key"), reject: true },
      {
        name: "other version",
        apply: (h) => void h.set("Sec-WebSocket-Version", pick(["0", "8", "12", "abc", "-1", ""])),
        reject: false,
      },
      { name: "no version", apply: (h) => void h.delete("Sec-WebSocket-Version"), reject: false },
      { name: "no Upgrade", apply: (h) => void h.delete("Upgrade"), reject: false },
      { name: "Upgrade h2c", apply: (h) => void h.set("Upgrade", "h2c"), reject: false },
      { name: "Connection close", apply: (h) => void h.set("Connection", "close"), reject: false },
      {
        name: "huge cookie",
        apply: (h) => void h.set("Cookie", `__ac=${"x".repeat(60_000)}`),
        reject: true,
      },
      {
        name: "huge origin",
        apply: (h) => void h.set("Origin", `http://${"a".repeat(20_000)}.example`),
        reject: true,
      },
      { name: "origin null", apply: (h) => void h.set("Origin", "null"), reject: true },
      {
        name: "500 headers",
        apply: (h) => {
          for (let i = 0; i < 500; i++) h.set(`X-Fuzz-${i}`, randomText(20));
        },
        reject: true,
      },
      {
        name: "200 KB header",
        apply: (h) => void h.set("X-Huge", "b".repeat(200_000)),
        reject: true,
      },
      {
        name: "odd extensions",
        apply: (h) => void h.set("Sec-WebSocket-Extensions", "permessage-deflate; x=99"),
        reject: false,
      },
      {
        name: "random subprotocol",
        apply: (h) => void h.set("Sec-WebSocket-Protocol", randomText(300)),
        reject: false,
      },
      {
        name: "header injection in the cookie",
        apply: (h) => void h.set("Cookie", "__ac=alice-session\r\nX-Injected: 1"),
        reject: false,
      },
      {
        name: "random last id",
        apply: () => `/push?last=${encodeURIComponent(randomText(1 + int(300)))}`,
        reject: true,
      },
      {
        name: "long last id",
        apply: () => `/push?last=${"9".repeat(21 + int(60))}-${"9".repeat(21 + int(60))}`,
        reject: true,
      },
      { name: "dot segments", apply: () => `/push/${"../".repeat(1 + int(200))}`, reject: true },
      { name: "long path", apply: () => `/${"p".repeat(10_000)}`, reject: true },
    ];
    const malformed = await runCases(CASES_PER_GROUP, async () => {
      const mutation = pick(mutations);
      const headers = upgradeHeaders(origin, port);
      const target = mutation.apply(headers) ?? "/push";
      const outcome = await rawExchange(port, nextAddress(), [upgradeRequest(headers, target)]);
      return { mutation, outcome };
    });
    for (const { mutation, outcome } of malformed) {
      if (!mutation.reject) continue;
      assert.notEqual(outcome.status, 101, `seed ${SEED}, ${mutation.name}: the socket opened`);
    }

    // Authenticated sockets that then send random, oversized, invalid and odd frames.
    // uWS drops a socket that breaks the protocol or the payload limit without a close frame
    // (the client sees 1006), so only the binary frame case expects a close code.
    type FrameCase = {
      name: string;
      frames: () => Buffer[];
      mustClose?: boolean;
      closeCode?: number;
    };
    const frameCases: FrameCase[] = [
      {
        name: "random text frames",
        frames: () =>
          Array.from({ length: 1 + int(5) }, () =>
            encodeFrame({ opcode: 0x1, payload: Buffer.from(randomText(int(500))) }),
          ),
      },
      {
        name: "binary frame",
        frames: () => [encodeFrame({ opcode: 0x2, payload: randomBuffer(int(2000)) })],
        mustClose: true,
        closeCode: CloseCode.PROTOCOL_ERROR,
      },
      {
        name: "oversized text frame",
        frames: () => [
          encodeFrame({
            opcode: 0x1,
            payload: Buffer.alloc(MAX_PAYLOAD_BYTES + 1 + int(20_000), 97),
          }),
        ],
        mustClose: true,
      },
      {
        name: "announced huge length",
        frames: () => [
          encodeFrame({ opcode: 0x1, payload: randomBuffer(64), announcedLength: 2 ** 40 }),
        ],
        mustClose: true,
      },
      {
        name: "invalid UTF-8",
        frames: () => [
          encodeFrame({ opcode: 0x1, payload: Buffer.from([0x61, 0xc3, 0x28, 0xff, 0xfe, 0xed]) }),
        ],
        mustClose: true,
      },
      {
        name: "fragments",
        frames: () => [
          encodeFrame({ opcode: 0x1, payload: Buffer.from(randomText(50)), fin: false }),
          ...Array.from({ length: int(4) }, () =>
            encodeFrame({ opcode: 0x0, payload: Buffer.from(randomText(50)), fin: false }),
          ),
          encodeFrame({ opcode: 0x0, payload: Buffer.from(randomText(50)) }),
        ],
      },
      {
        name: "continuation without a start",
        frames: () => [encodeFrame({ opcode: 0x0, payload: Buffer.from("orphan") })],
        mustClose: true,
      },
      {
        name: "fragments past the payload limit",
        frames: () =>
          Array.from({ length: 6 }, (_, i) =>
            encodeFrame({
              opcode: i === 0 ? 0x1 : 0x0,
              payload: Buffer.alloc(1000, 98),
              fin: i === 5,
            }),
          ),
        mustClose: true,
      },
      {
        name: "ping and pong",
        frames: () => [
          encodeFrame({ opcode: 0x9, payload: randomBuffer(int(125)) }),
          encodeFrame({ opcode: 0xa, payload: randomBuffer(int(125)) }),
        ],
      },
      {
        name: "oversized control frame",
        frames: () => [encodeFrame({ opcode: 0x9, payload: randomBuffer(126 + int(1000)) })],
        mustClose: true,
      },
      {
        name: "fragmented control frame",
        frames: () => [encodeFrame({ opcode: 0x9, payload: randomBuffer(10), fin: false })],
        mustClose: true,
      },
      {
        name: "close with a random code",
        frames: () => {
          const payload = Buffer.alloc(2 + int(60));
          payload.writeUInt16BE(int(65536), 0);
          return [encodeFrame({ opcode: 0x8, payload })];
        },
      },
      {
        name: "reserved bits and opcodes",
        frames: () => [
          encodeFrame({
            opcode: pick([0x3, 0x4, 0x5, 0x6, 0x7, 0xb, 0xc, 0xd, 0xe, 0xf, 0x1]),
            payload: randomBuffer(int(100)),
            rsv: 1 + int(7),
          }),
        ],
        mustClose: true,
      },
      {
        name: "unmasked frame",
        frames: () => [
          encodeFrame({ opcode: 0x1, payload: Buffer.from(randomText(40)), mask: false }),
        ],
      },
      { name: "random bytes", frames: () => [randomBuffer(1 + int(3000))] },
    ];
    const frameOutcomes = await runCases(CASES_PER_GROUP * 2, async (n) => {
      const frameCase = frameCases[n % frameCases.length]!;
      const request = upgradeRequest(upgradeHeaders(origin, port));
      const frames = frameCase.frames();
      const outcome = await rawExchange(port, nextAddress(), [
        request,
        (socket) => {
          for (const frame of frames) socket.write(frame);
        },
      ]);
      return { frameCase, outcome };
    });
    for (const { frameCase, outcome } of frameOutcomes) {
      assert.equal(outcome.status, 101, `${frameCase.name}: upgrade got ${outcome.status}`);
      if (frameCase.mustClose !== true) continue;
      assert.equal(
        outcome.closedByServer,
        true,
        `seed ${SEED}, ${frameCase.name}: the server kept the socket open`,
      );
      if (frameCase.closeCode !== undefined) {
        assert.equal(outcome.closeCode, frameCase.closeCode, `${frameCase.name}: close code`);
      }
    }
    const quiet = frameOutcomes.filter(({ frameCase }) => frameCase.name === "random text frames");
    for (const { outcome } of quiet) {
      assert.equal(outcome.closedByServer, false, "a socket was closed for valid text frames");
    }

    // The server is up, delivers to a fresh socket, and its memory grew by less than the bound.
    assert.equal(child.exitCode, null, `the push server exited: ${output.join("").slice(-2000)}`);
    const health = await fetch(`http://127.0.0.1:${port}/health`);
    assert.equal(health.status, 200);
    await assertDelivers("after fuzzing");
    await new Promise((resolve) => setTimeout(resolve, 500));
    const rssAfter = residentBytes(child.pid!);
    const growth = rssAfter - rssBefore;
    console.log(
      `socket fuzz: ${connectionNumber} connections in ${Date.now() - started} ms, ` +
        `RSS ${Math.round(rssBefore / 1048576)} -> ${Math.round(rssAfter / 1048576)} MiB`,
    );
    assert.ok(
      growth < MAX_RSS_GROWTH_BYTES,
      `seed ${SEED}: the push server's RSS grew by ${Math.round(growth / 1048576)} MiB`,
    );
  });
});
