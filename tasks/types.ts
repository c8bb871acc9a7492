import type { IncomingMessage } from "node:http";

/**
 * Returns the CSRF token (plone.protect's `_authenticator`) for the user of
 * `req`. The portal supplies it, because the token is derived from the portal's secret key.
 */
export type Authenticator = (req: IncomingMessage) => string | Promise<string>;

/** Options a portal view passes to enqueue a task. */
export interface TaskOptions {
  /** Worker URL: "/x" and "x" are appended to contextUrl, an absolute http(s) URL is kept. */
  url: string;
  /** Absolute URL of the context object; required unless `url` is absolute. */
  contextUrl?: string;
  /** Task name, sent in the task-name header (X-Task-Name unless configured). */
  name: string;
  /** Form fields of the POST body; an array value becomes repeated fields. */
  data?: Record<string, string | string[]>;
  /** Extra request headers; Cookie, Authorization and dispatcher-set headers are rejected. */
  headers?: Record<string, string>;
  /** Extra cookies, each of which must be in cookieNames; they override the request's cookies. */
  cookies?: Record<string, string>;
  /** Delay before the first attempt, in seconds. Excludes `eta`. */
  countdown?: number;
  /** Earliest time of the first attempt, as a Date or an ISO 8601 string. Excludes `countdown`. */
  eta?: Date | string;
  /** Time after which the task is dropped unrun: a Date, an ISO 8601 string or seconds from now. */
  expires?: Date | string | number;
  /** Debounce key: while a task with this key waits unstarted, new ones are not added. */
  debounceKey?: string;
  /** Attempts including the first (1-100); overrides the configured maxAttempts. */
  attempts?: number;
  /** Redis queue name: 1-64 letters, digits, '_' or '-'. @defaultValue "tasks" */
  queue?: string;
}

/**
 * A captured task: everything the dispatcher needs, copied out of the
 * request so it stays valid after the response is gone.
 */
export interface Task {
  /** Random UUID, sent as X-Task-Id. */
  id: string;
  /** Task name, sent in the task-name header. */
  name: string;
  /** Absolute worker URL on an allowed origin. */
  url: string;
  /** Form fields in order, ending with `_authenticator`. */
  form: [string, string][];
  /** Extra request headers, as the caller passed them. */
  headers: Record<string, string>;
  /** Allowed cookies, from the request and the caller's extra cookies. */
  cookies: Record<string, string>;
  /** The request's Authorization header, when it had one. */
  authorization?: string;
  /** Earliest time of the first attempt, in milliseconds since the epoch. */
  notBefore: number;
  /** Time after which the task is dropped unrun, in milliseconds since the epoch. */
  expiresAt?: number;
  /** Attempts including the first. */
  maxAttempts: number;
  /** Key that collapses a burst of equal tasks into one. */
  debounceKey?: string;
  /** Capture time, in milliseconds since the epoch. */
  createdAt: number;
  /** Queue name for the Redis queue; the queue's default when absent. */
  queue?: string;
}

/** Destination of captured tasks: the in-process runner or a shared queue. */
export interface TaskQueue {
  /** Adds a task and returns its id, or the id of the waiting task it was debounced into. */
  add(task: Task): Promise<string>;
  /** Stops taking tasks and releases the queue's resources. */
  close(): Promise<void>;
}
