import { Redis } from "ioredis";
import { z } from "zod";
import { parseConfig } from "../../common/config.ts";
import { createLogger, type Logger } from "../../common/logger.ts";
import { publishDoneMessage, RedisBus, type PushServer } from "../../server/index.ts";
import { BullmqQueue, TaskWorker } from "../../tasks/index.ts";
import { startPortal, startPush, type BackendContext, type PortalBackend } from "./app.ts";
import type { DemoConfigInput } from "./config.ts";
import type { DonePublisher } from "./context.ts";

/** Default port of the second push server in the distributed demo. */
export const DEFAULT_SECOND_PUSH_PORT = 8482;

/** Options that the distributed demo adds to the single-process ones. */
export const distributedConfigSchema = z
  .object({
    /** Redis server that the push servers, the task queue and the worker share. Required. */
    redisUrl: z.url({ protocol: /^rediss?$/, error: "must be a redis:// or rediss:// URL" }),
    /**
     * AES-256-GCM key for the task credentials stored in Redis: 64 hex
     * characters or base64 of 32 bytes. Required.
     */
    encryptionKey: z.string().min(1, "must not be empty"),
    /**
     * Prefix of every Redis key. BullMQ gets it without the trailing colon.
     * @defaultValue "patpush:"
     */
    keyPrefix: z.string().min(1).default("patpush:"),
    /** Port of the second push server; 0 picks a free one. @defaultValue 8482 */
    secondPushPort: z.number().int().min(0).max(65535).default(DEFAULT_SECOND_PUSH_PORT),
  })
  .strict();

export type DistributedConfig = z.infer<typeof distributedConfigSchema>;
export type DistributedConfigInput = z.input<typeof distributedConfigSchema>;

export type DistributedDemoOptions = DemoConfigInput &
  DistributedConfigInput & { logger?: Logger };

/** A running distributed demo; `close()` stops every part. */
export interface DistributedDemo {
  /** Canonical portal URL, with the actual port. */
  portalUrl: string;
  /** WebSocket URLs of push server 0 and push server 1, which `?push=1` selects. */
  pushUrls: [string, string];
  redisUrl: string;
  keyPrefix: string;
  close(): Promise<void>;
}

interface DistributedBackend extends PortalBackend {
  pushServers: [PushServer, PushServer];
}

/**
 * Returns a publisher that appends done messages to the Redis done stream,
 * as a worker view in another process would.
 */
function streamPublisher(redis: Redis, keyPrefix: string): DonePublisher {
  return {
    publish: (message) => publishDoneMessage(redis, message, { keyPrefix }),
  };
}

/** Logs the Redis connection's errors once per outage, not on every reconnect attempt. */
function logConnection(redis: Redis, logger: Logger): void {
  let failing = false;
  redis.on("error", (err: Error) => {
    if (failing) return;
    failing = true;
    logger.error({ err }, "redis connection failed; retrying");
  });
  redis.on("ready", () => {
    if (!failing) return;
    failing = false;
    logger.info("redis connection restored");
  });
}

/**
 * Starts two push servers, each reading the done stream through its own
 * RedisBus, the BullMQ task queue, the dispatcher worker and the Redis
 * client that the worker view publishes with.
 */
async function startRedisBackend(
  context: BackendContext,
  redisConfig: DistributedConfig,
): Promise<DistributedBackend> {
  const { config, authUrl, origins, logger, onClose } = context;
  const taskConfig = {
    allowedOrigins: origins,
    encryptionKey: redisConfig.encryptionKey,
    keyPrefix: redisConfig.keyPrefix,
  };

  const pushServers: PushServer[] = [];
  for (const [index, port] of [config.pushPort, redisConfig.secondPushPort].entries()) {
    const pushLog = logger.child({ pushServer: index });
    const bus = new RedisBus({
      redisUrl: redisConfig.redisUrl,
      keyPrefix: redisConfig.keyPrefix,
      logger: pushLog,
    });
    onClose(() => bus.close());
    const push = await startPush(config.host, port, authUrl, origins, bus, pushLog);
    onClose(() => push.close());
    pushServers.push(push);
  }

  // Cleanups run in reverse, so the worker closes first and waits for its
  // running jobs, whose worker-view requests publish through this client.
  const client = new Redis(redisConfig.redisUrl);
  logConnection(client, logger.child({ component: "publisher" }));
  onClose(async () => client.disconnect());

  const queue = new BullmqQueue({ redisUrl: redisConfig.redisUrl, config: taskConfig, logger });
  onClose(() => queue.close());

  const worker = new TaskWorker({ redisUrl: redisConfig.redisUrl, config: taskConfig, logger });
  onClose(() => worker.close());
  await worker.start();

  return {
    pushServers: [pushServers[0]!, pushServers[1]!],
    queue,
    publisher: streamPublisher(client, redisConfig.keyPrefix),
  };
}

/**
 * Starts the demo with Redis between its parts, as a deployment with many
 * instances runs it. The portal enqueues tasks in BullMQ with their
 * credentials encrypted, and one TaskWorker dispatches them to the worker
 * view. The worker view appends done messages to the Redis done stream, and
 * two push servers deliver each message to their own sockets. All parts
 * share one process here, but talk only through Redis and HTTP.
 */
export async function startDistributedDemo(
  options: DistributedDemoOptions,
): Promise<DistributedDemo> {
  const { redisUrl, encryptionKey, keyPrefix, secondPushPort, ...demoOptions } = options;
  const redisConfig = parseConfig("distributed portal", distributedConfigSchema, {
    redisUrl,
    encryptionKey,
    keyPrefix,
    secondPushPort,
  });
  const logger = demoOptions.logger ?? createLogger();

  const portal = await startPortal({ ...demoOptions, logger }, (context) =>
    startRedisBackend(context, redisConfig),
  );
  const [first, second] = portal.backend.pushServers;
  return {
    portalUrl: portal.portalUrl,
    pushUrls: [first.url, second.url],
    redisUrl: redisConfig.redisUrl,
    keyPrefix: redisConfig.keyPrefix,
    close: portal.close,
  };
}
