import { createHmac, timingSafeEqual } from "node:crypto";

/** Request header that carries the task signature. */
export const SIGNATURE_HEADER = "X-Task-Signature";

/** Default maximum distance between the signature time and now, in seconds. */
export const SIGNATURE_TOLERANCE_S = 300;

/** Input of {@link signTask}: the request as the dispatcher sends it. */
export interface SignTaskInput {
  secret: string;
  method: string;
  /** Absolute request URL, exactly as sent. */
  url: string;
  /** Request body, exactly as sent. */
  body: string;
  /** Signature time in milliseconds since the epoch. @defaultValue Date.now() */
  now?: number;
}

/** Input of {@link verifyTaskSignature}: the request as the receiver got it. */
export interface VerifyTaskSignatureInput {
  secret: string;
  /** Value of the X-Task-Signature header; undefined when the header is absent. */
  header: string | undefined;
  method: string;
  /** Absolute request URL, as the dispatcher sent it. */
  url: string;
  /** Raw request body. */
  body: string | Buffer;
  /** Maximum distance between the signature time and now, in seconds. @defaultValue 300 */
  toleranceS?: number;
  /** Current time in milliseconds since the epoch. @defaultValue Date.now() */
  now?: number;
}

/** Reason a signature was rejected. */
export type SignatureFailureReason = "missing" | "malformed" | "stale" | "mismatch";

/** Result of {@link verifyTaskSignature}. */
export type SignatureVerification = { ok: true } | { ok: false; reason: SignatureFailureReason };

const HEADER_PATTERN = /^t=(\d{1,12}),v1=([0-9a-f]{64})$/;

function computeDigest(
  secret: string,
  timestamp: string,
  method: string,
  url: string,
  body: string | Buffer,
): Buffer {
  const hmac = createHmac("sha256", secret);
  hmac.update(`${timestamp}\n${method.toUpperCase()}\n${url}\n`);
  hmac.update(body);
  return hmac.digest();
}

/**
 * Returns the X-Task-Signature value for a request:
 * `t=<unix seconds>,v1=<hex HMAC-SHA256(secret, t "\n" method "\n" url "\n" body)>`.
 */
export function signTask(input: SignTaskInput): string {
  const timestamp = String(Math.floor((input.now ?? Date.now()) / 1000));
  const digest = computeDigest(input.secret, timestamp, input.method, input.url, input.body);
  return `t=${timestamp},v1=${digest.toString("hex")}`;
}

/**
 * Checks an X-Task-Signature header against the request. The digest is
 * compared in constant time, and a signature whose time lies more than
 * `toleranceS` seconds before or after now is rejected as "stale".
 */
export function verifyTaskSignature(input: VerifyTaskSignatureInput): SignatureVerification {
  const header = input.header?.trim();
  if (header === undefined || header === "") return { ok: false, reason: "missing" };

  const match = HEADER_PATTERN.exec(header);
  if (match === null) return { ok: false, reason: "malformed" };
  const [, timestamp = "", hex = ""] = match;

  const toleranceS = input.toleranceS ?? SIGNATURE_TOLERANCE_S;
  const nowS = Math.floor((input.now ?? Date.now()) / 1000);
  if (Math.abs(nowS - Number(timestamp)) > toleranceS) return { ok: false, reason: "stale" };

  const expected = computeDigest(input.secret, timestamp, input.method, input.url, input.body);
  const received = Buffer.from(hex, "hex");
  if (!timingSafeEqual(expected, received)) return { ok: false, reason: "mismatch" };
  return { ok: true };
}
