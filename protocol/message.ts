import { z } from "zod";

/** Maximum size of a done message's `html` snippet, in characters. */
export const MAX_HTML_CHARS = 64 * 1024;

/**
 * A done message: what a worker publishes when its result is committed. It
 * names exactly one recipient, a `user` or a `channel`, and carries a
 * pat-inject snippet in `html` and/or a custom `event` with `data`.
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
    data: z.unknown().optional(),
    /** Patternslib push id: fired as a `push` event with `detail.body` = this id. */
    pushId: z.string().min(1).max(256).optional(),
  })
  .strict()
  .refine((m) => (m.user === undefined) !== (m.channel === undefined), {
    message: "must name exactly one recipient: user or channel",
  })
  .refine((m) => m.html !== undefined || m.event !== undefined || m.pushId !== undefined, {
    message: "must carry html, event or pushId",
  });

export type DoneMessage = z.infer<typeof doneMessageSchema>;
