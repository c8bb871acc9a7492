// Entry point of `npm start`: runs the demo portal, the push server and the
// task runner in one process until SIGINT or SIGTERM.
import { createLogger } from "../../common/logger.ts";
import { startDemo, type Demo } from "./app.ts";
import { DEFAULT_PORTAL_PORT, DEFAULT_PUSH_PORT, PortInUseError } from "./config.ts";
import { DEMO_LOGINS } from "./users.ts";

const PORT_VARIABLES = { portal: "PATPUSH_PORTAL_PORT", push: "PATPUSH_PUSH_PORT" } as const;

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

async function main(): Promise<void> {
  const portalPort = portFromEnv(PORT_VARIABLES.portal);
  const pushPort = portFromEnv(PORT_VARIABLES.push);
  requireDistinctPorts(portalPort, pushPort);

  const logger = createLogger();
  let demo: Demo;
  try {
    demo = await startDemo({ portalPort, pushPort, logger });
  } catch (err) {
    if (err instanceof PortInUseError) {
      const variable = PORT_VARIABLES[err.server];
      console.error(
        `${err.message}; stop what uses it or choose another port, e.g. ${variable}=${err.port + 10} npm start`,
      );
      process.exit(1);
    }
    throw err;
  }

  const logins = DEMO_LOGINS.map(({ user, password }) => `${user} / ${password}`).join(", ");
  console.log(`\npatpush demo portal: ${demo.portalUrl}/workspace`);
  console.log(`push server:         ${demo.pushUrl}`);
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
