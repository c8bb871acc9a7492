/**
 * uws-raw: the ceiling for a uWebSockets.js push server. It checks the
 * cookie at the portal on every upgrade, subscribes each socket to the
 * topics `user:<id>` and `channel:<name>`, and forwards every message of the
 * Redis channel `bench:done` with `app.publish(topic, json)`. No auth cache,
 * no message ids, no recovery, no Origin check, no limits.
 *
 * It loads the uWS native binary with patpush's loader and exits with an
 * error when that fails, rather than running the package's `ws` fallback.
 */
import { Redis } from "ioredis";
import type { WebSocket } from "@trufflesuite/uws-js-unofficial";
import { createLogger } from "../../common/logger.ts";
import { PEER_DONE_CHANNEL } from "../lib/peers.ts";
import { locateUwsBinary, loadUws } from "../../server/uws.ts";
import { AuthCheck, type PeerIdentity } from "./auth-check.ts";
import {
  channelTopic,
  doneRecipient,
  printReadyLine,
  readPeerSettings,
  userTopic,
  waitForStopSignal,
} from "./peer-env.ts";

/** patpush's default socket settings: 4 KiB inbound frames, 2 MiB send buffer, 120 s idle. */
const MAX_PAYLOAD_BYTES = 4096;
const MAX_BACKPRESSURE_BYTES = 2 * 1024 * 1024;
const IDLE_TIMEOUT_S = 120;

const settings = readPeerSettings();
const logger = createLogger({ level: "warn" });
const uws = loadUws(logger);
const auth = new AuthCheck(settings.authUrl);
const sockets = new Set<WebSocket<PeerIdentity>>();

const app = uws.App();
app.ws<PeerIdentity>("/push", {
  maxPayloadLength: MAX_PAYLOAD_BYTES,
  maxBackpressure: MAX_BACKPRESSURE_BYTES,
  idleTimeout: IDLE_TIMEOUT_S,
  sendPingsAutomatically: true,
  compression: uws.DISABLED,

  upgrade(res, req, context) {
    let aborted = false;
    res.onAborted(() => {
      aborted = true;
    });
    // HttpRequest is valid only during this call, so read every header now.
    const cookie = req.getHeader("cookie");
    const key = req.getHeader("sec-websocket-key");
    const protocol = req.getHeader("sec-websocket-protocol");
    const extensions = req.getHeader("sec-websocket-extensions");

    auth.check(cookie).then(
      (identity) => {
        if (aborted) return;
        res.cork(() => {
          if (identity === undefined) {
            res.writeStatus("401 Unauthorized").end('{"error":"invalid session"}');
          } else {
            res.upgrade(identity, key, protocol, extensions, context);
          }
        });
      },
      () => {
        if (aborted) return;
        res.cork(() => res.writeStatus("503 Service Unavailable").end('{"error":"auth failed"}'));
      },
    );
  },

  open(ws) {
    const { user, channels } = ws.getUserData();
    ws.subscribe(userTopic(user));
    for (const channel of channels) ws.subscribe(channelTopic(channel));
    sockets.add(ws);
  },

  close(ws) {
    sockets.delete(ws);
  },
});
app.get("/ready", (res) => {
  res.end('{"status":"ready"}');
});
app.any("/*", (res) => {
  res.writeStatus("404 Not Found").end();
});

/** Publishes one message of `bench:done` to its user or channel topic. */
function deliver(text: string): void {
  const recipient = doneRecipient(text);
  if (recipient === undefined) return;
  const topic = "user" in recipient ? userTopic(recipient.user) : channelTopic(recipient.channel);
  app.publish(topic, text, false);
}

const subscriber = new Redis(settings.redisUrl);
subscriber.on("message", (_channel: string, text: string) => deliver(text));
await subscriber.subscribe(PEER_DONE_CHANNEL);

const listenSocket = await new Promise<unknown>((resolve) => {
  // Without the exclusive flag uWS sets SO_REUSEPORT and would share a taken port.
  app.listen("127.0.0.1", settings.port, uws.LIBUS_LISTEN_EXCLUSIVE_PORT, resolve);
});
if (!listenSocket) throw new Error(`uws-raw failed to listen on 127.0.0.1:${settings.port}`);

const binary = locateUwsBinary();
printReadyLine(settings.port, "uws-raw", {
  uwsVersion: binary.version,
  abi: process.versions.modules,
});

await waitForStopSignal();
uws.us_listen_socket_close(listenSocket as Parameters<typeof uws.us_listen_socket_close>[0]);
for (const ws of sockets) ws.end(1001, "server shutting down");
// Drops keep-alive HTTP connections and upgrades still waiting for the portal.
app.close();
subscriber.disconnect();
await auth.close();
