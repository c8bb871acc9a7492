/**
 * URL policy of the injector: it fetches only http(s) URLs without user info,
 * of the page's origin or an allowed origin. Every check runs on the URL as
 * the browser's own parser resolves it, so spellings such as `//host`,
 * `\\host`, `https:host`, `https://portal@host`, Unicode host names and
 * embedded tabs or newlines are judged by the origin they really name.
 */

/** Resolves `href` against the document's base URL, or returns undefined when it is empty or invalid. */
export function resolveUrl(href: string): URL | undefined {
  if (href === "") return undefined;
  try {
    return new URL(href, document.baseURI);
  } catch {
    return undefined;
  }
}

/** Returns why `url` may not be fetched, or undefined when it may. */
export function urlRejection(url: URL, allowedOrigins: readonly string[] = []): string | undefined {
  if (url.protocol !== "http:" && url.protocol !== "https:") {
    return `scheme ${url.protocol} is not http(s)`;
  }
  // fetch() rejects such URLs anyway, and a user name can make a foreign host look familiar.
  if (url.username !== "" || url.password !== "") return "URL contains user info";
  if (url.origin === window.location.origin) return undefined;

  const allowed = allowedOrigins.some((origin) => isSameOrigin(origin, url.origin));
  return allowed ? undefined : `origin ${url.origin} is not the page's origin or an allowed origin`;
}

function isSameOrigin(allowedOrigin: string, origin: string): boolean {
  try {
    return new URL(allowedOrigin).origin === origin;
  } catch {
    return false;
  }
}
