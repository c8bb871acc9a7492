import type {
  HttpResponse,
  TemplatedApp,
  WebSocket,
  us_listen_socket,
} from "@trufflesuite/uws-js-unofficial";
import { createLogger, type Logger } from "../common/logger.ts";
import { CloseCode } from "../protocol/close-codes.ts";
import type { WelcomeFrame } from "../protocol/frames.ts";
import type { TaskConfigInput } from "../tasks/config.ts";
import type { TaskQueue } from "../tasks/types.ts";
import { createProducerApi, type ProducerApi } from "./api.ts";
import { Admission } from "./admission.ts";
import { PortalAuth } from "./auth.ts";
import type { Bus } from "./bus.ts";
import { parseServerConfig, type ServerConfig, type ServerConfigInput } from "./config.ts";
import { Delivery, socketTopics } from "./delivery.ts";
import { PushServerError, ServerErrorCode } from "./errors.ts";
import { RecoveryHistory } from "./history.ts";
import { writeJson } from "./http.ts";
import { LogThrottle, REJECTION_LOG_INTERVAL_MS } from "./log-throttle.ts";
import { closeCodeLabel, PushMetrics, writeMetrics } from "./metrics.ts";
import { REJECTION_REASONS } from "./rejection.ts";
import { resumeSocket, sendReplay } from "./resume.ts";
import { Revalidation } from "./revalidation.ts";
import { SocketDrain } from "./shutdown.ts";
import { connectionFields, SocketRegistry } from "./socket-registry.ts";
import { SocketUpgrade, type Connection } from "./upgrade.ts";
import { loadUws, type Uws } from "./uws.ts";

/** A running push server. */
export interface PushServer {
  /** Port the server listens on. A configured port 0 resolves to the port the system picked. */
  readonly port: number;
  /** WebSocket URL: ws://host:port/path. */
  readonly url: string;
  /** HTTP base URL: http://host:port. */
  readonly httpUrl: string;
  /** Number of open sockets. */
  connectionCount(): number;
  /**
   * Stops listening, closes every socket with CloseCode.RESTART, waits up to
   * `shutdownDrainMs` for them to receive what was sent before, closes the
   * rest by force and leaves the bus.
   */
  close(): Promise<void>;
}

/** Options of {@link startPushServer}. */
export interface PushServerOptions {
  config: ServerConfigInput;
  bus: Bus;
  /** Root logger, of which the server logs through children. @defaultValue `createLogger()` */
  logger?: Logger;
  /** Task queue of `POST /api/tasks`. Without one, that route returns 503. */
  queue?: TaskQueue;
  /** Task options of `POST /api/tasks` (allowed origins, cookie names), required with `queue`. */
  taskConfig?: TaskConfigInput;
}

/**
 * Close message that uWS (v20.30) hands to the close handler after an inbound
 * frame over maxPayloadLength. It drops the connection without a close frame,
 * so both sides see code 1006, and this text is the only sign of the cause.
 */
const TOO_BIG_CLOSE_MESSAGE = "Received too big message";

/** Interval of the slow-consumer sweep and of the history's age pruning, in milliseconds. */
const SWEEP_INTERVAL_MS = 1000;

/**
 * Starts a push server: validates `config` (ConfigError on failure), loads
 * the uWS native binary, listens, and delivers every message from `bus`.
 */
export async function startPushServer(options: PushServerOptions): Promise<PushServer> {
  const config = parseServerConfig(options.config);
  const logger = (options.logger ?? createLogger()).child({ component: "push-server" });
  const api = createProducerApi(config, options, logger);
  const server = new UwsPushServer(loadUws(logger), config, options.bus, logger, api);
  await server.listen();
  return server;
}

class UwsPushServer implements PushServer {
  readonly #uws: Uws;
  readonly #config: ServerConfig;
  readonly #bus: Bus;
  readonly #logger: Logger;
  readonly #app: TemplatedApp;
  readonly #auth: PortalAuth;
  readonly #history: RecoveryHistory;
  readonly #metrics: PushMetrics;
  readonly #sockets: SocketRegistry<Connection>;
  readonly #delivery: Delivery;
  readonly #admission: Admission;
  readonly #revalidation: Revalidation<Connection>;
  readonly #upgrade: SocketUpgrade;
  /** One warning per rejected inbound frame reason and address every 10 seconds. */
  readonly #frameLogThrottle = new LogThrottle(REJECTION_LOG_INTERVAL_MS);
  readonly #drain: SocketDrain<Connection>;
  #listenSocket: us_listen_socket | undefined;
  #unsubscribe: (() => void) | undefined;
  #sweepTimer: NodeJS.Timeout | undefined;
  #closing: Promise<void> | undefined;
  #port = 0;

  constructor(uws: Uws, config: ServerConfig, bus: Bus, logger: Logger, api?: ProducerApi) {
    this.#uws = uws;
    this.#config = config;
    this.#bus = bus;
    this.#logger = logger;
    this.#auth = new PortalAuth(config);
    this.#app = uws.App();
    this.#metrics = new PushMetrics(() => this.#sockets.size, REJECTION_REASONS);
    this.#sockets = new SocketRegistry(config.maxBackpressureBytes, this.#metrics, logger);
    this.#drain = new SocketDrain(this.#sockets);
    this.#history = new RecoveryHistory({
      windowMs: config.recoveryWindowMs,
      maxMessages: config.recoveryMaxMessages,
    });
    this.#delivery = new Delivery(
      this.#app,
      this.#history,
      this.#metrics,
      {
        afterUserPublish: (user) => this.#sockets.endSlowSocketsOf(user),
        onReset: () => this.#closeAll("message stream reset"),
        onLogout: (user) => this.#logOut(user),
      },
      logger,
    );
    this.#admission = new Admission({
      allowedOrigins: config.allowedOrigins,
      allowMissingOrigin: config.allowMissingOrigin,
      maxSocketsPerUser: config.maxSocketsPerUser,
      maxSocketsPerIp: config.maxSocketsPerIp,
      upgradesPerIpPerSecond: config.upgradesPerIpPerSecond,
      trustedProxies: config.trustedProxies,
      auth: this.#auth,
      delivery: this.#delivery,
      metrics: this.#metrics,
      socketsOfUser: (user) => this.#sockets.countOf(user),
      resumeWaitMs: config.resumeWaitMs,
      isClosing: () => this.#closing !== undefined,
      logger,
    });
    this.#upgrade = new SocketUpgrade(this.#admission);
    this.#revalidation = new Revalidation({
      intervalMs: config.revalidateIntervalMs,
      auth: this.#auth,
      metrics: this.#metrics,
      logger,
    });
    this.#addRoutes(api);
  }

  get port(): number {
    return this.#port;
  }

  get url(): string {
    return `ws://${hostForUrl(this.#config.host)}:${this.#port}${this.#config.path}`;
  }

  get httpUrl(): string {
    return `http://${hostForUrl(this.#config.host)}:${this.#port}`;
  }

  connectionCount(): number {
    return this.#sockets.size;
  }

  async listen(): Promise<void> {
    const { host, port, path } = this.#config;
    const listenSocket = await new Promise<us_listen_socket | false>((resolve) => {
      // Without the exclusive flag uWS sets SO_REUSEPORT, so a second server on a
      // taken port would start and the kernel would split connections between them.
      this.#app.listen(host, port, this.#uws.LIBUS_LISTEN_EXCLUSIVE_PORT, resolve);
    });
    if (!listenSocket) {
      this.#app.close();
      await this.#auth.close();
      throw new PushServerError(
        ServerErrorCode.LISTEN_FAILED,
        `failed to listen on ${host}:${port}, because the port is in use or the host is not ` +
          "a local address; set another port or host",
      );
    }

    this.#listenSocket = listenSocket;
    this.#port = this.#uws.us_socket_local_port(listenSocket);
    this.#unsubscribe = this.#bus.subscribe((event) => this.#delivery.handle(event));
    this.#sweepTimer = setInterval(() => this.#sweep(), SWEEP_INTERVAL_MS);
    this.#sweepTimer.unref();
    this.#logger.info({ host, port: this.#port, path }, "push server listening");
  }

  close(): Promise<void> {
    this.#closing ??= this.#shutdown();
    return this.#closing;
  }

  async #shutdown(): Promise<void> {
    const started = Date.now();
    if (this.#listenSocket) this.#uws.us_listen_socket_close(this.#listenSocket);
    clearInterval(this.#sweepTimer);
    // Upgrades waiting for the bus go on at once and are rejected as closing.
    // One turn of the event loop lets them write that response before app.close() below.
    this.#delivery.close();
    await new Promise((resolve) => setImmediate(resolve));

    const connections = this.#sockets.size;
    const forced = await this.#drain.run(this.#config.shutdownDrainMs, this.#logger);

    // Drops idle HTTP keep-alive connections and upgrades still waiting for the portal.
    this.#app.close();
    this.#unsubscribe?.();
    await this.#auth.close();
    this.#logger.info(
      { connections, forced, durationMs: Date.now() - started },
      "push server closed",
    );
  }

  /** Closes every socket with RESTART, so its client reconnects and resumes. */
  #closeAll(reason: string): void {
    const count = this.#sockets.size;
    for (const ws of this.#sockets.list()) ws.end(CloseCode.RESTART, reason);
    this.#logger.warn({ sockets: count, reason }, "sockets closed");
  }

  /**
   * Handles a logout message: drops the user's cached sessions, rejects
   * the user's upgrades in progress and closes the user's sockets with 4001.
   */
  #logOut(user: string): void {
    const dropped = this.#auth.dropUser(user);
    this.#admission.revoke(user);
    const sockets = this.#sockets.listOf(user);
    for (const ws of sockets) ws.end(CloseCode.AUTH_REVOKED, "logged out");
    this.#metrics.logoutCloses.inc(sockets.length);
    this.#logger.info({ user, sockets: sockets.length, cacheEntries: dropped }, "user logged out");
  }

  #sweep(): void {
    this.#sockets.endSlowSockets();
    this.#history.prune();
    this.#admission.prune();
    this.#frameLogThrottle.prune();
    this.#revalidation.tick();
  }

  #addRoutes(api: ProducerApi | undefined): void {
    const { path, maxPayloadBytes, maxBackpressureBytes, idleTimeoutS } = this.#config;
    this.#app.ws<Connection>(path, {
      maxPayloadLength: maxPayloadBytes,
      // The slow-consumer check closes a socket past maxBackpressureBytes with 4003. This
      // higher cap is a backstop for a burst between checks: uWS drops a socket past it
      // without a close frame, so the client sees 1006.
      maxBackpressure: Math.min(2 * maxBackpressureBytes, 2 ** 31 - 1),
      // The typings declare a number, but the binary reads it as a boolean.
      closeOnBackpressureLimit: 1,
      idleTimeout: idleTimeoutS,
      sendPingsAutomatically: true,
      compression: this.#uws.DISABLED,
      upgrade: (res, req, context) => this.#upgrade.onUpgrade(res, req, context),
      open: (ws) => this.#onOpen(ws),
      message: (ws, message, isBinary) => this.#onMessage(ws, message, isBinary),
      drain: (ws) => this.#drain.onDrain(ws),
      close: (ws, code, message) => this.#onClose(ws, code, message),
    });
    // uWS passes a GET on the socket path without a valid WebSocket handshake on to here.
    this.#app.get(path, (res) =>
      writeJson(res, 426, { error: "websocket upgrade required", path }),
    );
    this.#app.get(`${path}/auth`, (res, req) => this.#admission.onAuthRequest(res, req));
    this.#app.options(`${path}/auth`, (res, req) => this.#admission.onAuthPreflight(res, req));
    this.#app.get("/health", (res) => writeJson(res, 200, { status: "ok" }));
    this.#app.get("/metrics", (res) => writeMetrics(res, this.#metrics, this.#logger));
    api?.addRoutes(this.#app, this.#metrics.registry);
    this.#app.get("/ready", (res) => this.#onReadyRequest(res));
    this.#app.any("/*", (res) => writeJson(res, 404, { error: "not found" }));
  }

  /** Responds 200 while the bus can deliver (a bus without `ready()` always can), else 503. */
  #onReadyRequest(res: HttpResponse): void {
    if (this.#bus.ready?.() ?? true) {
      writeJson(res, 200, { status: "ready" });
    } else {
      writeJson(res, 503, { status: "unavailable", reason: "redis" });
    }
  }

  /**
   * Registers the socket and defers the rest to {@link #welcome}, in a
   * microtask that runs after the upgrade's `res.cork()` has returned.
   *
   * NOTE: in uWS.js 20.30, cork() then reads the old HTTP response's state
   * from memory that the upgrade released, and now and then closes the new
   * socket with 1006 (uNetworking/uWebSockets pull request 1929). Deferring
   * the welcome does not prevent that, but it makes such a socket close
   * before its welcome, having sent nothing. Clients treat a socket that
   * closed before its welcome as a failed connect and reconnect with the
   * same `last`, so no message is lost.
   */
  #onOpen(ws: WebSocket<Connection>): void {
    const connection = ws.getUserData();
    this.#sockets.add(ws);
    this.#revalidation.schedule(ws);
    queueMicrotask(() => this.#welcome(ws, connection));
  }

  /**
   * Subscribes the socket, then sends the welcome and the replayed frames in
   * one synchronous run, so no delivery can come between them. Does nothing
   * for a socket that closed or began to drain since it opened.
   */
  #welcome(ws: WebSocket<Connection>, connection: Connection): void {
    if (connection.closed || connection.draining) return;
    connection.welcomed = true;
    ws.cork(() => {
      const topics = socketTopics(connection);
      for (const topic of topics) ws.subscribe(topic);

      const resumption = resumeSocket(
        this.#history,
        this.#delivery.position,
        topics,
        connection.last,
      );

      const welcome: WelcomeFrame = {
        type: "welcome",
        id: resumption.id,
        recovery: resumption.recovery,
        user: connection.user,
        channels: connection.channels,
        conn: connection.conn,
      };
      ws.send(JSON.stringify(welcome), false, false);
      this.#metrics.recoveries.inc({ outcome: resumption.recovery });
      this.#logger.info(
        {
          ...connectionFields(connection),
          channels: connection.channels.length,
          recovery: resumption.recovery,
          last: connection.last,
          replaying: resumption.frames.length,
        },
        "socket opened",
      );
      const sent = sendReplay(ws, resumption.frames, this.#sockets);
      this.#metrics.framesReplayed.inc(sent);
    });
  }

  #onMessage(ws: WebSocket<Connection>, message: ArrayBuffer, isBinary: boolean): void {
    const connection = ws.getUserData();
    if (isBinary) {
      this.#metrics.inboundFramesRejected.inc({ reason: "binary" });
      this.#logFrameRejection(connection, "binary", { bytes: message.byteLength });
      ws.end(CloseCode.PROTOCOL_ERROR, "binary frames are not accepted");
      return;
    }
    // Clients have nothing to send, and maxPayloadLength already bounds each frame.
    this.#logger.debug(
      { ...connectionFields(connection), bytes: message.byteLength },
      "inbound frame ignored",
    );
  }

  #onClose(ws: WebSocket<Connection>, code: number, message: ArrayBuffer): void {
    const connection = ws.getUserData();
    connection.closed = true;
    this.#sockets.delete(ws);
    this.#revalidation.unschedule(ws);
    this.#admission.releaseSocket(connection.ip);
    this.#metrics.socketCloses.inc({ code: closeCodeLabel(code) });
    const tooLarge = code === 1006 && Buffer.from(message).toString() === TOO_BIG_CLOSE_MESSAGE;
    if (tooLarge) {
      this.#metrics.inboundFramesRejected.inc({ reason: "too_large" });
      const { maxPayloadBytes } = this.#config;
      this.#logFrameRejection(connection, "too_large", { code, maxPayloadBytes });
    }
    const { welcomed } = connection;
    this.#logger.info({ ...connectionFields(connection), code, welcomed }, "socket closed");
    this.#drain.onClose();
  }

  /** Logs a rejected inbound frame, at most once per reason and address every 10 seconds. */
  #logFrameRejection(connection: Connection, reason: string, fields: object): void {
    const { ip } = connection;
    const skipped = this.#frameLogThrottle.admit(`${reason}|${ip}`);
    if (skipped === undefined) return;
    this.#logger.warn(
      { ...connectionFields(connection), ...fields, reason, ip, skipped },
      "inbound frame rejected",
    );
  }
}

function hostForUrl(host: string): string {
  return host.includes(":") ? `[${host}]` : host;
}
