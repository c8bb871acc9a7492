/**
 * @module tasks
 * HTTP tasks: the producer captures a portal request as a task. The
 * in-process runner or the Redis worker POSTs it back to a portal worker view
 * with the user's cookies, a CSRF authenticator and a task-name header, and
 * retries with backoff.
 */
export {
  BullmqQueue,
  DEFAULT_QUEUE_NAME,
  bullmqPrefix,
  type BullmqQueueOptions,
} from "./bullmq-queue.ts";
export {
  normaliseOrigin,
  parseTaskConfig,
  requireEncryptionKey,
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
export {
  decodeEncryptionKey,
  openCredentials,
  sealCredentials,
  type SealedCredentials,
  type TaskCredentials,
} from "./crypto.ts";
export { DispatchError, DispatchErrorCode, TaskError, TaskErrorCode } from "./errors.ts";
export {
  listFailedTasks,
  purgeFailedTasks,
  retryAllFailedTasks,
  retryFailedTask,
  type FailedTaskSummary,
} from "./failed-tasks.ts";
export { fromJobData, toJobData, type StoredTask, type TaskJobData } from "./job-data.ts";
export { TaskProducer, type TaskProducerOptions } from "./producer.ts";
export { InProcessRunner, type InProcessRunnerOptions, type RunnerEvents } from "./runner.ts";
export type { Authenticator, Task, TaskOptions, TaskQueue } from "./types.ts";
export { resolveTaskUrl } from "./url.ts";
export {
  SIGNATURE_HEADER,
  SIGNATURE_TOLERANCE_S,
  signTask,
  verifyTaskSignature,
  type SignatureFailureReason,
  type SignatureVerification,
  type SignTaskInput,
  type VerifyTaskSignatureInput,
} from "./signature.ts";
export { TaskWorker, type TaskWorkerEvents, type TaskWorkerOptions } from "./worker.ts";
export { TaskWorkerMetrics } from "./worker-metrics.ts";
