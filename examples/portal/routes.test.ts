import assert from "node:assert/strict";
import { mkdtemp, rm } from "node:fs/promises";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { EmbeddedBus } from "../../server/index.ts";
import { InProcessRunner, TaskProducer } from "../../tasks/index.ts";
import type { Demo } from "./app.ts";
import { CsrfAuthenticator } from "./authenticator.ts";
import type { PortalServices } from "./context.ts";
import { DocumentStore } from "./documents.ts";
import { HttpError } from "./http.ts";
import { createRequestListener } from "./routes.ts";
import { SessionStore, type Session } from "./sessions.ts";
import { capturingLogger, LogCapture, sendRaw, startTestPortal } from "./testing.ts";

describe("request listener", () => {
  let demo: Demo;
  let port: number;

  before(async () => {
    ({ demo } = await startTestPortal());
    port = Number(new URL(demo.portalUrl).port);
  });

  after(async () => {
    await demo?.close();
  });

  for (const target of ["http://[::1", "http://a:99999/"]) {
    it(`rejects target ${target} with 400`, async () => {
      const response = await sendRaw(
        port,
        `GET ${target} HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nConnection: close\r\n\r\n`,
      );

      assert.match(response, /^HTTP\/1\.1 400 Bad Request\r\n/);
      assert.match(response, /\r\nContent-Type: text\/plain; charset=utf-8\r\n/);
      assert.match(response, /\r\ninvalid request target\r\n/);

      const health = await fetch(`${demo.portalUrl}/health`);
      assert.equal(health.status, 200);
      assert.deepEqual(await health.json(), { status: "ok" });
    });
  }
});

/**
 * A session store whose lookup throws an HttpError with a header value that
 * writeHead rejects, so the error response itself fails and only the
 * listener's last resort can respond.
 */
class BrokenSessionStore extends SessionStore {
  override sessionFrom(): Session | undefined {
    throw new HttpError(400, "broken", { "X-Detail": "line\r\nbreak" });
  }
}

describe("request listener errors", () => {
  const logs = new LogCapture();
  let server: Server;
  let runner: InProcessRunner;
  let bus: EmbeddedBus;
  let dataDir: string;
  let baseUrl: string;

  before(async () => {
    dataDir = await mkdtemp(join(tmpdir(), "patpush-routes-"));
    server = createServer();
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    baseUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;

    const logger = capturingLogger(logs);
    bus = new EmbeddedBus({ logger });
    runner = new InProcessRunner({ config: { allowedOrigins: [baseUrl] }, logger });
    const services: PortalServices = {
      settings: {
        canonicalOrigin: baseUrl,
        origins: [baseUrl],
        pushPorts: [1],
        pushPath: "/push",
        previewDelayMs: 0,
        maxUploadBytes: 1024,
        maxFilesPerUpload: 1,
        dataDir,
      },
      sessions: new BrokenSessionStore(),
      authenticator: new CsrfAuthenticator(),
      documents: new DocumentStore(dataDir),
      bus,
      producer: new TaskProducer({
        config: { allowedOrigins: [baseUrl] },
        queue: runner,
        authenticator: () => "",
        logger,
      }),
      logger,
    };
    server.on("request", createRequestListener(services));
  });

  after(async () => {
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
    await runner.close();
    await bus.close();
    await rm(dataDir, { recursive: true, force: true });
  });

  it("returns 500 when the error page fails", async () => {
    const cookieValue = "C".repeat(43);
    const response = await fetch(`${baseUrl}/workspace`, {
      headers: { Cookie: `__ac=${cookieValue}` },
      signal: AbortSignal.timeout(5000),
    });

    assert.equal(response.status, 500);
    assert.equal(response.statusText, "Internal Server Error");
    assert.equal(await response.text(), "the portal failed to handle this request");

    const [record] = logs.find("request handling failed");
    assert.equal(record?.level, 50);
    assert.equal(record?.method, "GET");
    assert.equal(record?.path, "/workspace");
    assert.equal((record?.err as { code?: string } | undefined)?.code, "ERR_INVALID_CHAR");
    assert.doesNotMatch(logs.text, new RegExp(cookieValue));
  });

  it("keeps serving after the failure", async () => {
    const response = await fetch(`${baseUrl}/health`);
    assert.equal(response.status, 200);
  });
});
