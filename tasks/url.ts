import type { Task } from "./types.ts";
import { TaskError, TaskErrorCode } from "./errors.ts";

const SCHEME_PATTERN = /^[A-Za-z][A-Za-z0-9+.-]*:/;

/** Returns the URL without user info, query or fragment, for error messages and logs. */
export function describeUrl(url: URL): string {
  return `${url.origin}${url.pathname}`;
}

function parseHttpUrl(value: string, option: string): URL {
  let url: URL;
  try {
    url = new URL(value);
  } catch (error) {
    throw new TaskError(
      TaskErrorCode.URL_INVALID,
      `task ${option} ${JSON.stringify(value)} is not a valid URL; pass an absolute http(s) URL`,
      { cause: error },
    );
  }

  if (url.protocol !== "http:" && url.protocol !== "https:") {
    throw new TaskError(
      TaskErrorCode.URL_INVALID,
      `task ${option} uses the unsupported scheme "${url.protocol}"; ` +
        "only http: and https: are dispatched",
    );
  }
  if (url.username !== "" || url.password !== "") {
    throw new TaskError(
      TaskErrorCode.URL_INVALID,
      `task ${option} ${describeUrl(url)} contains a user name or password; remove them, ` +
        "because the task sends the request's own cookies",
    );
  }
  return url;
}

/** Appends a relative `url` to the path of `contextUrl`, dropping its query and fragment. */
function appendToContext(url: string, contextUrl: string | undefined): string {
  if (contextUrl === undefined || contextUrl === "") {
    throw new TaskError(
      TaskErrorCode.URL_INVALID,
      `task url ${JSON.stringify(url)} is relative but contextUrl is missing; ` +
        "pass contextUrl (the absolute URL of the context object) or an absolute url",
    );
  }
  const context = parseHttpUrl(contextUrl, "contextUrl");
  const base = context.pathname.replace(/\/+$/, "");
  const relative = url.replace(/^\//, "");
  return `${context.origin}${base}/${relative}`;
}

/**
 * Resolves a task URL and checks its origin. A `url` starting with `/` is
 * appended to the path of `contextUrl` (`http://p/a/doc` + `/@@x` gives
 * `http://p/a/doc/@@x`), a relative one is joined with `/` (same result for
 * `@@x`), and an absolute http(s) URL is used as given. A trailing slash on
 * the context does not produce a double slash.
 *
 * Throws TaskError PATPUSH_TASK_URL_INVALID for another scheme, a
 * protocol-relative `//host` URL, user info, or a relative URL without
 * `contextUrl`, and PATPUSH_TASK_URL_NOT_ALLOWED when the resolved origin
 * is not in `allowedOrigins` (normalised origins, as taskConfigSchema returns them).
 */
export function resolveTaskUrl(
  url: string,
  contextUrl: string | undefined,
  allowedOrigins: readonly string[],
): string {
  if (url === "") {
    throw new TaskError(
      TaskErrorCode.URL_INVALID,
      "task url is empty; pass a path or an absolute URL",
    );
  }
  if (url.startsWith("//")) {
    throw new TaskError(
      TaskErrorCode.URL_INVALID,
      `task url ${JSON.stringify(url)} is protocol-relative; ` +
        "pass an absolute URL with http: or https:, " +
        "or a path with one leading slash",
    );
  }

  const absolute = SCHEME_PATTERN.test(url) ? url : appendToContext(url, contextUrl);
  const resolved = parseHttpUrl(absolute, "url");
  checkOrigin(resolved, allowedOrigins);
  return resolved.href;
}

/**
 * Parses a queued task's URL and checks its scheme, user info and origin
 * again, because a queue may contain tasks from other producers or data
 * changed in Redis. Throws PATPUSH_TASK_URL_INVALID or
 * PATPUSH_TASK_URL_NOT_ALLOWED, and returns the parsed URL.
 */
export function checkTaskUrl(
  task: Pick<Task, "id" | "url">,
  allowedOrigins: readonly string[],
): URL {
  let url: URL;
  try {
    url = new URL(task.url);
  } catch (error) {
    const message = `task ${task.id} has an invalid url; pass an absolute http(s) URL`;
    throw new TaskError(TaskErrorCode.URL_INVALID, message, { cause: error });
  }
  if (url.protocol !== "http:" && url.protocol !== "https:") {
    throw new TaskError(
      TaskErrorCode.URL_INVALID,
      `task ${task.id} url uses the unsupported scheme "${url.protocol}"; ` +
        "only http: and https: are dispatched",
    );
  }
  if (url.username !== "" || url.password !== "") {
    throw new TaskError(
      TaskErrorCode.URL_INVALID,
      `task ${task.id} url ${describeUrl(url)} contains a user name or password; remove them`,
    );
  }
  checkOrigin(url, allowedOrigins);
  return url;
}

/** Throws PATPUSH_TASK_URL_NOT_ALLOWED unless the URL's origin is one of `allowedOrigins`. */
export function checkOrigin(url: URL, allowedOrigins: readonly string[]): void {
  if (allowedOrigins.includes(url.origin)) return;
  throw new TaskError(
    TaskErrorCode.URL_NOT_ALLOWED,
    `task URL origin ${url.origin} is not allowed (allowed: ${allowedOrigins.join(", ")}); ` +
      "add it to the tasks allowedOrigins option or use a URL on an allowed origin",
  );
}
