import type { Queue } from "bullmq";
import { TaskError, TaskErrorCode } from "./errors.ts";

/** A failed task as `patpush tasks failed list` shows it; it never includes credentials. */
export interface FailedTaskSummary {
  id: string;
  name: string;
  /** Message of the error that failed the last attempt. */
  failedReason: string;
  /** Attempts made, including the last. */
  attempts: number;
  /** Attempts the task allowed. */
  maxAttempts: number;
  /** Time of the final failure, ISO 8601, when BullMQ recorded it. */
  failedAt?: string;
}

/** Failed jobs deleted per BullMQ clean call. */
const PAGE_SIZE = 100;

/** Lists the failed jobs of `queue`, newest first, at most `limit` of them. */
export async function listFailedTasks(queue: Queue, limit = 1000): Promise<FailedTaskSummary[]> {
  const jobs = await queue.getFailed(0, limit - 1);
  return jobs.map((job) => {
    const summary: FailedTaskSummary = {
      id: String(job.id),
      name: job.name,
      failedReason: job.failedReason ?? "",
      attempts: job.attemptsMade,
      maxAttempts: job.opts.attempts ?? 1,
    };
    if (job.finishedOn !== undefined) summary.failedAt = new Date(job.finishedOn).toISOString();
    return summary;
  });
}

/**
 * Moves the failed job `id` back to waiting with its attempt count reset.
 * Throws TaskError PATPUSH_TASK_NOT_FOUND when no failed job has that id.
 */
export async function retryFailedTask(queue: Queue, id: string): Promise<void> {
  const job = await queue.getJob(id);
  const state = job === undefined ? undefined : await job.getState();
  if (job === undefined || state !== "failed") {
    throw new TaskError(
      TaskErrorCode.NOT_FOUND,
      `no failed task with id ${JSON.stringify(id)} in queue ${queue.name}` +
        (state === undefined ? "" : ` (its state is ${state})`) +
        "; list failed tasks with `patpush tasks failed list`",
    );
  }
  await job.retry("failed", { resetAttemptsMade: true, resetAttemptsStarted: true });
}

/**
 * Moves every job that is failed now back to waiting with its attempt count
 * reset; returns how many. Jobs that fail again meanwhile are not retried twice.
 */
export async function retryAllFailedTasks(queue: Queue): Promise<number> {
  const jobs = await queue.getFailed(0, -1);
  for (const job of jobs) {
    await job.retry("failed", { resetAttemptsMade: true, resetAttemptsStarted: true });
  }
  return jobs.length;
}

/** Deletes every failed job of `queue`; returns how many. */
export async function purgeFailedTasks(queue: Queue): Promise<number> {
  let count = 0;
  for (;;) {
    const removed = await queue.clean(0, PAGE_SIZE, "failed");
    count += removed.length;
    if (removed.length < PAGE_SIZE) return count;
  }
}
