/**
 * Helpers shared by the security tests: the shape of a hostile case, a raw
 * HTTP client that sends exactly the bytes a case names, and leak checks.
 */
import assert from "node:assert/strict";
import { request as httpRequest } from "node:http";

/**
 * One hostile case of a security table: a short `name`, the `attack` the
 * test performs, and the documented response or outcome it `expected`.
 */
export interface HostileCase<Attack, Expected> {
  name: string;
  attack: Attack;
  expected: Expected;
}

/** A raw HTTP request to a loopback server. */
export interface RawRequest {
  method?: string;
  /** Path and query, sent as given. */
  path: string;
  headers?: Record<string, string>;
  body?: string | Buffer;
}

/** A response read to its end. */
export interface RawResponse {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  text: string;
}

/**
 * Sends `raw` to `baseUrl` with node:http, which checks less than undici, so
 * a case can send an odd method or Content-Type. Resolves with the response,
 * or with status 0 when the server closed the connection without one.
 */
export function sendRaw(baseUrl: string, raw: RawRequest): Promise<RawResponse> {
  const url = new URL(raw.path, baseUrl);
  return new Promise((resolve, reject) => {
    const req = httpRequest(
      url,
      { method: raw.method ?? "POST", headers: raw.headers ?? {}, agent: false },
      (res) => {
        const chunks: Buffer[] = [];
        res.on("data", (chunk: Buffer) => chunks.push(chunk));
        res.on("end", () =>
          resolve({
            status: res.statusCode ?? 0,
            headers: res.headers,
            text: Buffer.concat(chunks).toString("utf8"),
          }),
        );
        res.on("error", reject);
      },
    );
    req.on("error", (error: NodeJS.ErrnoException) => {
      // A server that rejects an oversized body may close before the client finishes writing.
      if (error.code === "ECONNRESET" || error.code === "EPIPE") {
        resolve({ status: 0, headers: {}, text: "" });
      } else {
        reject(error);
      }
    });
    req.end(raw.body);
  });
}

/**
 * Asserts that `text` (a response body or the captured log lines) contains
 * none of `secrets`, and names the first secret found without printing it.
 */
export function assertNoSecrets(text: string, secrets: readonly string[], where: string): void {
  secrets.forEach((secret, index) => {
    assert.ok(secret.length >= 8, `secret #${index} is too short to search for safely`);
    assert.ok(!text.includes(secret), `${where} contains secret #${index}`);
  });
}

/** Markers of internal detail that an error body must not show. */
const INTERNAL_DETAIL_PATTERNS: readonly RegExp[] = [
  /\bat [^\n]+\(.*:\d+:\d+\)/, // a stack frame
  /\/(?:work|home|usr|tmp|node_modules)\//, // a file path
  /\.ts:\d+/,
  /\bECONN[A-Z]+\b|\bERR_[A-Z_]+\b/,
  /\bReplyError\b|\bredis\b/i,
];

/** Asserts that an error body shows no stack, file path, Redis error or system error code. */
export function assertNoInternalDetail(body: string, where: string): void {
  for (const pattern of INTERNAL_DETAIL_PATTERNS) {
    assert.doesNotMatch(body, pattern, `${where} shows internal detail`);
  }
}

/** Polls `check` until it returns true, failing with `condition` after `timeoutMs`. */
export async function waitUntil(
  check: () => boolean | Promise<boolean>,
  condition: string,
  timeoutMs = 10_000,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting until ${condition}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}
