/**
 * A lean WebSocket client on node:net for load generation. It sends the
 * HTTP/1.1 upgrade a browser would send (Origin and Cookie), reads unmasked
 * server frames without copying them when a frame fits in one TCP chunk,
 * replies to pings and close frames, and sends masked client frames.
 *
 * It skips what a load generator does not need: it does not check
 * Sec-WebSocket-Accept, and it ignores extensions and subprotocols. The `ws`
 * client costs several times more CPU per frame.
 */
import { connect, type Socket } from "node:net";

const OPCODE_CONTINUATION = 0x0;
const OPCODE_TEXT = 0x1;
const OPCODE_BINARY = 0x2;
const OPCODE_CLOSE = 0x8;
const OPCODE_PING = 0x9;
const OPCODE_PONG = 0xa;

const HEADER_END = Buffer.from("\r\n\r\n");
/** Upgrade responses longer than this are rejected as invalid. */
const MAX_HEADER_BYTES = 16_384;
/** A fixed key: the client does not check the server's Sec-WebSocket-Accept. */
const WEBSOCKET_KEY = "dGhlIHNhbXBsZSBub25jZQ==";

/** Connection target and upgrade request headers of one socket. */
export interface LeanSocketOptions {
  host: string;
  port: number;
  /** Request target: path and query, e.g. `/push?last=1-0`. */
  path: string;
  /** Source address (`net.connect` localAddress), e.g. 127.0.0.17. */
  localAddress?: string;
  origin?: string;
  cookie?: string;
  /** Fails the open with reason "timeout" after this many ms without a 101. */
  openTimeoutMs: number;
}

/** Callbacks of one socket. At most one of `onFail` and `onClose` fires, once, and none after destroy(). */
export interface LeanSocketHandlers {
  /** The server returned 101 Switching Protocols. */
  onOpen(socket: LeanSocket): void;
  /** One complete text message; the payload is `data[start, end)`, valid only during the call. */
  onText(socket: LeanSocket, data: Buffer, start: number, end: number): void;
  /** The upgrade failed before 101: the HTTP status as a string, "timeout", or an error code. */
  onFail(socket: LeanSocket, reason: string): void;
  /** The open socket ended: "close <code>" for a close frame, "end", or an error code. */
  onClose(socket: LeanSocket, reason: string): void;
}

/** Builds a masked client frame. The mask key is zero, so the payload bytes stay as they are. */
export function clientFrame(opcode: number, payload: Buffer): Buffer {
  const length = payload.length;
  let headerLength = 14;
  if (length < 126) headerLength = 6;
  else if (length < 65_536) headerLength = 8;
  const frame = Buffer.allocUnsafe(headerLength + length);
  frame[0] = 0x80 | opcode;
  if (length < 126) {
    frame[1] = 0x80 | length;
  } else if (length < 65_536) {
    frame[1] = 0x80 | 126;
    frame.writeUInt16BE(length, 2);
  } else {
    frame[1] = 0x80 | 127;
    frame.writeUInt32BE(0, 2);
    frame.writeUInt32BE(length, 6);
  }
  frame.writeUInt32BE(0, headerLength - 4);
  payload.copy(frame, headerLength);
  return frame;
}

const EMPTY = Buffer.alloc(0);

/**
 * One read buffer for every socket of the process: with `onread`, Node reads into it
 * and calls back synchronously, so no Buffer is allocated per read. Bytes that must
 * outlive the callback (an incomplete frame) are copied out.
 */
const READ_BUFFER = Buffer.allocUnsafe(256 * 1024);

/** One client WebSocket. */
export class LeanSocket {
  /** Free slot for the owner's per-socket state. */
  tag = 0;
  #socket: Socket;
  #handlers: LeanSocketHandlers;
  #open = false;
  #ended = false;
  #timer: NodeJS.Timeout | undefined;
  /** Bytes of an incomplete header or frame from earlier chunks. */
  #pending: Buffer = EMPTY;
  /** Payloads of a fragmented message, until its final frame. */
  #fragments: Buffer[] | undefined;

  constructor(options: LeanSocketOptions, handlers: LeanSocketHandlers) {
    this.#handlers = handlers;
    this.#socket = connect({
      host: options.host,
      port: options.port,
      localAddress: options.localAddress,
      noDelay: true,
      onread: {
        buffer: READ_BUFFER,
        callback: (bytes: number, buffer: Uint8Array) => {
          this.#onData(buffer as Buffer, bytes);
          return true;
        },
      },
    });
    this.#timer = setTimeout(() => this.#fail("timeout"), options.openTimeoutMs);
    const request =
      `GET ${options.path} HTTP/1.1\r\n` +
      `Host: ${options.host}:${options.port}\r\n` +
      "Upgrade: websocket\r\nConnection: Upgrade\r\n" +
      `Sec-WebSocket-Key: ${WEBSOCKET_KEY}\r\nSec-WebSocket-Version: 13\r\n` +
      (options.origin ? `Origin: ${options.origin}\r\n` : "") +
      (options.cookie ? `Cookie: ${options.cookie}\r\n` : "") +
      "\r\n";
    this.#socket.write(request);
    this.#socket.on("error", (error: NodeJS.ErrnoException) => this.#end(error.code ?? "error"));
    this.#socket.on("close", () => this.#end("end"));
  }

  get isOpen(): boolean {
    return this.#open && !this.#ended;
  }

  /** Sends a text message. */
  sendText(text: string): void {
    if (this.isOpen) this.#socket.write(clientFrame(OPCODE_TEXT, Buffer.from(text)));
  }

  /** Ends the TCP connection at once, without a close frame; no callback fires after this. */
  destroy(): void {
    this.#ended = true;
    clearTimeout(this.#timer);
    this.#socket.destroy();
  }

  #fail(reason: string): void {
    if (this.#ended) return;
    this.destroy();
    this.#handlers.onFail(this, reason);
  }

  #end(reason: string): void {
    if (this.#ended) return;
    if (!this.#open) {
      this.#fail(reason);
      return;
    }
    this.destroy();
    this.#handlers.onClose(this, reason);
  }

  /** Handles `bytes` bytes read into the shared `buffer`. */
  #onData(buffer: Buffer, bytes: number): void {
    if (this.#ended) return;
    let data = buffer.subarray(0, bytes);
    if (this.#pending.length > 0) {
      data = Buffer.concat([this.#pending, data]);
      this.#pending = EMPTY;
    }
    let offset = 0;
    if (!this.#open) {
      offset = this.#readUpgradeResponse(data);
      if (offset < 0) return;
    }
    offset = this.#readFrames(data, offset);
    if (offset < data.length && !this.#ended) this.#pending = Buffer.from(data.subarray(offset));
  }

  /** Returns the offset after the response headers, or -1 when more bytes are needed or it failed. */
  #readUpgradeResponse(data: Buffer): number {
    const headerEnd = data.indexOf(HEADER_END);
    if (headerEnd < 0) {
      if (data.length > MAX_HEADER_BYTES) this.#fail("invalid response");
      else this.#pending = Buffer.from(data);
      return -1;
    }
    // "HTTP/1.1 101 Switching Protocols": the status is at bytes 9-11.
    const status = data.toString("latin1", 9, 12);
    if (status !== "101") {
      this.#fail(status);
      return -1;
    }
    this.#open = true;
    clearTimeout(this.#timer);
    this.#handlers.onOpen(this);
    return headerEnd + HEADER_END.length;
  }

  /** Handles every complete frame from `offset` on and returns the offset of the first incomplete one. */
  #readFrames(data: Buffer, offset: number): number {
    while (!this.#ended && data.length - offset >= 2) {
      const first = data[offset]!;
      const second = data[offset + 1]!;
      let length = second & 0x7f;
      let headerLength = 2;
      if (length === 126) {
        if (data.length - offset < 4) break;
        length = data.readUInt16BE(offset + 2);
        headerLength = 4;
      } else if (length === 127) {
        if (data.length - offset < 10) break;
        length = data.readUInt32BE(offset + 2) * 2 ** 32 + data.readUInt32BE(offset + 6);
        headerLength = 10;
      }
      if ((second & 0x80) !== 0) {
        this.#end("masked server frame");
        break;
      }
      const start = offset + headerLength;
      const end = start + length;
      if (end > data.length) break;
      this.#handleFrame(first, data, start, end);
      offset = end;
    }
    return offset;
  }

  #handleFrame(first: number, data: Buffer, start: number, end: number): void {
    const final = (first & 0x80) !== 0;
    const opcode = first & 0x0f;
    switch (opcode) {
      case OPCODE_TEXT:
      case OPCODE_BINARY:
        if (final) this.#handlers.onText(this, data, start, end);
        else this.#fragments = [Buffer.from(data.subarray(start, end))];
        return;
      case OPCODE_CONTINUATION: {
        if (!this.#fragments) return;
        this.#fragments.push(Buffer.from(data.subarray(start, end)));
        if (!final) return;
        const message = Buffer.concat(this.#fragments);
        this.#fragments = undefined;
        this.#handlers.onText(this, message, 0, message.length);
        return;
      }
      case OPCODE_PING:
        this.#socket.write(clientFrame(OPCODE_PONG, data.subarray(start, end)));
        return;
      case OPCODE_CLOSE: {
        const code = end - start >= 2 ? data.readUInt16BE(start) : 1005;
        this.#socket.write(clientFrame(OPCODE_CLOSE, data.subarray(start, Math.min(end, start + 2))));
        this.#end(`close ${code}`);
        return;
      }
      default:
        return;
    }
  }
}
