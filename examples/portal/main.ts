// Entry point of `npm start`: runs the demo portal, the push server and the
// task runner in one process until SIGINT or SIGTERM. With PATPUSH_REDIS_URL
// set it runs the distributed demo instead: two push servers, a BullMQ queue
// and a task worker, all talking through that Redis.
import { randomBytes } from "node:crypto";
import { ConfigError } from "../../common/config.ts";
import { createLogger, type Logger } from "../../common/logger.ts";
import { startDemo } from "./app.ts";
import { DEFAULT_PORTAL_PORT, DEFAULT_PUSH_PORT, PortInUseError } from "./config.ts";
import { DEFAULT_SECOND_PUSH_PORT, startDistributedDemo } from "./distributed.ts";
import { DEMO_LOGINS } from "./users.ts";

const PORT_VARIABLES = { portal: "PATPUSH_PORTAL_PORT", push: "PATPUSH_PUSH_PORT" } as const;

/** Port variable of the distributed demo's second push server. */
const SECOND_PUSH_PORT_VARIABLE = "PATPUSH_SECOND_PUSH_PORT";

/** The part of either demo that main uses. */
interface RunningDemo {
  portalUrl: string;
  pushUrls: string[];
  close(): Promise<void>;
}

/** Returns the port in environment variable `name`, or undefined when it is not set. */
function portFromEnv(name: string): number | undefined {
  const text = process.env[name];
  if (text === undefined || text === "") return undefined;

  const port = Number(text);
  if (!Number.isInteger(port) || port < 0 || port > 65535) {
    console.error(`${name} must be a port number from 0 to 65535 (got ${JSON.stringify(text)})`);
    process.exit(2);
  }
  return port;
}

/** Exits with status 2 when both servers would listen on the same non-zero port. */
function requireDistinctPorts(portalPort: number | undefined, pushPort: number | undefined): void {
  const portal = portalPort ?? DEFAULT_PORTAL_PORT;
  const push = pushPort ?? DEFAULT_PUSH_PORT;
  if (portal === 0 || portal !== push) return;

  const describePort = (name: string, port: number | undefined, fallback: number): string =>
    port === undefined ? `${name} is unset (default ${fallback})` : `${name}=${port}`;
  const portalText = describePort(PORT_VARIABLES.portal, portalPort, DEFAULT_PORTAL_PORT);
  const pushText = describePort(PORT_VARIABLES.push, pushPort, DEFAULT_PUSH_PORT);
  console.error(
    `the portal and the push server need different ports, but ${portalText} and ${pushText}; ` +
      "set one of them to another port",
  );
  process.exit(2);
}

/**
 * Returns PATPUSH_ENCRYPTION_KEY, or a random key with a warning when it is
 * unset. A random key is enough for one demo process, which is the only
 * process that encrypts and decrypts its tasks.
 */
function encryptionKeyFromEnv(logger: Logger): string {
  const key = process.env.PATPUSH_ENCRYPTION_KEY;
  if (key !== undefined && key !== "") return key;

  logger.warn(
    "PATPUSH_ENCRYPTION_KEY is unset, so this demo encrypts task credentials with a random key; " +
      "workers in other processes cannot decrypt them. Set 64 hex characters for a deployment",
  );
  return randomBytes(32).toString("hex");
}

/** Starts the single-process demo, or the distributed one when PATPUSH_REDIS_URL is set. */
async function startFromEnv(logger: Logger): Promise<RunningDemo> {
  const portalPort = portFromEnv(PORT_VARIABLES.portal);
  const pushPort = portFromEnv(PORT_VARIABLES.push);
  requireDistinctPorts(portalPort, pushPort);

  const redisUrl = process.env.PATPUSH_REDIS_URL;
  if (redisUrl === undefined || redisUrl === "") {
    const demo = await startDemo({ portalPort, pushPort, logger });
    return { portalUrl: demo.portalUrl, pushUrls: [demo.pushUrl], close: demo.close };
  }
  return startDistributedDemo({
    redisUrl,
    encryptionKey: encryptionKeyFromEnv(logger),
    portalPort,
    pushPort,
    secondPushPort: portFromEnv(SECOND_PUSH_PORT_VARIABLE),
    logger,
  });
}

/** Returns the environment variable that sets the port a PortInUseError names. */
function portVariableOf(err: PortInUseError): string {
  const distributed = (process.env.PATPUSH_REDIS_URL ?? "") !== "";
  const secondPort = portFromEnv(SECOND_PUSH_PORT_VARIABLE) ?? DEFAULT_SECOND_PUSH_PORT;
  const pushPort = portFromEnv(PORT_VARIABLES.push) ?? DEFAULT_PUSH_PORT;
  if (distributed && err.server === "push" && err.port === secondPort && err.port !== pushPort) {
    return SECOND_PUSH_PORT_VARIABLE;
  }
  return PORT_VARIABLES[err.server];
}

async function main(): Promise<void> {
  const logger = createLogger();
  let demo: RunningDemo;
  try {
    demo = await startFromEnv(logger);
  } catch (err) {
    if (err instanceof ConfigError) {
      console.error(err.message);
      process.exit(2);
    }
    if (err instanceof PortInUseError) {
      const variable = portVariableOf(err);
      console.error(
        `${err.message}; stop what uses it or choose another port, e.g. ${variable}=${err.port + 10} npm start`,
      );
      process.exit(1);
    }
    throw err;
  }

  const logins = DEMO_LOGINS.map(({ user, password }) => `${user} / ${password}`).join(", ");
  console.log(`\npatpush demo portal: ${demo.portalUrl}/workspace`);
  for (const [index, pushUrl] of demo.pushUrls.entries()) {
    const choice = demo.pushUrls.length > 1 ? ` (pages: /workspace?push=${index})` : "";
    console.log(`push server:         ${pushUrl}${choice}`);
  }
  console.log(`demo logins:         ${logins}`);
  console.log("stop with Ctrl+C\n");

  const stop = (signal: NodeJS.Signals): void => {
    logger.info({ signal }, "shutting down");
    demo.close().then(
      () => process.exit(0),
      (err: unknown) => {
        logger.error({ err }, "shutdown failed");
        process.exit(1);
      },
    );
  };
  process.once("SIGINT", stop);
  process.once("SIGTERM", stop);
}

main().catch((err: unknown) => {
  console.error(err instanceof Error ? `${err.message}` : err);
  process.exit(1);
});
