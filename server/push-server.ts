import { randomBytes } from "node:crypto";
import type {
  HttpRequest,
  HttpResponse,
  TemplatedApp,
  WebSocket,
  us_listen_socket,
  us_socket_context_t,
} from "@trufflesuite/uws-js-unofficial";
import { createLogger, type Logger } from "../common/logger.ts";
import { CloseCode } from "../protocol/close-codes.ts";
import type { WelcomeFrame } from "../protocol/frames.ts";
import type { TaskConfigInput } from "../tasks/config.ts";
import type { TaskQueue } from "../tasks/types.ts";
import { createProducerApi, type ProducerApi } from "./api.ts";
import { PortalAuth, type AuthIdentity } from "./auth.ts";
import type { Bus } from "./bus.ts";
import { parseServerConfig, type ServerConfig, type ServerConfigInput } from "./config.ts";
import { Delivery, subscribeSocket } from "./delivery.ts";
import { AuthError, PushServerError, ServerErrorCode } from "./errors.ts";
import { clipForLog, corsHeaders, preflightHeaders, writeEmpty, writeJson } from "./http.ts";
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
  /** Closes every socket with CloseCode.RESTART, stops listening and leaves the bus. */
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

/** Per-socket state that uWS keeps as the socket's user data. */
interface Connection extends AuthIdentity {
  conn: string;
  logger: Logger;
}

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
  readonly #delivery: Delivery;
  readonly #allowedOrigins: ReadonlySet<string>;
  readonly #sockets = new Set<WebSocket<Connection>>();
  /** Random prefix of connection ids, so ids from different server runs differ in the logs. */
  readonly #connPrefix = randomBytes(3).toString("hex");
  #connCount = 0;
  #listenSocket: us_listen_socket | undefined;
  #unsubscribe: (() => void) | undefined;
  #closing: Promise<void> | undefined;
  #port = 0;

  constructor(uws: Uws, config: ServerConfig, bus: Bus, logger: Logger, api?: ProducerApi) {
    this.#uws = uws;
    this.#config = config;
    this.#bus = bus;
    this.#logger = logger;
    this.#allowedOrigins = new Set(config.allowedOrigins);
    this.#auth = new PortalAuth(config);
    this.#app = uws.App();
    this.#delivery = new Delivery(this.#app, logger);
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
    this.#unsubscribe = this.#bus.subscribe((message) => this.#delivery.deliver(message));
    this.#logger.info({ host, port: this.#port, path }, "push server listening");
  }

  close(): Promise<void> {
    this.#closing ??= this.#shutdown();
    return this.#closing;
  }

  async #shutdown(): Promise<void> {
    this.#unsubscribe?.();
    const connections = this.#sockets.size;
    // end() runs the close handler at once, which deletes from the set, so iterate over a copy.
    for (const ws of [...this.#sockets]) ws.end(CloseCode.RESTART, "server restarting");
    if (this.#listenSocket) this.#uws.us_listen_socket_close(this.#listenSocket);
    // Drops idle HTTP keep-alive connections and upgrades still waiting for the portal.
    this.#app.close();
    await this.#auth.close();
    this.#logger.info({ connections }, "push server closed");
  }

  #addRoutes(api: ProducerApi | undefined): void {
    const { path, maxPayloadBytes, maxBackpressureBytes, idleTimeoutS } = this.#config;
    this.#app.ws<Connection>(path, {
      maxPayloadLength: maxPayloadBytes,
      maxBackpressure: maxBackpressureBytes,
      // The typings declare a number, but the binary reads it as a boolean.
      // NOTE: uWS drops a socket past maxBackpressure without a close frame, so the
      // client sees 1006 and reconnects. CloseCode.SLOW_CONSUMER is never sent.
      closeOnBackpressureLimit: 1,
      idleTimeout: idleTimeoutS,
      sendPingsAutomatically: true,
      compression: this.#uws.DISABLED,
      upgrade: (res, req, context) => this.#onUpgrade(res, req, context),
      open: (ws) => this.#onOpen(ws),
      message: (ws, message, isBinary) => this.#onMessage(ws, message, isBinary),
      close: (ws, code) => this.#onClose(ws, code),
    });
    this.#app.get(`${path}/auth`, (res, req) => this.#onAuthRequest(res, req));
    this.#app.options(`${path}/auth`, (res, req) => this.#onAuthPreflight(res, req));
    this.#app.get("/health", (res) => writeJson(res, 200, { status: "ok" }));
    api?.addRoutes(this.#app);
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

  /** Checks the Origin and then the session cookie. Rejects with an AuthError. */
  async #authorize(origin: string, cookieHeader: string): Promise<AuthIdentity> {
    if (!this.#allowedOrigins.has(origin)) {
      const originText = origin === "" ? "missing" : `"${clipForLog(origin)}"`;
      throw new AuthError(
        ServerErrorCode.ORIGIN_REJECTED,
        403,
        origin === "" ? "origin missing" : "origin not allowed",
        `Origin ${originText} is not in allowedOrigins`,
      );
    }
    return this.#auth.authenticate(cookieHeader);
  }

  #onUpgrade(res: HttpResponse, req: HttpRequest, context: us_socket_context_t): void {
    // uWS requires an abort handler before the handler returns without responding.
    let aborted = false;
    res.onAborted(() => {
      aborted = true;
    });
    // HttpRequest is valid only during this call, so read every header now.
    const origin = req.getHeader("origin");
    const cookieHeader = req.getHeader("cookie");
    const key = req.getHeader("sec-websocket-key");
    const extensions = req.getHeader("sec-websocket-extensions");

    this.#authorize(origin, cookieHeader).then(
      (identity) => {
        if (aborted) return;
        const conn = `${this.#connPrefix}-${++this.#connCount}`;
        const logger = this.#logger.child({ conn, user: identity.user });
        const connection: Connection = { ...identity, conn, logger };
        // patpush defines no subprotocol, so the response names none.
        res.cork(() => res.upgrade(connection, key, "", extensions, context));
      },
      (error: unknown) => {
        if (aborted) return;
        const rejection = this.#logRejection(error, origin, "upgrade");
        res.cork(() => writeJson(res, rejection.status, rejectionBody(rejection)));
      },
    );
  }

  #onAuthRequest(res: HttpResponse, req: HttpRequest): void {
    let aborted = false;
    res.onAborted(() => {
      aborted = true;
    });
    const origin = req.getHeader("origin");
    const cookieHeader = req.getHeader("cookie");
    const cors = this.#allowedOrigins.has(origin) ? corsHeaders(origin) : [];

    this.#authorize(origin, cookieHeader).then(
      (identity) => {
        if (aborted) return;
        const body = { user: identity.user, channels: identity.channels };
        res.cork(() => writeJson(res, 200, body, cors));
      },
      (error: unknown) => {
        if (aborted) return;
        const rejection = this.#logRejection(error, origin, "auth");
        res.cork(() => writeJson(res, rejection.status, rejectionBody(rejection), cors));
      },
    );
  }

  #onAuthPreflight(res: HttpResponse, req: HttpRequest): void {
    const origin = req.getHeader("origin");
    if (this.#allowedOrigins.has(origin)) {
      writeEmpty(res, 204, preflightHeaders(origin));
      return;
    }
    writeJson(res, 403, { error: "origin not allowed", code: ServerErrorCode.ORIGIN_REJECTED });
  }

  /** Logs a rejected request and returns the AuthError for the client (503 when unexpected). */
  #logRejection(error: unknown, origin: string, route: string): AuthError {
    if (!(error instanceof AuthError)) {
      this.#logger.error({ err: error, route }, "auth check failed");
      return new AuthError(
        ServerErrorCode.AUTH_UNAVAILABLE,
        503,
        "auth check failed",
        "auth check failed unexpectedly",
        { cause: error },
      );
    }

    const fields = {
      reason: error.reason,
      status: error.status,
      code: error.code,
      origin: clipForLog(origin),
      route,
      // Only a portal failure needs the detail. Its message names the auth URL, never a cookie.
      ...(error.status === 503 ? { err: error } : {}),
    };
    this.#logger.warn(fields, "auth rejected");
    return error;
  }

  #onOpen(ws: WebSocket<Connection>): void {
    const connection = ws.getUserData();
    this.#sockets.add(ws);
    subscribeSocket(ws, connection);

    const welcome: WelcomeFrame = {
      type: "welcome",
      id: this.#delivery.lastId,
      user: connection.user,
      channels: connection.channels,
      conn: connection.conn,
    };
    ws.send(JSON.stringify(welcome), false, false);
    connection.logger.info({ channels: connection.channels.length }, "socket opened");
  }

  #onMessage(ws: WebSocket<Connection>, message: ArrayBuffer, isBinary: boolean): void {
    const connection = ws.getUserData();
    if (isBinary) {
      connection.logger.warn({ bytes: message.byteLength }, "binary frame rejected");
      ws.end(CloseCode.PROTOCOL_ERROR, "binary frames are not accepted");
      return;
    }
    // Clients have nothing to send, and maxPayloadLength already bounds each frame.
    connection.logger.debug({ bytes: message.byteLength }, "inbound frame ignored");
  }

  #onClose(ws: WebSocket<Connection>, code: number): void {
    this.#sockets.delete(ws);
    ws.getUserData().logger.info({ code }, "socket closed");
  }
}

function rejectionBody(error: AuthError): { error: string; code: string } {
  return { error: error.reason, code: error.code };
}

function hostForUrl(host: string): string {
  return host.includes(":") ? `[${host}]` : host;
}
