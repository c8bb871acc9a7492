import { mkdtemp, rm } from "node:fs/promises";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import { createServer as createNetServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseConfig } from "../../common/config.ts";
import { createLogger, type Logger } from "../../common/logger.ts";
import { PatpushError } from "../../protocol/errors.ts";
import type { ServerConfigInput } from "../../server/config.ts";
import { EmbeddedBus, startPushServer, type Bus, type PushServer } from "../../server/index.ts";
import { InProcessRunner, TaskProducer, type TaskQueue } from "../../tasks/index.ts";
import { CsrfAuthenticator } from "./authenticator.ts";
import { ensureBrowserBundle } from "./bundle.ts";
import {
  demoConfigSchema,
  PortInUseError,
  type DemoConfig,
  type DemoConfigInput,
} from "./config.ts";
import type { DonePublisher, PortalServices, PortalSettings } from "./context.ts";
import { DocumentStore } from "./documents.ts";
import { createRequestListener } from "./routes.ts";
import { SessionStore } from "./sessions.ts";

/** Push server options besides those the demo sets itself, such as `recoveryMaxMessages`. */
export type PushOverrides = Omit<
  Partial<ServerConfigInput>,
  "host" | "port" | "authUrl" | "allowedOrigins"
>;

export type DemoOptions = DemoConfigInput & {
  logger?: Logger;
  /** Options passed on to the push server of the single-process demo. */
  push?: PushOverrides;
  /**
   * Ports that pages use for the push servers' sockets, in the order of the
   * push servers, when a proxy listens in front of them. When absent, pages
   * use the push servers' own ports.
   */
  pagePushPorts?: readonly number[];
};

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

/** Parts of the portal that differ between the single-process and the distributed mode. */
export interface PortalBackend {
  /**
   * Push servers, all on the same path. A page uses the first unless
   * `?push=<index>` picks another.
   */
  pushServers: readonly [PushServer, ...PushServer[]];
  /** Queue that the task producer adds the preview tasks to. */
  queue: TaskQueue;
  /** Destination of the done messages that the worker view and the notification form publish. */
  publisher: DonePublisher;
}

/** Input of a backend starter: the portal's addresses, a logger and a registry for its cleanups. */
export interface BackendContext {
  config: DemoConfig;
  /** The portal's auth callback URL, for the push servers. */
  authUrl: string;
  /** Portal origins the browser may use; the push servers and the tasks allow exactly these. */
  origins: string[];
  logger: Logger;
  /** Registers a step of `close()`. Steps run in reverse order of registration. */
  onClose(cleanup: () => Promise<void>): void;
}

/** A running portal with the backend that a starter made for it. */
export interface RunningPortal<B extends PortalBackend> {
  portalUrl: string;
  backend: B;
  close(): Promise<void>;
}

/**
 * Starts the portal with a backend. The portal HTTP server starts first, so
 * its port is known, and returns 503 until `startBackend` has made the push
 * servers, the task queue and the publisher. The task producer that the
 * portal enqueues previews with is built on the backend's queue.
 */
export async function startPortal<B extends PortalBackend>(
  options: DemoOptions,
  startBackend: (context: BackendContext) => Promise<B>,
): Promise<RunningPortal<B>> {
  // `push` is for the backend starter, which reads it from its own options.
  const { logger: givenLogger, push: _push, pagePushPorts, ...input } = options;
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

    const backend = await startBackend({
      config,
      authUrl: `${canonicalOrigin}/patpush/auth`,
      origins,
      logger,
      onClose: (cleanup) => cleanups.push(cleanup),
    });
    const pushUrls = backend.pushServers.map((push) => push.url);

    const sessions = new SessionStore();
    const authenticator = new CsrfAuthenticator();
    const producer = new TaskProducer({
      config: { allowedOrigins: origins },
      queue: backend.queue,
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
      pushPorts: pagePushPorts ?? backend.pushServers.map((push) => push.port),
      pushPath: new URL(backend.pushServers[0].url).pathname,
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
      bus: backend.publisher,
      producer,
      logger: portalLog,
    };
    server.off("request", starting);
    server.on("request", createRequestListener(services));
    portalLog.info({ portalUrl: canonicalOrigin, pushUrls, dataDir }, "demo started");

    let closing: Promise<void> | undefined;
    const close = (): Promise<void> =>
      (closing ??= closeAll().then(() => portalLog.info("demo stopped")));
    return { portalUrl: canonicalOrigin, backend, close };
  } catch (err) {
    await closeAll();
    throw err;
  }
}

/**
 * Starts the demo in one process: the portal, an embedded bus, the push
 * server, which authenticates sockets against the portal's /patpush/auth, and
 * an in-process task runner.
 */
export async function startDemo(options: DemoOptions = {}): Promise<Demo> {
  const portal = await startPortal(options, async (context) => {
    const { config, authUrl, origins, logger, onClose } = context;
    const bus = new EmbeddedBus({ logger });
    onClose(() => bus.close());

    const push = await startPush(
      config.host,
      config.pushPort,
      authUrl,
      origins,
      bus,
      logger,
      options.push,
    );
    onClose(() => push.close());

    const runner = new InProcessRunner({ config: { allowedOrigins: origins }, logger });
    onClose(() => runner.close());
    return { pushServers: [push] as [PushServer], queue: runner, publisher: bus, bus, runner };
  });

  const { bus, runner, pushServers } = portal.backend;
  return {
    portalUrl: portal.portalUrl,
    pushUrl: pushServers[0].url,
    bus,
    runner,
    close: portal.close,
  };
}

/**
 * Starts a push server on `host:port`, with `overrides` for its other
 * options. Throws PortInUseError when the start failed because the port is taken.
 */
export async function startPush(
  host: string,
  port: number,
  authUrl: string,
  allowedOrigins: string[],
  bus: Bus,
  logger: Logger,
  overrides: PushOverrides = {},
): Promise<PushServer> {
  try {
    const config = { ...overrides, host, port, authUrl, allowedOrigins };
    return await startPushServer({ config, bus, logger });
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
