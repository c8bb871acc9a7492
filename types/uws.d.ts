// The package's entry point is plain JavaScript, and its TypeScript
// declarations ship in docs/index.d.ts, which package.json names as "types".
// server/uws.ts loads the native binary directly. This file is a module so
// that the block below augments those declarations instead of replacing them.
export {};

declare module "@trufflesuite/uws-js-unofficial" {
  /** Listen option that turns SO_REUSEPORT off; exported by the native binary. */
  export const LIBUS_LISTEN_EXCLUSIVE_PORT: ListenOptions;

  interface TemplatedApp {
    /**
     * Closes every listen socket and forcefully closes every open connection
     * of this app. The native binary of 20.30.0-unofficial.0 has it, and
     * docs/index.d.ts does not declare it.
     */
    close(): TemplatedApp;

    /**
     * Listens on host and port with listen options. The native binary accepts
     * this form, and docs/index.d.ts declares options only for the form
     * without a host.
     */
    listen(
      host: RecognizedString,
      port: number,
      options: ListenOptions,
      cb: (listenSocket: us_listen_socket | false) => void | Promise<void>,
    ): TemplatedApp;
  }
}
