import { openCredentials, sealCredentials, type SealedCredentials } from "./crypto.ts";
import { TaskError, TaskErrorCode } from "./errors.ts";
import type { Task } from "./types.ts";

/** Form field that carries the CSRF token; it is stored sealed, never in clear. */
const AUTHENTICATOR_FIELD = "_authenticator";

/** A task without its credentials: cookies, Authorization and the `_authenticator` field. */
export type StoredTask = Omit<Task, "cookies" | "authorization">;

/**
 * Data of a BullMQ job: the task without credentials, and the sealed
 * credentials. Version 2 binds the credentials to the request the task
 * makes; version 1 data, written before, is still read.
 */
export interface TaskJobData {
  v: 1 | 2;
  task: StoredTask;
  credentials: SealedCredentials;
}

/**
 * Returns the GCM additional data of a stored task: its id, name, URL, form
 * and headers. Credentials sealed with it open only for the same request, so
 * a job whose URL or fields were changed in Redis, or whose credentials were
 * copied from another job, fails to decrypt.
 */
function requestBinding(task: StoredTask): string {
  return JSON.stringify(["patpush-task", task.id, task.name, task.url, task.form, task.headers]);
}

/** Splits `task` into job data whose credentials are sealed with `key`. */
export function toJobData(task: Task, key: Buffer): TaskJobData {
  const { cookies, authorization, ...rest } = task;
  const authenticator = task.form.find(([name]) => name === AUTHENTICATOR_FIELD)?.[1];
  const form = task.form.filter(([name]) => name !== AUTHENTICATOR_FIELD);

  const stored: StoredTask = { ...rest, form };
  const binding = requestBinding(stored);
  const credentials = sealCredentials({ cookies, authorization, authenticator }, key, binding);
  return { v: 2, task: stored, credentials };
}

/**
 * Rebuilds the task from job data, appending `_authenticator` as the last
 * form field. Throws TaskError PATPUSH_TASK_DECRYPT_FAILED for a wrong key,
 * modified credentials or a modified request (version 2), and
 * PATPUSH_TASK_INVALID for data of another format.
 */
export function fromJobData(data: unknown, key: Buffer): Task {
  const job = data as Partial<TaskJobData> | null;
  const knownVersion = job?.v === 1 || job?.v === 2;
  if (typeof job !== "object" || job === null || !knownVersion || typeof job.task !== "object") {
    throw new TaskError(
      TaskErrorCode.INVALID,
      "job data is not a patpush task (expected { v: 2, task, credentials })",
    );
  }
  if (job.task === null || !Array.isArray(job.task.form)) {
    throw new TaskError(TaskErrorCode.INVALID, "job data has no task form (expected an array)");
  }

  // NOTE: version 1 credentials carry no binding, so they can still be moved between jobs.
  const binding = job.v === 2 ? requestBinding(job.task) : "";
  const credentials = openCredentials(job.credentials, key, binding);
  const task: Task = { ...job.task, form: [...job.task.form], cookies: credentials.cookies };
  if (credentials.authorization !== undefined) task.authorization = credentials.authorization;
  if (credentials.authenticator !== undefined) {
    task.form.push([AUTHENTICATOR_FIELD, credentials.authenticator]);
  }
  return task;
}
