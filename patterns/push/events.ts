/**
 * Names and dispatch of the DOM events the pattern fires. The
 * `pat-inject-*` names follow Patternslib's pat-inject; the `patpush:*`
 * names are this project's own.
 */

export const PushEvent = {
  /** A source selector matched nothing in the fetched page. */
  MISSING_SOURCE: "pat-inject-missingSource",
  /** A target selector matched nothing in this page. */
  MISSING_TARGET: "pat-inject-missingTarget",
  /** Fired on each injected element (on the target when only text was injected). */
  INJECT_SUCCESS: "pat-inject-success",
  /** Fired together with `pat-inject-success`, with the injection details. */
  INJECTED: "patpush:injected",
  /** The fragment request failed: network error, timeout or a status other than 2xx. */
  FETCH_FAILED: "patpush:fetch-failed",
  /** A snippet had no injection element, no href, or an invalid selector. */
  INVALID_SNIPPET: "patpush:invalid-snippet",
  /** A URL was not http(s) or its origin was not allowed, so no request was made. */
  URL_REJECTED: "patpush:url-rejected",
  /** Every message frame, before it is applied. Cancelling it skips the default handling. */
  MESSAGE: "patpush:message",
  /** Every welcome frame. */
  WELCOME: "patpush:welcome",
  /**
   * A welcome frame with recovery "gap": messages for this page may be lost,
   * so the pattern reloads every pending placeholder.
   */
  GAP: "patpush:gap",
  /** Patternslib's push marker: `detail.body` is the push id. */
  PUSH: "push",
} as const;

/** Dispatches a bubbling CustomEvent and returns false when a listener cancelled it. */
export function emit(
  target: EventTarget,
  type: string,
  detail: unknown,
  cancelable = false,
): boolean {
  return target.dispatchEvent(new CustomEvent(type, { bubbles: true, cancelable, detail }));
}
