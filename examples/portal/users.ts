import { createHash, timingSafeEqual } from "node:crypto";

/**
 * The demo's user accounts, kept in memory. The passwords are public demo
 * values printed at startup, so they protect nothing: they only let two
 * people (or two browser contexts) act as different users.
 */
const DEMO_PASSWORDS: ReadonlyMap<string, string> = new Map([
  ["alice", "alice"],
  ["bob", "bob"],
]);

/** User ids and passwords of the demo accounts, for printing at startup. */
export const DEMO_LOGINS: readonly { user: string; password: string }[] = [...DEMO_PASSWORDS].map(
  ([user, password]) => ({ user, password }),
);

function digest(text: string): Buffer {
  return createHash("sha256").update(text).digest();
}

/**
 * Returns the user id when `login` and `password` match a demo account, else
 * undefined. The passwords are compared as SHA-256 digests in constant time.
 */
export function checkPassword(login: string, password: string): string | undefined {
  const expected = DEMO_PASSWORDS.get(login);
  if (expected === undefined) return undefined;
  return timingSafeEqual(digest(expected), digest(password)) ? login : undefined;
}
