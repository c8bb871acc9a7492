/**
 * A loopback TCP proxy for the end-to-end specs. A page that connects to the
 * proxy reaches the server behind it. A spec can reset every connection at
 * once and keep resetting new ones, as in a network outage or behind a load
 * balancer that lost its backend.
 */
import { createServer, connect, type Server, type Socket } from "node:net";

export interface TcpProxy {
  /** Port the proxy listens on, on 127.0.0.1. */
  readonly port: number;
  /** Port of the server behind the proxy. Connections arriving while it is unset are reset. */
  targetPort: number | undefined;
  /** True while new connections are reset at once instead of forwarded. */
  readonly blocking: boolean;
  /** Connections forwarded so far. */
  readonly forwarded: number;
  /** Connections reset on arrival because the proxy was blocking or had no target. */
  readonly resetCount: number;
  /** Resets every forwarded connection, on both sides, and starts blocking new ones. */
  sever(): void;
  /** Stops blocking, so new connections are forwarded again. */
  allow(): void;
  close(): Promise<void>;
}

/** Starts a proxy on a free port of 127.0.0.1 that forwards to `127.0.0.1:<targetPort>`. */
export async function startTcpProxy(targetPort?: number): Promise<TcpProxy> {
  const open = new Set<Socket>();
  let blocking = false;
  let forwarded = 0;
  let resetCount = 0;

  const track = (socket: Socket): void => {
    open.add(socket);
    socket.once("close", () => open.delete(socket));
  };

  const server: Server = createServer((client) => {
    if (blocking || proxy.targetPort === undefined) {
      resetCount += 1;
      client.resetAndDestroy();
      return;
    }

    forwarded += 1;
    const upstream = connect(proxy.targetPort, "127.0.0.1");
    track(client);
    track(upstream);
    client.pipe(upstream);
    upstream.pipe(client);
    // An error on one side, such as a reset or a refused upstream, ends the other side too.
    client.on("error", () => upstream.destroy());
    upstream.on("error", () => client.resetAndDestroy());
    client.on("close", () => upstream.destroy());
    upstream.on("close", () => client.destroy());
  });

  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => resolve());
  });
  const address = server.address();
  if (address === null || typeof address === "string") {
    throw new Error("TCP proxy has no port after listen");
  }

  const proxy: TcpProxy = {
    port: address.port,
    targetPort,
    get blocking() {
      return blocking;
    },
    get forwarded() {
      return forwarded;
    },
    get resetCount() {
      return resetCount;
    },
    sever() {
      blocking = true;
      for (const socket of open) socket.resetAndDestroy();
    },
    allow() {
      blocking = false;
    },
    async close() {
      blocking = true;
      for (const socket of open) socket.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
  return proxy;
}
