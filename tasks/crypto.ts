import { createCipheriv, createDecipheriv, randomBytes } from "node:crypto";
import { TaskError, TaskErrorCode } from "./errors.ts";

/** Length of an AES-256 key, in bytes. */
export const ENCRYPTION_KEY_BYTES = 32;

/** Length of a fresh AES-GCM initialisation vector, in bytes. */
const IV_BYTES = 12;

/** Credentials of a task that are encrypted before the task is stored in Redis. */
export interface TaskCredentials {
  /** Allowed cookies by name. */
  cookies: Record<string, string>;
  /** Authorization header value, when the request had one. */
  authorization?: string;
  /** CSRF token sent as the `_authenticator` form field, when the task has one. */
  authenticator?: string;
}

/** AES-256-GCM ciphertext of the credentials JSON; every field is base64. */
export interface SealedCredentials {
  v: 1;
  iv: string;
  tag: string;
  data: string;
}

/**
 * Decodes an encryption key given as 64 hex characters or as base64 of 32
 * bytes. Returns undefined for anything else, so callers can report the
 * problem without echoing the key.
 */
export function decodeEncryptionKey(value: string): Buffer | undefined {
  const text = value.trim();
  if (/^[0-9a-fA-F]{64}$/.test(text)) return Buffer.from(text, "hex");

  if (!/^[A-Za-z0-9+/]+={0,2}$/.test(text) && !/^[A-Za-z0-9_-]+={0,2}$/.test(text)) {
    return undefined;
  }
  const alphabet = text.includes("-") || text.includes("_") ? "base64url" : "base64";
  const bytes = Buffer.from(text, alphabet);
  return bytes.length === ENCRYPTION_KEY_BYTES ? bytes : undefined;
}

function requireKey(key: Buffer): void {
  if (key.length !== ENCRYPTION_KEY_BYTES) {
    throw new TaskError(
      TaskErrorCode.INVALID,
      `encryption key has ${key.length} bytes (expected ${ENCRYPTION_KEY_BYTES})`,
    );
  }
}

/**
 * Encrypts `credentials` with AES-256-GCM under `key`, using a fresh random
 * IV each call. `binding` is authenticated but not encrypted (GCM additional
 * data): openCredentials fails unless it receives the same binding.
 */
export function sealCredentials(
  credentials: TaskCredentials,
  key: Buffer,
  binding = "",
): SealedCredentials {
  requireKey(key);
  const iv = randomBytes(IV_BYTES);
  const cipher = createCipheriv("aes-256-gcm", key, iv);
  if (binding !== "") cipher.setAAD(Buffer.from(binding, "utf8"));
  const plain = Buffer.from(JSON.stringify(credentials), "utf8");
  const data = Buffer.concat([cipher.update(plain), cipher.final()]);
  return {
    v: 1,
    iv: iv.toString("base64"),
    tag: cipher.getAuthTag().toString("base64"),
    data: data.toString("base64"),
  };
}

function decryptFailed(detail: string, cause?: unknown): TaskError {
  return new TaskError(
    TaskErrorCode.DECRYPT_FAILED,
    `task credentials could not be decrypted: ${detail}; ` +
      "check that producer and dispatcher use the same encryptionKey",
    { cause },
  );
}

function parseCredentials(json: string): TaskCredentials {
  let value: Partial<TaskCredentials> | null;
  try {
    value = JSON.parse(json) as Partial<TaskCredentials> | null;
  } catch (error) {
    throw decryptFailed("the decrypted data is not JSON", error);
  }
  if (typeof value !== "object" || value === null || typeof value.cookies !== "object") {
    throw decryptFailed("the decrypted data is not a credentials object");
  }
  const credentials: TaskCredentials = { cookies: { ...value.cookies } };
  if (typeof value.authorization === "string") credentials.authorization = value.authorization;
  if (typeof value.authenticator === "string") credentials.authenticator = value.authenticator;
  return credentials;
}

/**
 * Decrypts sealed credentials. Throws TaskError PATPUSH_TASK_DECRYPT_FAILED
 * for a wrong key, a tampered ciphertext or tag, a `binding` other than the
 * one they were sealed with, or an unknown format.
 */
export function openCredentials(sealed: unknown, key: Buffer, binding = ""): TaskCredentials {
  requireKey(key);
  const box = sealed as Partial<SealedCredentials> | null;
  if (
    typeof box !== "object" ||
    box === null ||
    box.v !== 1 ||
    typeof box.iv !== "string" ||
    typeof box.tag !== "string" ||
    typeof box.data !== "string"
  ) {
    throw decryptFailed("unknown format (expected { v: 1, iv, tag, data })");
  }

  let plain: Buffer;
  try {
    const decipher = createDecipheriv("aes-256-gcm", key, Buffer.from(box.iv, "base64"));
    decipher.setAuthTag(Buffer.from(box.tag, "base64"));
    if (binding !== "") decipher.setAAD(Buffer.from(binding, "utf8"));
    plain = Buffer.concat([decipher.update(Buffer.from(box.data, "base64")), decipher.final()]);
  } catch (error) {
    throw decryptFailed("authentication failed (wrong key or modified data)", error);
  }
  return parseCredentials(plain.toString("utf8"));
}
