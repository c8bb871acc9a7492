import { createServer, type AddressInfo } from "node:net";

/**
 * Returns a loopback port that was free a moment ago: the system picks it
 * for a listener that is closed at once. For tests that need a fixed port,
 * such as a server they restart on the same port.
 */
export async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  await new Promise((resolve) => server.close(resolve));
  return port;
}
