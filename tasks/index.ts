/**
 * @module tasks
 * HTTP tasks: the producer captures a portal request as a task, and the
 * in-process runner POSTs it back to a portal worker view with the user's
 * cookies, a CSRF authenticator and a task-name header, retrying with backoff.
 */
export {
  normaliseOrigin,
  parseTaskConfig,
  taskConfigSchema,
  type TaskConfig,
  type TaskConfigInput,
} from "./config.ts";
export {
  dispatchTask,
  parseRetryAfter,
  type DispatchOptions,
  type DispatchOutcome,
} from "./dispatch.ts";
export { DispatchError, DispatchErrorCode, TaskError, TaskErrorCode } from "./errors.ts";
export { TaskProducer, type TaskProducerOptions } from "./producer.ts";
export { InProcessRunner, type InProcessRunnerOptions, type RunnerEvents } from "./runner.ts";
export type { Authenticator, Task, TaskOptions, TaskQueue } from "./types.ts";
export { resolveTaskUrl } from "./url.ts";
