// The package's entry point is plain JavaScript; its TypeScript declarations
// ship in docs/index.d.ts. server/uws.ts loads the native binary directly.
declare module "@trufflesuite/uws-js-unofficial" {
  export * from "@trufflesuite/uws-js-unofficial/docs/index.js";
}
