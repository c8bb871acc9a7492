/**
 * One push connection of one page: a socket to the push server that parses
 * frames, drops duplicates, and reconnects with backoff until a close code
 * or the auth check rejects the session. Each reconnect sends the last
 * message id it saw as `?last=<id>`, so the push server replays what the
 * page missed while it was away.
 */
import { backoffDelayMs, type BackoffOptions } from "../protocol/backoff.ts";
import { CloseCode, shouldReconnect } from "../protocol/close-codes.ts";
import { parseServerFrame, type MessageFrame, type WelcomeFrame } from "../protocol/frames.ts";
import { compareMessageIds, type MessageId } from "../protocol/message-id.ts";
import type { Transport, TransportFactory } from "./transport.ts";
import { createWebSocketTransport } from "./transport-websocket.ts";

export type ConnectionState = "connecting" | "open" | "reconnecting" | "rejected" | "closed";

export interface PushConnectionOptions {
  /**
   * WebSocket URL of the push server (ws: or wss:), such as `wss://push.example.org/push`.
   * Reconnects add the query parameter `last`; other query parameters are kept.
   */
  url: string;
  /** Logs states, frames and retries to the console. The `debug` property switches it later. */
  debug?: boolean;
  /** Reconnect delays with full jitter, by default `{ baseMs: 500, maxMs: 30000 }`. */
  backoff?: BackoffOptions;
  /** Creates the transport for each attempt. The default uses the native WebSocket. */
  createTransport?: TransportFactory;
}

export interface StateChangeDetail {
  state: ConnectionState;
  previous: ConnectionState;
  /** Close code that caused the change, when a socket closed. */
  code?: number;
  reason?: string;
}

export interface WelcomeDetail {
  frame: WelcomeFrame;
  /** True for the first welcome frame this connection object received. */
  first: boolean;
  /** True when the push server reported recovery "gap": messages after the last id may be lost. */
  gap: boolean;
  /**
   * True when the page may lack messages that no frame on this socket will
   * bring. That is the case on the first welcome, because results published
   * before the socket opened were never pushed to the page. It is also the
   * case on a later welcome whose recovery is "gap", or "none" from a server
   * that did not resume.
   */
  mayHaveMissed: boolean;
}

export interface PushConnectionEventMap {
  state: CustomEvent<StateChangeDetail>;
  welcome: CustomEvent<WelcomeDetail>;
  message: CustomEvent<MessageFrame>;
}

export const DEFAULT_BACKOFF: BackoffOptions = { baseMs: 500, maxMs: 30_000 };

type ProbeResult = "rejected" | "retry";

export interface PushConnection {
  addEventListener<K extends keyof PushConnectionEventMap>(
    type: K,
    listener: (event: PushConnectionEventMap[K]) => void,
    options?: boolean | AddEventListenerOptions,
  ): void;
  addEventListener(
    type: string,
    listener: EventListenerOrEventListenerObject | null,
    options?: boolean | AddEventListenerOptions,
  ): void;
}

/**
 * Connection to the push server. Events: `state`, `welcome`, `message`
 * (see {@link PushConnectionEventMap}). Call `connect()` to start and
 * `close()` to stop for good.
 */
export class PushConnection extends EventTarget {
  readonly url: string;
  /** Console logging of states, frames and retries, switchable at any time. */
  debug: boolean;
  readonly #backoff: BackoffOptions;
  readonly #createTransport: TransportFactory;
  #state: ConnectionState = "closed";
  #transport: Transport | undefined;
  #retryTimer: ReturnType<typeof setTimeout> | undefined;
  #probe: AbortController | undefined;
  /** Failed attempts since the last welcome frame, which set the backoff ceiling. */
  #failedAttempts = 0;
  /**
   * Id of the newest stored message this page has handled, or the welcome id
   * that replaced it. Sent as `last` on every reconnect.
   */
  #lastMessageId: MessageId | undefined;
  #duplicatesDropped = 0;
  #welcomeCount = 0;
  /** Bumped on every attempt and on close(), so callbacks of an old socket are ignored. */
  #attemptId = 0;

  constructor(options: PushConnectionOptions) {
    super();
    const url = new URL(options.url);
    if (url.protocol !== "ws:" && url.protocol !== "wss:") {
      throw new TypeError(`invalid push server URL ${options.url}: expected ws: or wss:`);
    }

    // The connection sets `last` itself, so a first connect never resumes from a stale id.
    url.searchParams.delete("last");
    this.url = url.href;
    this.debug = options.debug ?? false;
    this.#backoff = options.backoff ?? DEFAULT_BACKOFF;
    this.#createTransport = options.createTransport ?? createWebSocketTransport;
  }

  get state(): ConnectionState {
    return this.#state;
  }

  /**
   * Message id a reconnect resumes after: the newest stored message handed
   * out, or the id of a welcome frame that did not resume. Undefined before
   * the first welcome or message frame.
   */
  get lastMessageId(): MessageId | undefined {
    return this.#lastMessageId;
  }

  /** Number of message frames dropped because their id was at or below the last id. */
  get duplicatesDropped(): number {
    return this.#duplicatesDropped;
  }

  /** URL of the next socket: the configured URL, with `last` once a message id is known. */
  get socketUrl(): string {
    if (this.#lastMessageId === undefined) return this.url;

    const url = new URL(this.url);
    url.searchParams.set("last", this.#lastMessageId);
    return url.href;
  }

  /** URL of the push server's auth check: the socket URL over http(s) with `/auth` appended. */
  get authUrl(): string {
    const url = new URL(this.url);
    url.protocol = url.protocol === "wss:" ? "https:" : "http:";
    url.pathname = `${url.pathname.replace(/\/+$/, "")}/auth`;
    url.hash = "";
    return url.href;
  }

  /** Opens the socket unless the connection is already active. */
  connect(): void {
    if (this.#state !== "closed" && this.#state !== "rejected") return;

    this.#failedAttempts = 0;
    this.#openSocket("connecting");
  }

  /** Closes the socket and stops reconnecting until `connect()` is called again. */
  close(): void {
    this.#attemptId += 1;
    clearTimeout(this.#retryTimer);
    this.#retryTimer = undefined;
    this.#probe?.abort();
    this.#probe = undefined;
    this.#transport?.close(1000, "client closed");
    this.#transport = undefined;
    this.#setState("closed");
  }

  #openSocket(state: "connecting" | "reconnecting"): void {
    this.#attemptId += 1;
    const attemptId = this.#attemptId;
    const isCurrent = () => attemptId === this.#attemptId;
    this.#setState(state);

    const url = this.socketUrl;
    const transport = this.#createTransport(url);
    this.#transport = transport;
    this.#log(`opening ${transport.name} socket`, url);
    transport.connect({
      onOpen: () => {
        if (isCurrent()) this.#setState("open");
      },
      onFrame: (text) => {
        if (isCurrent()) this.#handleFrame(text);
      },
      onClose: (code, reason, wasOpen) => {
        if (isCurrent()) void this.#handleClose(code, reason, wasOpen);
      },
    });
  }

  #handleFrame(text: string): void {
    const frame = parseServerFrame(text);
    if (frame === undefined) {
      this.#log("invalid frame dropped", text.slice(0, 200));
      return;
    }

    if (frame.type === "welcome") {
      this.#handleWelcome(frame);
      return;
    }

    // A live frame was never stored and carries the id of the stored message
    // before it, so it is neither a duplicate nor a new resume position.
    if (frame.live !== true) {
      const last = this.#lastMessageId;
      if (last !== undefined && compareMessageIds(frame.id, last) <= 0) {
        this.#duplicatesDropped += 1;
        this.#log("duplicate message dropped", frame.id, { last, total: this.#duplicatesDropped });
        return;
      }
      this.#lastMessageId = frame.id;
    }

    this.#log("message received", frame);
    this.dispatchEvent(new CustomEvent("message", { detail: frame }));
  }

  #handleWelcome(frame: WelcomeFrame): void {
    const first = this.#welcomeCount === 0;
    const gap = frame.recovery === "gap";
    const mayHaveMissed = first || frame.recovery !== "complete";
    this.#welcomeCount += 1;
    this.#failedAttempts = 0;

    // "complete" replays everything after the last id, so the last id stays.
    // Otherwise this socket's frames start after the welcome id. Adopting it
    // moves the last id down only after a stream reset made ids start over,
    // and then later frames must not be taken for duplicates.
    if (frame.recovery !== "complete" || this.#lastMessageId === undefined) {
      this.#lastMessageId = frame.id;
    }
    this.#log("welcome received", frame);
    const detail: WelcomeDetail = { frame, first, gap, mayHaveMissed };
    this.dispatchEvent(new CustomEvent("welcome", { detail }));
  }

  async #handleClose(code: number, reason: string, wasOpen: boolean): Promise<void> {
    this.#transport = undefined;
    this.#log("socket closed", { code, reason, wasOpen });

    if (!shouldReconnect(code)) {
      const state = code === CloseCode.AUTH_REVOKED ? "rejected" : "closed";
      console.warn(
        `[patpush] push server closed the socket with code ${code}, so the client stops reconnecting`,
      );
      this.#stop(state, code, reason);
      return;
    }

    if (!wasOpen) {
      const attemptId = this.#attemptId;
      this.#setState("reconnecting", code, reason);
      const result = await this.#probeAuth();
      if (attemptId !== this.#attemptId) return;
      if (result === "rejected") {
        console.warn(
          `[patpush] push server rejected the session at ${this.authUrl}, so the client stops reconnecting`,
        );
        this.#stop("rejected", code, reason);
        return;
      }
    }

    this.#scheduleReconnect(code, reason);
  }

  /**
   * Asks the push server's auth endpoint whether this session may connect,
   * because a browser cannot read the status of a rejected upgrade. Only
   * 401 and 403 count as a rejection. A network error or any other status
   * is treated as a passing failure.
   * NOTE: a push server sends CORS headers only to allowed origins, so a page
   * whose Origin it rejects cannot read the 403 and keeps retrying with backoff.
   */
  async #probeAuth(): Promise<ProbeResult> {
    const probe = new AbortController();
    this.#probe = probe;
    try {
      const response = await fetch(this.authUrl, {
        credentials: "include",
        cache: "no-store",
        signal: probe.signal,
      });
      this.#log("auth check returned", response.status);
      return response.status === 401 || response.status === 403 ? "rejected" : "retry";
    } catch (error) {
      this.#log("auth check failed", error);
      return "retry";
    } finally {
      if (this.#probe === probe) this.#probe = undefined;
    }
  }

  #scheduleReconnect(code: number, reason: string): void {
    this.#failedAttempts += 1;
    const delayMs = backoffDelayMs(this.#failedAttempts, this.#backoff);
    this.#setState("reconnecting", code, reason);
    this.#log(`reconnecting in ${delayMs} ms`, { attempt: this.#failedAttempts });

    const attemptId = this.#attemptId;
    this.#retryTimer = setTimeout(() => {
      this.#retryTimer = undefined;
      if (attemptId === this.#attemptId) this.#openSocket("reconnecting");
    }, delayMs);
  }

  #stop(state: "rejected" | "closed", code: number, reason: string): void {
    this.#attemptId += 1;
    this.#setState(state, code, reason);
  }

  #setState(state: ConnectionState, code?: number, reason?: string): void {
    const previous = this.#state;
    if (state === previous) return;

    this.#state = state;
    this.#log(`state ${previous} -> ${state}`);
    const detail: StateChangeDetail = { state, previous };
    if (code !== undefined) detail.code = code;
    if (reason !== undefined) detail.reason = reason;
    this.dispatchEvent(new CustomEvent("state", { detail }));
  }

  #log(message: string, ...details: unknown[]): void {
    if (this.debug) console.debug(`[patpush] ${message}`, ...details);
  }
}
