import { createHash } from "node:crypto";

/** Cookie name -> value, in the order they appeared. */
export type CookieJar = Map<string, string>;

/**
 * Parses a `Cookie` request header and keeps only the names in `allowed`.
 * The first occurrence of a name wins, as browsers send the most specific
 * path first.
 */
export function pickCookies(header: string | undefined, allowed: readonly string[]): CookieJar {
  const jar: CookieJar = new Map();
  if (!header) return jar;

  for (const part of header.split(";")) {
    const eq = part.indexOf("=");
    if (eq < 0) continue;
    const name = part.slice(0, eq).trim();
    if (!allowed.includes(name) || jar.has(name)) continue;
    jar.set(name, part.slice(eq + 1).trim());
  }
  return jar;
}

/** Serialises a jar back into a `Cookie` header value. */
export function formatCookieHeader(jar: CookieJar): string {
  return [...jar].map(([name, value]) => `${name}=${value}`).join("; ");
}

/**
 * Returns a SHA-256 hex digest of the jar, sorted by name, for use as a
 * cache key: the cookie values themselves never become map keys or log fields.
 */
export function hashCookies(jar: CookieJar): string {
  const hash = createHash("sha256");
  for (const name of [...jar.keys()].sort()) {
    hash.update(name).update("\0").update(jar.get(name) ?? "").update("\0");
  }
  return hash.digest("hex");
}
