/**
 * Entry point of the browser bundle `dist/patpush.js`, whose exports become
 * the global `patpush`. Loading the bundle initialises every `.pat-push`
 * element once the document is parsed.
 */
import { getLogger } from "../../client/log.ts";
import { init } from "./push.ts";

export { PushConnection } from "../../client/connection.ts";
export { applySnippet } from "./inject.ts";
export { parseOptions } from "./options.ts";
export { getConnection, init } from "./push.ts";

/** Release of this bundle, the same as `version` in package.json. */
export const version = "0.1.0";

declare global {
  interface Window {
    /** Patternslib 8 and later keep their pattern registry here. */
    __patternslib_registry?: unknown;
    /** Older Patternslib releases expose their API here. */
    patterns?: unknown;
  }
}

function start(): void {
  if (window.__patternslib_registry !== undefined || window.patterns !== undefined) {
    // TODO: register with Patternslib's registry, which already contains a
    // pattern named "push". Until then pat-push runs on its own beside it.
    getLogger("pat-push").debug("Patternslib found; pat-push initialises its elements itself");
  }
  init(document);
}

if (typeof document !== "undefined") {
  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", start, { once: true });
  } else {
    start();
  }
}
