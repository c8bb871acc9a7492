import { mkdtemp, rm } from "node:fs/promises";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import { createServer as createNetServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseConfig } from "../../common/config.ts";
import { createLogger, type Logger } from "../../common/logger.ts";
import { PatpushError } from "../../protocol/errors.ts";
import { EmbeddedBus, startPushServer, type Bus, type PushServer } from "../../server/index.ts";
import { InProcessRunner, TaskProducer } from "../../tasks/index.ts";
import { CsrfAuthenticator } from "./authenticator.ts";
import { ensureBrowserBundle } from "./bundle.ts";
import { demoConfigSchema, PortInUseError, type DemoConfigInput } from "./config.ts";
import type { PortalServices, PortalSettings } from "./context.ts";
import { DocumentStore } from "./documents.ts";
import { createRequestListener } from "./routes.ts";
import { SessionStore } from "./sessions.ts";

export type DemoOptions = DemoConfigInput & { logger?: Logger };

/** A running demo; `close()` stops every part and removes a temporary data folder. */
export interface Demo {
  /** Canonical portal URL, e.g. `http://127.0.0.1:8480`, with the actual port. */
  portalUrl: string;
  /** WebSocket URL of the push server, with the actual port. */
  pushUrl: string;
  bus: Bus;
  runner: InProcessRunner;
  close(): Promise<void>;
}

function listen(server: Server, port: number, host: string): Promise<number> {
  return new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, host, () => {
      server.off("error", reject);
      const address = server.address();
      resolve(typeof address === "object" && address !== null ? address.port : port);
    });
  });
}

/** Returns true when nothing can listen on `host:port` because something else does. */
function isPortTaken(port: number, host: string): Promise<boolean> {
  if (port === 0) return Promise.resolve(false);
  return new Promise((resolve) => {
    const probe = createNetServer();
    probe.once("error", (err: NodeJS.ErrnoException) => resolve(err.code === "EADDRINUSE"));
    probe.listen(port, host, () => probe.close(() => resolve(false)));
  });
}

/** Returns the host part of a URL for `host`, with a wildcard address replaced by loopback. */
function urlHost(host: string): string {
  if (host === "0.0.0.0" || host === "::") return "127.0.0.1";
  return host.includes(":") ? `[${host}]` : host;
}

/**
 * Starts the demo in one process. The portal HTTP server starts first, so
 * its port is known. Then come an embedded bus, the push server, which
 * authenticates sockets against the portal's /patpush/auth, an in-process
 * task runner and the task producer that the portal enqueues previews with.
 */
export async function startDemo(options: DemoOptions = {}): Promise<Demo> {
  const { logger: givenLogger, ...input } = options;
  const config = parseConfig("portal", demoConfigSchema, input);
  const logger = givenLogger ?? createLogger();
  const portalLog = logger.child({ component: "portal" });
  if (config.buildBundle) await ensureBrowserBundle(portalLog);

  const ownsDataDir = config.dataDir === undefined;
  const dataDir = config.dataDir ?? (await mkdtemp(join(tmpdir(), "patpush-portal-")));
  const cleanups: (() => Promise<void>)[] = [];
  if (ownsDataDir) cleanups.push(() => rm(dataDir, { recursive: true, force: true }));

  // Until every part runs, the portal returns 503 instead of leaving requests hanging.
  const server = createServer();
  const starting = (_req: IncomingMessage, res: ServerResponse): void => {
    res
      .writeHead(503, { "Content-Type": "text/plain; charset=utf-8", "Retry-After": "1" })
      .end("starting");
  };
  server.on("request", starting);

  const closeAll = async (): Promise<void> => {
    for (const cleanup of cleanups.splice(0).reverse()) {
      await cleanup().catch((err: unknown) =>
        portalLog.error({ err }, "demo shutdown step failed"),
      );
    }
  };

  try {
    const portalPort = await listen(server, config.portalPort, config.host).catch(
      (err: NodeJS.ErrnoException) => {
        throw err.code === "EADDRINUSE"
          ? new PortInUseError("portal", config.host, config.portalPort, err)
          : err;
      },
    );
    cleanups.push(() => closeServer(server));

    const hostPart = urlHost(config.host);
    const canonicalOrigin = `http://${hostPart}:${portalPort}`;
    const origins = [
      ...new Set([
        canonicalOrigin,
        `http://127.0.0.1:${portalPort}`,
        `http://localhost:${portalPort}`,
      ]),
    ];

    const bus = new EmbeddedBus({ logger });
    cleanups.push(() => bus.close());

    const push = await startPush(
      config.host,
      config.pushPort,
      `${canonicalOrigin}/patpush/auth`,
      origins,
      bus,
      logger,
    );
    cleanups.push(() => push.close());

    const sessions = new SessionStore();
    const authenticator = new CsrfAuthenticator();
    const runner = new InProcessRunner({ config: { allowedOrigins: origins }, logger });
    cleanups.push(() => runner.close());
    const producer = new TaskProducer({
      config: { allowedOrigins: origins },
      queue: runner,
      logger,
      authenticator: (req) => {
        const session = sessions.sessionFrom(req);
        if (session === undefined) {
          throw new PatpushError(
            "PATPUSH_PORTAL_NO_SESSION",
            "cannot make an authenticator: the request has no session",
          );
        }
        return authenticator.tokenFor(session.token);
      },
    });

    const settings: PortalSettings = {
      canonicalOrigin,
      origins,
      pushPort: push.port,
      pushPath: new URL(push.url).pathname,
      previewDelayMs: config.previewDelayMs,
      maxUploadBytes: config.maxUploadBytes,
      maxFilesPerUpload: config.maxFilesPerUpload,
      dataDir,
    };
    const services: PortalServices = {
      settings,
      sessions,
      authenticator,
      documents: new DocumentStore(dataDir),
      bus,
      producer,
      logger: portalLog,
    };
    server.off("request", starting);
    server.on("request", createRequestListener(services));
    portalLog.info({ portalUrl: canonicalOrigin, pushUrl: push.url, dataDir }, "demo started");

    let closing: Promise<void> | undefined;
    const close = (): Promise<void> =>
      (closing ??= closeAll().then(() => portalLog.info("demo stopped")));
    return { portalUrl: canonicalOrigin, pushUrl: push.url, bus, runner, close };
  } catch (err) {
    await closeAll();
    throw err;
  }
}

async function startPush(
  host: string,
  port: number,
  authUrl: string,
  allowedOrigins: string[],
  bus: Bus,
  logger: Logger,
): Promise<PushServer> {
  try {
    return await startPushServer({ config: { host, port, authUrl, allowedOrigins }, bus, logger });
  } catch (err) {
    if (await isPortTaken(port, host)) throw new PortInUseError("push", host, port, err);
    throw err;
  }
}

function closeServer(server: Server): Promise<void> {
  return new Promise((resolve) => {
    server.close(() => resolve());
    server.closeAllConnections();
  });
}
