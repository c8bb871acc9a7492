/**
 * socketio: Socket.IO 4 with the Redis adapter, the way many Node.js apps
 * push to browsers. Middleware checks the cookie at the portal for every
 * connection, each socket joins the rooms `user:<id>` and `channel:<name>`,
 * and publishers reach the rooms through @socket.io/redis-emitter. Only the
 * WebSocket transport runs. No auth cache, no recovery, no Origin check.
 *
 * A rejected cookie does not get an HTTP 401: the WebSocket opens, and the
 * Socket.IO connect fails with a CONNECT_ERROR packet `44{"message":"unauthorized"}`.
 */
import { createServer } from "node:http";
import { createAdapter } from "@socket.io/redis-adapter";
import { Redis } from "ioredis";
import { Server } from "socket.io";
import { AuthCheck, type PeerIdentity } from "./auth-check.ts";
import {
  channelTopic,
  packageVersion,
  printReadyLine,
  readPeerSettings,
  userTopic,
  waitForStopSignal,
} from "./peer-env.ts";

/** Same inbound frame limit as patpush's default. */
const MAX_PAYLOAD_BYTES = 4096;

/** Time the adapter gets to subscribe to its Redis channels before the server reports ready. */
const SUBSCRIBE_TIMEOUT_MS = 10_000;

const settings = readPeerSettings();
const auth = new AuthCheck(settings.authUrl);
const pubClient = new Redis(settings.redisUrl);
const subClient = pubClient.duplicate();

// Socket.IO intercepts its own path and passes every other request to this handler.
const httpServer = createServer((req, res) => {
  const status = req.url === "/ready" ? 200 : 404;
  res.writeHead(status, { "content-type": "application/json" });
  res.end(status === 200 ? '{"status":"ready"}' : "{}");
});
const io = new Server(httpServer, {
  transports: ["websocket"],
  serveClient: false,
  perMessageDeflate: false,
  maxHttpBufferSize: MAX_PAYLOAD_BYTES,
  adapter: createAdapter(pubClient, subClient),
});

io.use((socket, next) => {
  auth.check(socket.request.headers.cookie).then(
    (identity) => {
      if (identity === undefined) return next(new Error("unauthorized"));
      socket.data = identity;
      next();
    },
    () => next(new Error("auth failed")),
  );
});

io.on("connection", (socket) => {
  const { user, channels } = socket.data as PeerIdentity;
  void socket.join([userTopic(user), ...channels.map(channelTopic)]);
});

/** Resolves once the adapter has its pattern subscription, so no emitted message is lost. */
async function waitForAdapterSubscription(): Promise<void> {
  const deadline = Date.now() + SUBSCRIBE_TIMEOUT_MS;
  while (Number(await pubClient.call("PUBSUB", "NUMPAT")) < 1) {
    if (Date.now() > deadline) {
      const limit = `${SUBSCRIBE_TIMEOUT_MS} ms`;
      throw new Error(`the Socket.IO Redis adapter did not subscribe within ${limit}; check Redis`);
    }
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

await waitForAdapterSubscription();
await new Promise<void>((resolve, reject) => {
  httpServer.once("error", reject);
  httpServer.listen(settings.port, "127.0.0.1", resolve);
});
printReadyLine(settings.port, "socketio", {
  socketio: packageVersion("socket.io"),
  redisAdapter: packageVersion("@socket.io/redis-adapter"),
});

await waitForStopSignal();
await io.close();
pubClient.disconnect();
subClient.disconnect();
await auth.close();
