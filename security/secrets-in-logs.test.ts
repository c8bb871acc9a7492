/**
 * Runs the distributed portal end to end with every logger at debug level,
 * then searches every log line for the secrets the run used. Those are the
 * session cookies, Cookie and Authorization values, the API key,
 * authenticators, task signatures, the encryption key, the signing secret
 * and the Redis password. Child processes (`patpush worker`, `patpush
 * push-server`) log to their stdout and stderr, which the test collects too.
 */
import assert from "node:assert/strict";
import { spawn, type ChildProcess } from "node:child_process";
import { randomBytes, randomUUID } from "node:crypto";
import { once } from "node:events";
import { createServer, type IncomingMessage, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { dirname, join } from "node:path";
import { Writable } from "node:stream";
import { fileURLToPath } from "node:url";
import { after, before, describe, it } from "node:test";
import type { Browser } from "playwright-core";
import { createLogger, type Logger } from "../common/logger.ts";
import { startRedisServer, type RedisTestServer } from "../common/redis-test-server.ts";
import { launchChromium } from "../e2e/browser.ts";
import { documentIdOf, logIn, makePng } from "../e2e/demo.ts";
import { requestUpgrade } from "../e2e/sockets.ts";
import { startDistributedDemo, type DistributedDemo } from "../examples/portal/distributed.ts";
import { RedisBus, startPushServer, type PushServer } from "../server/index.ts";
import { BullmqQueue } from "../tasks/index.ts";
import { waitUntil } from "./support.ts";

const PROJECT_ROOT = join(dirname(fileURLToPath(import.meta.url)), "..");
const PATPUSH_BIN = join(PROJECT_ROOT, "bin", "patpush.mjs");

/** Queue of the API tasks, which the `patpush worker` child dispatches with signatures. */
const SIGNED_QUEUE = "signed";

/** One source of log text: a logger, the console or a child process stream. */
interface LogSource {
  name: string;
  chunks: string[];
}

/** Every log line of the run, by source. */
class LogCollector {
  readonly sources: LogSource[] = [];

  source(name: string): LogSource {
    const source = { name, chunks: [] };
    this.sources.push(source);
    return source;
  }

  /** Creates a root logger at debug level that writes into memory. */
  logger(name: string): Logger {
    const source = this.source(name);
    const destination = new Writable({
      write(chunk: Buffer, _encoding, callback) {
        source.chunks.push(chunk.toString("utf8"));
        callback();
      },
    });
    return createLogger({ level: "debug", destination });
  }

  /** Collects the stdout and stderr of `child`. */
  child(name: string, child: ChildProcess): void {
    for (const [stream, label] of [
      [child.stdout, "stdout"],
      [child.stderr, "stderr"],
    ] as const) {
      const source = this.source(`${name} ${label}`);
      stream?.setEncoding("utf8");
      stream?.on("data", (chunk: string) => source.chunks.push(chunk));
    }
  }

  /** Collects what libraries write through `console`, and still prints it. */
  captureConsole(): () => void {
    const source = this.source("console");
    const methods = ["log", "info", "warn", "error", "debug"] as const;
    const originals = methods.map((method) => console[method]);
    for (const method of methods) {
      const original = console[method];
      console[method] = (...args: unknown[]) => {
        source.chunks.push(args.map((arg) => String(arg)).join(" "));
        original.apply(console, args);
      };
    }
    return () => methods.forEach((method, index) => (console[method] = originals[index]!));
  }

  lines(): Array<{ source: string; line: string }> {
    return this.sources.flatMap((source) =>
      source.chunks
        .join("")
        .split("\n")
        .filter((line) => line.trim() !== "")
        .map((line) => ({ source: source.name, line })),
    );
  }
}

/** A secret value of the run, with the name a failure message shows instead of it. */
interface Secret {
  name: string;
  value: string;
}

/**
 * Returns `line` with every secret replaced by its name in brackets, cut to
 * about 600 characters around the first secret found.
 */
function redactLine(line: string, secrets: readonly Secret[]): string {
  let text = line;
  let first = -1;
  for (const secret of secrets) {
    const marker = `[${secret.name}]`;
    text = text.replaceAll(secret.value, marker);
    const at = text.indexOf(marker);
    if (at >= 0 && (first < 0 || at < first)) first = at;
  }
  if (text.length <= 600) return text;
  const start = Math.max(0, first - 300);
  return `${start > 0 ? "..." : ""}${text.slice(start, start + 600)}...`;
}

/** Returns one description per line that contains a secret, with the secrets redacted. */
function findLeaks(
  lines: ReadonlyArray<{ source: string; line: string }>,
  secrets: readonly Secret[],
): string[] {
  const leaks: string[] = [];
  for (const { source, line } of lines) {
    const found = secrets.filter((secret) => line.includes(secret.value));
    if (found.length === 0) continue;
    const names = found.map((secret) => secret.name).join(", ");
    leaks.push(`${source}: ${names} in: ${redactLine(line, secrets)}`);
  }
  return leaks;
}

/** Adds `value` and its URL-encoded form as secrets named `name`. */
function addSecret(secrets: Secret[], name: string, value: string): void {
  assert.ok(value.length >= 8, `secret ${name} is too short to search for: ${value.length}`);
  secrets.push({ name, value });
  const encoded = encodeURIComponent(value);
  if (encoded !== value) secrets.push({ name: `${name} (URL-encoded)`, value: encoded });
}

/** A request the task receiver got. */
interface ReceivedTask {
  name: string;
  headers: IncomingMessage["headers"];
  body: string;
}

/**
 * Starts a stand-in for a portal's worker views. It records each task
 * request and responds by task name: "denied" gets 403, "flaky" gets 503
 * once and then 200, any other name gets 200.
 */
async function startTaskReceiver(): Promise<{
  server: Server;
  origin: string;
  received: ReceivedTask[];
}> {
  const received: ReceivedTask[] = [];
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (chunk: Buffer) => chunks.push(chunk));
    req.on("end", () => {
      const name = String(req.headers["x-task-name"] ?? "");
      const earlier = received.filter((task) => task.name === name).length;
      received.push({ name, headers: req.headers, body: Buffer.concat(chunks).toString("utf8") });
      if (name === "denied") res.writeHead(403).end("forbidden");
      else if (name === "flaky" && earlier === 0) res.writeHead(503, { "Retry-After": "0" }).end();
      else res.writeHead(200).end("ok");
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  return { server, origin: `http://127.0.0.1:${port}`, received };
}

/** Returns the origin of a loopback port that nothing listens on. */
async function closedPortOrigin(): Promise<string> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return `http://127.0.0.1:${port}`;
}

/** Starts `patpush <command>` as a child process with `env` added to a clean environment. */
function startPatpush(command: string, env: Record<string, string>): ChildProcess {
  return spawn(process.execPath, [PATPUSH_BIN, command], {
    cwd: PROJECT_ROOT,
    env: { PATH: process.env.PATH ?? "", ...env },
    stdio: ["ignore", "pipe", "pipe"],
  });
}

/** Resolves with the port that a `patpush push-server` child logs in "push server listening". */
async function listeningPort(child: ChildProcess, timeoutMs = 15_000): Promise<number> {
  let text = "";
  return new Promise((resolve, reject) => {
    const timer = setTimeout(
      () => reject(new Error("push server child did not listen")),
      timeoutMs,
    );
    child.stdout?.on("data", (chunk: Buffer | string) => {
      text += String(chunk);
      const match = /"port":(\d+),"path":"[^"]*","msg":"push server listening"/.exec(text);
      if (match === null) return;
      clearTimeout(timer);
      resolve(Number(match[1]));
    });
    child.once("exit", (code) => reject(new Error(`push server child exited with ${code}`)));
  });
}

/** Ends a child with SIGTERM and waits for it, or SIGKILL after `timeoutMs`. */
async function stopChild(child: ChildProcess | undefined, timeoutMs = 10_000): Promise<void> {
  if (child === undefined || child.exitCode !== null || child.signalCode !== null) return;
  const exited = once(child, "exit");
  child.kill("SIGTERM");
  const timer = setTimeout(() => child.kill("SIGKILL"), timeoutMs);
  await exited;
  clearTimeout(timer);
}

/** Sends a JSON POST to the producer API and returns the status and body. */
async function postApi(
  url: string,
  authorization: string,
  body: unknown,
): Promise<{ status: number; body: string }> {
  const response = await fetch(url, {
    method: "POST",
    headers: { authorization, "content-type": "application/json" },
    body: JSON.stringify(body),
  });
  return { status: response.status, body: await response.text() };
}

describe("secrets in logs", () => {
  const logs = new LogCollector();
  const secrets: Secret[] = [];
  const keyPrefix = `leak-${randomUUID().slice(0, 8)}:`;
  const redisPassword = `redis-pw-${randomBytes(12).toString("hex")}`;
  const encryptionKey = randomBytes(32);
  const signingSecret = `signing-${randomBytes(16).toString("hex")}`;
  const apiKey = `api-key-${randomBytes(20).toString("hex")}`;
  const wrongApiKey = `wrong-key-${randomBytes(20).toString("hex")}`;
  let restoreConsole: () => void = () => undefined;
  let redisServer: RedisTestServer | undefined;
  let demo: DistributedDemo | undefined;
  let browser: Browser | undefined;
  let receiver: Awaited<ReturnType<typeof startTaskReceiver>> | undefined;
  let apiServer: PushServer | undefined;
  let apiBus: RedisBus | undefined;
  let apiQueue: BullmqQueue | undefined;
  let worker: ChildProcess | undefined;
  let pushChild: ChildProcess | undefined;

  before(async () => {
    restoreConsole = logs.captureConsole();
    addSecret(secrets, "Redis password", redisPassword);
    addSecret(secrets, "encryption key (hex)", encryptionKey.toString("hex"));
    addSecret(secrets, "encryption key (base64)", encryptionKey.toString("base64"));
    addSecret(secrets, "signing secret", signingSecret);
    addSecret(secrets, "API key", apiKey);
    addSecret(secrets, "invalid API key", wrongApiKey);
  });

  after(async () => {
    await browser?.close();
    await stopChild(pushChild);
    await stopChild(worker);
    await apiServer?.close();
    await apiBus?.close();
    await apiQueue?.close();
    await demo?.close();
    if (receiver !== undefined) {
      receiver.server.closeAllConnections();
      receiver.server.close();
    }
    await redisServer?.stop();
    restoreConsole();
  });

  it("logs no secret during a full run", { timeout: 90_000 }, async () => {
    redisServer = await startRedisServer({ password: redisPassword });
    const redisUrl = redisServer.url;
    assert.ok(redisUrl.includes(redisPassword), "the Redis URL carries the password");

    // The portal's in-process parts: two push servers, the queue and the worker.
    demo = await startDistributedDemo({
      redisUrl,
      encryptionKey: encryptionKey.toString("hex"),
      keyPrefix,
      portalPort: 0,
      pushPort: 0,
      secondPushPort: 0,
      previewDelayMs: 100,
      logger: logs.logger("distributed demo"),
    });
    const portalUrl = demo.portalUrl;
    const authUrl = `${portalUrl}/patpush/auth`;

    // A push server with the producer API and a task queue, whose tasks the worker child signs.
    receiver = await startTaskReceiver();
    const closedOrigin = await closedPortOrigin();
    const taskConfig = {
      allowedOrigins: [receiver.origin, closedOrigin],
      encryptionKey: encryptionKey.toString("base64"),
      keyPrefix,
    };
    const apiLogger = logs.logger("api push server");
    apiBus = new RedisBus({ redisUrl, keyPrefix, logger: apiLogger });
    apiQueue = new BullmqQueue({ redisUrl, config: taskConfig, logger: apiLogger });
    apiServer = await startPushServer({
      config: { port: 0, authUrl, allowedOrigins: [portalUrl], apiKey, redisUrl, keyPrefix },
      bus: apiBus,
      logger: apiLogger,
      queue: apiQueue,
      taskConfig,
    });

    worker = startPatpush("worker", {
      PATPUSH_REDIS_URL: redisUrl,
      PATPUSH_QUEUE: SIGNED_QUEUE,
      PATPUSH_KEY_PREFIX: keyPrefix,
      PATPUSH_ENCRYPTION_KEY: encryptionKey.toString("base64"),
      PATPUSH_ALLOWED_ORIGINS: `${receiver.origin},${closedOrigin}`,
      PATPUSH_SIGNING_SECRET: signingSecret,
      PATPUSH_LOG_LEVEL: "debug",
    });
    logs.child("patpush worker", worker);
    pushChild = startPatpush("push-server", {
      PATPUSH_AUTH_URL: authUrl,
      PATPUSH_PUSH_PORT: "0",
      PATPUSH_PUSH_ORIGINS: portalUrl,
      PATPUSH_REDIS_URL: redisUrl,
      PATPUSH_KEY_PREFIX: keyPrefix,
      PATPUSH_API_KEY: apiKey,
      PATPUSH_LOG_LEVEL: "debug",
    });
    logs.child("patpush push-server", pushChild);
    const childPort = await listeningPort(pushChild);
    const childHttpUrl = `http://127.0.0.1:${childPort}`;

    // A browser session: log in, upload, wait for the pushed preview, open the second push server.
    browser = await launchChromium();
    const context = await browser.newContext();
    const page = await context.newPage();
    await logIn(page, portalUrl, "alice");
    const authenticator = await page.locator('input[name="_authenticator"]').first().inputValue();
    addSecret(secrets, "authenticator", authenticator);
    for (const cookie of await context.cookies()) {
      addSecret(secrets, `browser cookie ${cookie.name}`, cookie.value);
    }
    await page.setInputFiles('form.upload input[type="file"]', {
      name: "secret.png",
      mimeType: "image/png",
      buffer: await makePng(64, 48),
    });
    await Promise.all([
      page.waitForURL(`${portalUrl}/workspace`),
      page.click("form.upload button"),
    ]);
    const documentId = await documentIdOf(page, "secret.png");
    await page.locator(`#doc-${documentId}-preview img`).waitFor({ timeout: 20_000 });
    await page.goto(`${portalUrl}/workspace?push=1`);
    await page.locator(`#doc-${documentId}-preview img`).waitFor({ timeout: 20_000 });

    // Sockets with a wrong session cookie, at the demo's push servers and the child.
    const childSocketUrl = `ws://127.0.0.1:${childPort}/push`;
    for (const [index, url] of [...demo.pushUrls, childSocketUrl].entries()) {
      const wrongSession = `wrong-session-${index}-${randomBytes(12).toString("hex")}`;
      addSecret(secrets, `wrong session cookie ${index}`, wrongSession);
      const rejected = await requestUpgrade(url, {
        origin: portalUrl,
        cookie: `__ac=${wrongSession}; other=${wrongSession}`,
        readBody: true,
      });
      assert.equal(rejected.status, 401, `a wrong cookie at ${url} got ${rejected.status}`);
      assert.ok(!rejected.body?.includes(wrongSession), "the rejection body shows the cookie");
    }

    // The browser's own session cookie from a page of another origin.
    const session = (await context.cookies()).find((cookie) => cookie.name === "__ac");
    assert.ok(session !== undefined, "the browser has no __ac cookie");
    const foreign = await requestUpgrade(demo.pushUrls[0], {
      origin: "http://attacker.example",
      cookie: `__ac=${session.value}`,
      readBody: true,
    });
    assert.equal(foreign.status, 403, `a foreign origin got ${foreign.status}`);

    // Producer API calls with the valid and an invalid key, on both API servers.
    for (const httpUrl of [apiServer.httpUrl, childHttpUrl]) {
      const message = { user: "alice", event: "leak-check", data: { n: 1 } };
      const valid = await postApi(`${httpUrl}/api/publish`, `Bearer ${apiKey}`, message);
      assert.equal(valid.status, 202, valid.body);
      const invalid = await postApi(`${httpUrl}/api/publish`, `Bearer ${wrongApiKey}`, message);
      assert.equal(invalid.status, 401, invalid.body);
      const invalidBody = await postApi(`${httpUrl}/api/publish`, `Bearer ${apiKey}`, {
        user: "alice",
        html: 42,
        token: apiKey,
      });
      assert.equal(invalidBody.status, 400, invalidBody.body);
      assert.ok(!invalidBody.body.includes(apiKey), "an error body repeats the API key");
    }

    // API tasks with a cookie, an Authorization value and an authenticator.
    const taskCookie = `task-session-${randomBytes(12).toString("hex")}`;
    const taskAuthenticator = `task-authenticator-${randomBytes(12).toString("hex")}`;
    const taskAuthorization = `Basic ${Buffer.from(`alice:${randomUUID()}`).toString("base64")}`;
    addSecret(secrets, "task cookie", taskCookie);
    addSecret(secrets, "task authenticator", taskAuthenticator);
    addSecret(secrets, "task Authorization", taskAuthorization);
    for (const name of ["signed", "denied", "flaky"]) {
      const result = await postApi(`${apiServer.httpUrl}/api/tasks`, `Bearer ${apiKey}`, {
        url: `${receiver.origin}/workspace/@@${name}`,
        name,
        queue: SIGNED_QUEUE,
        data: { step: name },
        cookies: { __ac: taskCookie },
        authorization: taskAuthorization,
        authenticator: taskAuthenticator,
      });
      assert.equal(result.status, 202, result.body);
    }

    // A task whose worker URL refuses connections, so the worker logs a network error.
    const unreachable = await postApi(`${apiServer.httpUrl}/api/tasks`, `Bearer ${apiKey}`, {
      url: `${closedOrigin}/workspace/@@unreachable`,
      name: "unreachable",
      queue: SIGNED_QUEUE,
      attempts: 1,
      cookies: { __ac: taskCookie },
      authorization: taskAuthorization,
      authenticator: taskAuthenticator,
    });
    assert.equal(unreachable.status, 202, unreachable.body);

    const outside = await postApi(`${apiServer.httpUrl}/api/tasks`, `Bearer ${apiKey}`, {
      url: "http://127.0.0.2:9/elsewhere",
      name: "outside",
      cookies: { __ac: taskCookie },
      authenticator: taskAuthenticator,
    });
    assert.equal(outside.status, 400, outside.body);
    const { received } = receiver;
    await waitUntil(() => received.length >= 4, "the receiver got the signed tasks", 20_000);
    const unreachableFailed = () =>
      logs
        .lines()
        .some(
          ({ line }) => line.includes('"taskName":"unreachable"') && line.includes("task failed"),
        );
    await waitUntil(unreachableFailed, "the worker logged the unreachable task", 20_000);

    for (const task of received) {
      const signature = String(task.headers["x-task-signature"] ?? "");
      assert.match(signature, /^t=\d+,v1=[0-9a-f]{64}$/, `task ${task.name} carries no signature`);
      addSecret(secrets, `X-Task-Signature of ${task.name}`, signature);
      addSecret(secrets, `signature digest of ${task.name}`, signature.split("v1=")[1]!);
      assert.equal(task.headers.authorization, taskAuthorization);
      addSecret(secrets, `Cookie header of ${task.name}`, String(task.headers.cookie));
      assert.ok(task.body.includes(taskAuthenticator), "the task body carries the authenticator");
    }

    // Queue commands with the right and with a wrong Redis password.
    const wrongPassword = `wrong-redis-pw-${randomBytes(12).toString("hex")}`;
    addSecret(secrets, "wrong Redis password", wrongPassword);
    const wrongUrl = redisUrl.replace(encodeURIComponent(redisPassword), wrongPassword);
    for (const [name, url] of [
      ["list", redisUrl],
      ["list with a wrong password", wrongUrl],
    ] as const) {
      const command = spawn(process.execPath, [PATPUSH_BIN, "tasks", "failed", "list"], {
        cwd: PROJECT_ROOT,
        env: {
          PATH: process.env.PATH ?? "",
          PATPUSH_REDIS_URL: url,
          PATPUSH_QUEUE: SIGNED_QUEUE,
          PATPUSH_KEY_PREFIX: keyPrefix,
          PATPUSH_LOG_LEVEL: "debug",
        },
        stdio: ["ignore", "pipe", "pipe"],
      });
      logs.child(`patpush tasks failed ${name}`, command);
      const [code] = (await once(command, "exit")) as [number | null];
      assert.equal(code, url === redisUrl ? 0 : 1, `patpush tasks failed ${name} exited ${code}`);
    }

    // Clients with a wrong Redis password log the rejected AUTH, which names its argument.
    const wrongLogger = logs.logger("clients with a wrong Redis password");
    const wrongBus = new RedisBus({ redisUrl: wrongUrl, keyPrefix, logger: wrongLogger });
    const wrongQueue = new BullmqQueue({
      redisUrl: wrongUrl,
      config: taskConfig,
      logger: wrongLogger,
    });
    const wrongPassLines = () =>
      logs.lines().filter(({ line }) => line.includes("WRONGPASS")).length;
    await waitUntil(() => wrongPassLines() >= 5, "the clients logged the rejected AUTH", 10_000);
    await wrongBus.close();
    await wrongQueue.close();

    // Commands whose configuration is invalid print errors that must not show the values.
    const badKey = randomBytes(31).toString("hex");
    const shortSecret = `short-${randomBytes(4).toString("hex")}`;
    const shortApiKey = `short-api-${randomBytes(6).toString("hex")}`;
    addSecret(secrets, "invalid encryption key", badKey);
    addSecret(secrets, "too short signing secret", shortSecret);
    addSecret(secrets, "too short API key", shortApiKey);
    const invalidRuns: Array<[string, Record<string, string>]> = [
      [
        "worker",
        {
          PATPUSH_REDIS_URL: redisUrl,
          PATPUSH_ENCRYPTION_KEY: badKey,
          PATPUSH_SIGNING_SECRET: shortSecret,
          PATPUSH_ALLOWED_ORIGINS: receiver.origin,
        },
      ],
      [
        "push-server",
        { PATPUSH_AUTH_URL: authUrl, PATPUSH_REDIS_URL: redisUrl, PATPUSH_API_KEY: shortApiKey },
      ],
    ];
    for (const [command, env] of invalidRuns) {
      const child = startPatpush(command, { ...env, PATPUSH_LOG_LEVEL: "debug" });
      logs.child(`patpush ${command} with an invalid configuration`, child);
      const [code] = (await once(child, "exit")) as [number | null];
      assert.equal(code, 2, `patpush ${command} with an invalid configuration exited ${code}`);
    }

    // Log out, so the portal logs that too, then stop every part so shutdown lines are in.
    await page.click('form[action="/logout"] button');
    await browser.close();
    browser = undefined;
    await stopChild(pushChild);
    await stopChild(worker);
    await apiServer.close();
    await apiBus.close();
    await apiQueue.close();
    await demo.close();
    apiServer = undefined;
    apiBus = undefined;
    apiQueue = undefined;
    demo = undefined;

    // The run logged what it did, at debug level, in every source.
    const lines = logs.lines();
    const text = lines.map((entry) => entry.line).join("\n");
    for (const phrase of [
      "task dispatched",
      "task unauthorised",
      "task retried",
      "task failed",
      "auth rejected",
      "api request rejected",
      "socket opened",
      "message delivered",
      "task enqueued",
      "user logged out",
    ]) {
      assert.ok(text.includes(phrase), `no log line "${phrase}" in the run`);
    }
    for (const name of ["patpush worker stdout", "patpush push-server stdout"]) {
      const source = logs.sources.find((entry) => entry.name === name);
      assert.ok(source !== undefined, `no log source ${name}`);
      assert.ok(source.chunks.length > 0, `${name} logged nothing`);
    }

    const leaks = findLeaks(lines, secrets);
    assert.deepEqual(leaks, [], `${leaks.length} log lines contain secrets`);
  });

  it("finds a planted secret", () => {
    const secret = { name: "planted", value: "s3cr3t-value" };
    const leaks = findLeaks([{ source: "test", line: 'cookie="__ac=s3cr3t-value"' }], [secret]);
    assert.deepEqual(leaks, ['test: planted in: cookie="__ac=[planted]"']);

    const longLine = { source: "test", line: `${"x".repeat(2000)} s3cr3t-value` };
    const [longLeak] = findLeaks([longLine], [secret]);
    assert.ok(longLeak?.includes("[planted]"), "a long line is cut before its secret");
    assert.ok(!longLeak?.includes(secret.value), "the failure message shows the secret");
  });
});
