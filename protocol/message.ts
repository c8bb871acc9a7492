import { z } from "zod";

/** Maximum size of a done message's `html` snippet, in characters. */
export const MAX_HTML_CHARS = 64 * 1024;

/**
 * Maximum nesting depth of a done message's `data`. JSON.stringify recurses,
 * and with Node 20's default stack size a value nested 20,000 levels deep
 * made it throw RangeError, so the API returned 500 instead of 400.
 */
export const MAX_DATA_DEPTH = 64;

/** Returns true when `value` nests arrays and objects at most `maxDepth` levels deep. */
function nestsAtMost(value: unknown, maxDepth: number): boolean {
  // An explicit stack, because a recursive walk would overflow on the values it rejects.
  const pending: Array<[unknown, number]> = [[value, 0]];
  for (let entry = pending.pop(); entry !== undefined; entry = pending.pop()) {
    const [item, depth] = entry;
    if (typeof item !== "object" || item === null) continue;
    if (depth >= maxDepth) return false;
    for (const child of Object.values(item)) pending.push([child, depth + 1]);
  }
  return true;
}

/**
 * A done message: what a worker publishes when its result is committed. It
 * names exactly one recipient, a `user` or a `channel`, and carries a
 * pat-inject snippet in `html` and/or a custom `event` with `data`.
 *
 * A logout message `{"user": "...", "logout": true}` carries nothing else:
 * every push server closes that user's sockets with 4001 and drops the
 * user's cached sessions. It is never sent as a frame nor replayed.
 */
export const doneMessageSchema = z
  .object({
    /** Recipient user id, as the portal's auth URL returns it. */
    user: z.string().min(1).max(256).optional(),
    /** Recipient channel, delivered to the sockets whose auth granted it. */
    channel: z.string().min(1).max(256).optional(),
    /** pat-inject snippet: elements with `href` = URL#selector and `data-pat-inject`. */
    html: z.string().max(MAX_HTML_CHARS).optional(),
    /** Name of a DOM CustomEvent that pat-push fires on `document.body`. */
    event: z
      .string()
      .regex(/^[A-Za-z][\w:.-]{0,63}$/, "must be a DOM event name of 1-64 word characters")
      .optional(),
    /** JSON payload carried as the custom event's `detail.data`. */
    data: z
      .unknown()
      .refine((value) => nestsAtMost(value, MAX_DATA_DEPTH), {
        message: `must not nest arrays and objects more than ${MAX_DATA_DEPTH} levels deep`,
      })
      .optional(),
    /** Patternslib push id: fired as a `push` event with `detail.body` = this id. */
    pushId: z.string().min(1).max(256).optional(),
    /** True for a logout of `user`: close the user's sockets. Only `user` may accompany it. */
    logout: z.literal(true).optional(),
  })
  .strict()
  .refine((m) => (m.user === undefined) !== (m.channel === undefined), {
    message: "must name exactly one recipient: user or channel",
  })
  .refine((m) => m.logout === undefined || m.user !== undefined, {
    message: "logout must name a user, not a channel",
    path: ["logout"],
  })
  .refine(
    (m) =>
      m.logout === undefined ||
      (m.html === undefined &&
        m.event === undefined &&
        m.data === undefined &&
        m.pushId === undefined),
    { message: "a logout message carries only user and logout", path: ["logout"] },
  )
  .refine(
    (m) =>
      m.logout !== undefined ||
      m.html !== undefined ||
      m.event !== undefined ||
      m.pushId !== undefined,
    { message: "must carry html, event or pushId" },
  );

/** Returns true for a logout message: `{"user": "...", "logout": true}`. */
export function isLogoutMessage(message: DoneMessage): message is DoneMessage & {
  user: string;
  logout: true;
} {
  return message.logout === true && message.user !== undefined;
}

export type DoneMessage = z.infer<typeof doneMessageSchema>;
