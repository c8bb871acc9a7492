/**
 * ws-ioredis: the common Node.js baseline. A `ws` WebSocketServer on
 * node:http checks the cookie at the portal on every upgrade, keeps the open
 * sockets per user and per channel, and sends every message of the Redis
 * channel `bench:done` to the matching sockets. No auth cache, no message
 * ids, no recovery, no Origin check, no limits.
 */
import { createServer, type IncomingMessage } from "node:http";
import type { Duplex } from "node:stream";
import { Redis } from "ioredis";
import { WebSocketServer, type WebSocket } from "ws";
import { PEER_DONE_CHANNEL } from "../lib/peers.ts";
import { AuthCheck, type PeerIdentity } from "./auth-check.ts";
import {
  doneRecipient,
  packageVersion,
  printReadyLine,
  readPeerSettings,
  waitForStopSignal,
} from "./peer-env.ts";

/** Same inbound frame limit as patpush's default. */
const MAX_PAYLOAD_BYTES = 4096;

const settings = readPeerSettings();
const auth = new AuthCheck(settings.authUrl);
const byUser = new Map<string, Set<WebSocket>>();
const byChannel = new Map<string, Set<WebSocket>>();

function addTo(index: Map<string, Set<WebSocket>>, key: string, ws: WebSocket): void {
  let set = index.get(key);
  if (set === undefined) {
    set = new Set();
    index.set(key, set);
  }
  set.add(ws);
}

function removeFrom(index: Map<string, Set<WebSocket>>, key: string, ws: WebSocket): void {
  const set = index.get(key);
  if (set === undefined) return;
  set.delete(ws);
  if (set.size === 0) index.delete(key);
}

function register(ws: WebSocket, identity: PeerIdentity): void {
  addTo(byUser, identity.user, ws);
  for (const channel of identity.channels) addTo(byChannel, channel, ws);
  ws.on("close", () => {
    removeFrom(byUser, identity.user, ws);
    for (const channel of identity.channels) removeFrom(byChannel, channel, ws);
  });
  // A socket error is followed by close, which unregisters the socket.
  ws.on("error", () => {});
}

function reject(socket: Duplex, status: string): void {
  socket.end(`HTTP/1.1 ${status}\r\nConnection: close\r\nContent-Length: 0\r\n\r\n`);
}

const server = createServer((req, res) => {
  const status = req.url === "/ready" ? 200 : 404;
  res.writeHead(status, { "content-type": "application/json" });
  res.end(status === 200 ? '{"status":"ready"}' : "{}");
});
const wss = new WebSocketServer({
  noServer: true,
  maxPayload: MAX_PAYLOAD_BYTES,
  perMessageDeflate: false,
  clientTracking: true,
});

server.on("upgrade", (req: IncomingMessage, socket: Duplex, head: Buffer) => {
  socket.on("error", () => socket.destroy());
  if (req.url?.split("?", 1)[0] !== "/push") return reject(socket, "404 Not Found");

  auth.check(req.headers.cookie).then(
    (identity) => {
      if (socket.destroyed) return;
      if (identity === undefined) return reject(socket, "401 Unauthorized");
      wss.handleUpgrade(req, socket, head, (ws) => register(ws, identity));
    },
    () => reject(socket, "503 Service Unavailable"),
  );
});

/** Sends one message of `bench:done` to its user's or channel's sockets. */
function deliver(text: string): void {
  const recipient = doneRecipient(text);
  if (recipient === undefined) return;
  const targets =
    "user" in recipient ? byUser.get(recipient.user) : byChannel.get(recipient.channel);
  if (targets === undefined) return;
  for (const ws of targets) ws.send(text);
}

const subscriber = new Redis(settings.redisUrl);
subscriber.on("message", (_channel: string, text: string) => deliver(text));
await subscriber.subscribe(PEER_DONE_CHANNEL);

await new Promise<void>((resolve, reject) => {
  server.once("error", reject);
  server.listen(settings.port, "127.0.0.1", resolve);
});
printReadyLine(settings.port, "ws-ioredis", { ws: packageVersion("ws") });

await waitForStopSignal();
server.close();
for (const ws of wss.clients) ws.close(1001, "server shutting down");
wss.close();
server.closeAllConnections();
subscriber.disconnect();
await auth.close();
