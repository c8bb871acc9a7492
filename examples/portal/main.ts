// Entry point of `npm start`: runs the demo portal, the push server and the
// task runner in one process until SIGINT or SIGTERM.
import { createLogger } from "../../common/logger.ts";
import { startDemo, type Demo } from "./app.ts";
import { PortInUseError } from "./config.ts";
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

async function main(): Promise<void> {
  const logger = createLogger();
  let demo: Demo;
  try {
    demo = await startDemo({
      portalPort: portFromEnv(PORT_VARIABLES.portal),
      pushPort: portFromEnv(PORT_VARIABLES.push),
      logger,
    });
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
