import { z } from "zod";
import { parseConfig } from "../common/config.ts";
import { KEY_PREFIX_PATTERN, KEY_PREFIX_RULE } from "../tasks/config.ts";

/** Returns true when `value` is a serialised origin such as `http://127.0.0.1:8480`. */
function isOrigin(value: string): boolean {
  try {
    const url = new URL(value);
    return (url.protocol === "http:" || url.protocol === "https:") && url.origin === value;
  } catch {
    return false;
  }
}

/** A cookie name as RFC 6265 defines it: an HTTP token. */
const COOKIE_NAME = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;

const originSchema = z
  .string()
  .refine(isOrigin, "must be an origin: scheme://host[:port] with no path or trailing slash");

/**
 * Push server options. Parse them with {@link parseServerConfig}, which
 * applies the defaults and lists every invalid field at once.
 */
export const serverConfigSchema = z
  .object({
    /** Interface to listen on. @defaultValue "127.0.0.1" */
    host: z.string().min(1).default("127.0.0.1"),
    /** TCP port to listen on, or 0 for a free port. @defaultValue 8481 */
    port: z.number().int().min(0).max(65535).default(8481),
    /**
     * URL path of the WebSocket endpoint; the auth check lives at `<path>/auth`.
     * @defaultValue "/push"
     */
    path: z
      .string()
      .regex(/^(\/[A-Za-z0-9._~-]+)+$/, "must be a path such as /push, with no trailing slash")
      .default("/push"),
    /**
     * Portal URL that authenticates a session: GET with the allowed cookies,
     * returning `200 {"user", "channels"}` or 401/403. Required.
     */
    authUrl: z
      .url({ protocol: /^https?$/, error: "must be an absolute http or https URL" })
      .refine(
        (value) => !/^[a-z][a-z0-9+.-]*:\/\/[^/?#]*@/i.test(value),
        "must not contain a user name or password: the push server sends only the session cookies",
      ),
    /**
     * Origins allowed to open sockets and call `<path>/auth`, compared exactly
     * with the request's Origin header. @defaultValue the origin of `authUrl`
     */
    allowedOrigins: z.array(originSchema).min(1).optional(),
    /** Cookies forwarded to `authUrl`, by name. Others are dropped. @defaultValue ["__ac"] */
    cookieNames: z
      .array(z.string().regex(COOKIE_NAME, "must be a cookie name (an HTTP token)"))
      .min(1)
      .default(["__ac"]),
    /** Time limit of one auth request, in milliseconds. @defaultValue 5000 */
    authTimeoutMs: z.number().int().min(1).max(60_000).default(5000),
    /**
     * Maximum number of connections to the auth URL's origin at once; further
     * auth requests wait for a free one. It bounds the portal's load and this
     * server's file descriptors during a reconnect storm. @defaultValue 32
     */
    authConnections: z.number().int().min(1).max(1024).default(32),
    /** Cache lifetime of an accepted session, in ms, or 0 for none. @defaultValue 10000 */
    authCacheTtlMs: z.number().int().min(0).default(10_000),
    /** Cache lifetime of a 401/403 rejection, in ms, or 0 for none. @defaultValue 2000 */
    authRejectCacheTtlMs: z.number().int().min(0).default(2000),
    /**
     * Maximum length of the allowed cookies forwarded to `authUrl`, in
     * characters. Longer ones are rejected with 431 without asking the
     * portal. @defaultValue 4096
     */
    maxCookieBytes: z.number().int().min(64).max(65_536).default(4096),
    /**
     * Accepts a socket upgrade or auth request without an Origin header.
     * Browsers always send one with a WebSocket handshake, so only a non-browser
     * client needs this. A present Origin is still checked. @defaultValue false
     */
    allowMissingOrigin: z.boolean().default(false),
    /**
     * Interval at which each open socket's session is checked again at
     * authUrl, in milliseconds, or 0 for never. Each socket's next check falls
     * at a random time between 0.75 and 1.25 times the interval, so sockets
     * opened together do not check together. @defaultValue 300000 (5 minutes)
     */
    revalidateIntervalMs: z
      .number()
      .int()
      .refine((ms) => ms === 0 || (ms >= 1000 && ms <= 24 * 60 * 60 * 1000), {
        message: "must be 0 (disabled) or 1000-86400000 milliseconds",
      })
      .default(300_000),
    /**
     * Maximum open sockets of one user on this push server, or 0 for no
     * limit. Past it, an upgrade is rejected with 429. @defaultValue 16
     */
    maxSocketsPerUser: z.number().int().min(0).max(1_000_000).default(16),
    /**
     * Maximum open and opening sockets from one remote address on this push
     * server, or 0 for no limit. Past it, an upgrade is rejected with 429
     * before the portal is asked. @defaultValue 256
     */
    maxSocketsPerIp: z.number().int().min(0).max(1_000_000).default(256),
    /**
     * Upgrades and auth requests one remote address may start per second, or
     * 0 for no limit: a token bucket that refills at this rate and contains at
     * most as many tokens, so a burst of this size passes at once. Past it, a request
     * is rejected with 429 and Retry-After before the portal is asked.
     * @defaultValue 20
     */
    upgradesPerIpPerSecond: z.number().int().min(0).max(1_000_000).default(20),
    /**
     * Addresses of the proxies in front of this push server whose
     * `X-Forwarded-For` header names the client address that the
     * per-address limits count. From any other peer the header is ignored.
     * @defaultValue [] (the TCP peer is the client)
     */
    trustedProxies: z
      .array(z.union([z.ipv4(), z.ipv6()], { error: "must be an IPv4 or IPv6 address" }))
      .max(100)
      .default([]),
    /** Maximum inbound frame, in bytes. A larger frame closes the socket. @defaultValue 4096 */
    maxPayloadBytes: z.number().int().min(1).max(16 * 1024 * 1024).default(4096),
    /**
     * Maximum send buffer of one socket, in bytes. A socket past it is
     * closed with 4003 (slow consumer). @defaultValue 1048576 (1 MiB)
     */
    maxBackpressureBytes: z
      .number()
      .int()
      .min(1)
      .max(2 ** 31 - 1)
      .default(1024 * 1024),
    /**
     * Age of the oldest message a reconnecting socket can recover, in
     * milliseconds, by the time in its message id. An older last id gets
     * recovery "gap". @defaultValue 300000 (5 minutes)
     */
    recoveryWindowMs: z
      .number()
      .int()
      .min(0)
      .max(24 * 60 * 60 * 1000)
      .default(300_000),
    /**
     * Messages the recovery history keeps per user and per channel. A socket
     * that missed more of them gets recovery "gap". @defaultValue 100
     */
    recoveryMaxMessages: z.number().int().min(0).max(100_000).default(100),
    /**
     * Time an upgrade waits for the bus to finish its start and to reach the
     * upgrade's last id, in milliseconds. Then the socket opens anyway, with
     * recovery "gap" for a last id not reached. @defaultValue 2000
     */
    resumeWaitMs: z.number().int().min(0).max(60_000).default(2000),
    /**
     * Time close() gives sockets to receive what was already sent to them
     * before it closes the rest by force, in milliseconds. @defaultValue 10000
     */
    shutdownDrainMs: z.number().int().min(0).max(600_000).default(10_000),
    /**
     * Seconds without traffic before a socket is closed, or 0 for never. uWS
     * sends pings before then, and its App.h terminates the process on a value
     * other than 0 or 8-960. @defaultValue 120
     */
    idleTimeoutS: z
      .number()
      .int()
      .refine((s) => s === 0 || (s >= 8 && s <= 960), "must be 0 (disabled) or 8-960 seconds")
      .default(120),
    /**
     * Redis server that carries done messages between workers and push
     * servers, as a redis:// or rediss:// URL. While it is unset, messages
     * travel only inside this process (EmbeddedBus).
     */
    redisUrl: z
      .url({ protocol: /^rediss?$/, error: "must be a redis:// or rediss:// URL" })
      .optional(),
    /**
     * Prefix of every Redis key and channel that patpush uses. The done
     * stream and the done channel are both named `<keyPrefix>done`. @defaultValue "patpush:"
     */
    keyPrefix: z
      .string()
      // The same rule as the task queue's, so one PATPUSH_KEY_PREFIX serves every command.
      .regex(KEY_PREFIX_PATTERN, KEY_PREFIX_RULE)
      .default("patpush:"),
    /**
     * Approximate maximum number of entries in the done stream. A RedisBus
     * made with it trims the stream every minute with `XTRIM MAXLEN ~`.
     * @defaultValue 10000
     */
    streamMaxLen: z.number().int().min(1).default(10_000),
    /**
     * Bearer key of the producer HTTP API (`POST /api/publish`, `POST /api/tasks`),
     * at least 32 characters. While it is unset, the API routes return 404.
     */
    apiKey: z.string().min(32, "must have at least 32 characters").optional(),
    /** Maximum request body of the producer HTTP API, in bytes. @defaultValue 262144 (256 KiB) */
    maxApiBodyBytes: z
      .number()
      .int()
      .min(1024)
      .max(16 * 1024 * 1024)
      .default(256 * 1024),
  })
  .strict()
  .transform((config) => ({
    ...config,
    allowedOrigins: config.allowedOrigins ?? [new URL(config.authUrl).origin],
  }));

/** Push server options after parsing, with every default applied. */
export type ServerConfig = z.output<typeof serverConfigSchema>;

/** Push server options as a caller writes them, where fields with defaults are optional. */
export type ServerConfigInput = z.input<typeof serverConfigSchema>;

/** Parses push server options. Throws ConfigError (PATPUSH_CONFIG_INVALID) listing all problems. */
export function parseServerConfig(input: unknown): ServerConfig {
  return parseConfig("push server", serverConfigSchema, input);
}
