/**
 * Helpers the portal's tests share: a demo on free ports whose log is
 * recorded, a login through the real form, raw HTTP over a socket and a
 * bounded wait. Only tests import this module.
 */
import assert from "node:assert/strict";
import { connect } from "node:net";
import { Writable } from "node:stream";
import { setTimeout as sleep } from "node:timers/promises";
import { createLogger, type Logger } from "../../common/logger.ts";
import { startDemo, type Demo, type DemoOptions } from "./app.ts";

/** One parsed pino log line. */
export interface LogRecord {
  level: number;
  msg: string;
  [field: string]: unknown;
}

/** A pino destination that keeps every line, raw and parsed. */
export class LogCapture extends Writable {
  readonly records: LogRecord[] = [];
  text = "";

  override _write(chunk: Buffer, _encoding: string, callback: () => void): void {
    const lines = chunk.toString("utf8");
    this.text += lines;
    for (const line of lines.split("\n")) {
      if (line !== "") this.records.push(JSON.parse(line) as LogRecord);
    }
    callback();
  }

  /** Returns the records whose message is `msg`. */
  find(msg: string): LogRecord[] {
    return this.records.filter((record) => record.msg === msg);
  }
}

/** Returns a debug-level logger that writes to `capture`. */
export function capturingLogger(capture: LogCapture): Logger {
  return createLogger({ level: "debug", destination: capture });
}

/** Starts the demo on free ports, without the bundle build, with its log in `logs`. */
export async function startTestPortal(
  options: DemoOptions = {},
): Promise<{ demo: Demo; logs: LogCapture }> {
  const logs = new LogCapture();
  const demo = await startDemo({
    portalPort: 0,
    pushPort: 0,
    previewDelayMs: 0,
    buildBundle: false,
    logger: capturingLogger(logs),
    ...options,
  });
  return { demo, logs };
}

/** Logs in through POST /login and returns the `__ac` cookie and the page's authenticator. */
export async function logIn(
  portalUrl: string,
  user: string,
): Promise<{ cookie: string; authenticator: string }> {
  const response = await fetch(`${portalUrl}/login`, {
    method: "POST",
    body: new URLSearchParams({ login: user, password: user }),
    redirect: "manual",
  });
  assert.equal(response.status, 303);
  const cookie = (response.headers.get("set-cookie") ?? "").split(";")[0] ?? "";

  const workspace = await fetch(`${portalUrl}/workspace`, { headers: { Cookie: cookie } });
  const page = await workspace.text();
  const authenticator = /name="_authenticator" value="([0-9a-f]{64})"/.exec(page)?.[1] ?? "";
  assert.notEqual(authenticator, "", "the workspace page has no _authenticator field");
  return { cookie, authenticator };
}

/**
 * Sends `request` as raw bytes over a new socket and returns everything the
 * server sends until it closes the connection, so the request should carry
 * `Connection: close`. Rejects when the socket stays silent for `idleMs`.
 */
export function sendRaw(port: number, request: string, idleMs = 5000): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = connect(port, "127.0.0.1");
    let received = "";
    socket.setTimeout(idleMs, () => {
      socket.destroy();
      reject(new Error(`no response within ${idleMs} ms; received ${JSON.stringify(received)}`));
    });
    socket.setEncoding("utf8");
    socket.on("data", (chunk: string) => (received += chunk));
    socket.on("end", () => resolve(received));
    socket.on("error", reject);
    socket.write(request);
  });
}

/** Polls `check` until it returns true; fails with `what` after `timeoutMs`. */
export async function waitUntil(
  check: () => boolean | Promise<boolean>,
  what: string,
  timeoutMs = 10_000,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) assert.fail(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(20);
  }
}

/** Waits for `promise`; fails with `what` when it has not settled after `timeoutMs`. */
export async function waitFor<T>(
  promise: Promise<T>,
  what: string,
  timeoutMs = 10_000,
): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_resolve, reject) => {
    timer = setTimeout(
      () => reject(new Error(`timed out after ${timeoutMs} ms waiting for ${what}`)),
      timeoutMs,
    );
  });
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}
