/**
 * The push server keeps one authenticated WebSocket per browser tab,
 * delivers done messages from a bus to the sockets of their recipient, and
 * replays recent messages to a socket that resumes after its last id.
 */
export { PortalAuth, type AuthIdentity, type PortalAuthOptions } from "./auth.ts";
export {
  EmbeddedBus,
  validateMessage,
  type Bus,
  type BusCoverage,
  type BusEvent,
  type BusHandler,
  type BusMessage,
} from "./bus.ts";
export {
  parseServerConfig,
  serverConfigSchema,
  type ServerConfig,
  type ServerConfigInput,
} from "./config.ts";
export { channelTopic, toMessageFrame, userTopic } from "./delivery.ts";
export {
  AuthError,
  MessageError,
  PushServerError,
  ServerErrorCode,
  type RejectStatus,
} from "./errors.ts";
export { RecoveryHistory, type RecoveryHistoryOptions, type Replay } from "./history.ts";
export { PushMetrics } from "./metrics.ts";
export {
  DEFAULT_KEY_PREFIX,
  DEFAULT_STREAM_MAX_LEN,
  doneKey,
  publishDoneMessage,
  type PublishDoneMessageOptions,
} from "./publish.ts";
export { startPushServer, type PushServer, type PushServerOptions } from "./push-server.ts";
export { RedisBus, type RedisBusOptions } from "./redis-bus.ts";
export { loadUws, locateUwsBinary, type LoadUwsOptions, type Uws, type UwsBinary } from "./uws.ts";
