import { openCredentials, sealCredentials, type SealedCredentials } from "./crypto.ts";
import { TaskError, TaskErrorCode } from "./errors.ts";
import type { Task } from "./types.ts";

/** Form field that carries the CSRF token; it is stored sealed, never in clear. */
const AUTHENTICATOR_FIELD = "_authenticator";

/** A task without its credentials: cookies, Authorization and the `_authenticator` field. */
export type StoredTask = Omit<Task, "cookies" | "authorization">;

/** Data of a BullMQ job: the task without credentials, and the sealed credentials. */
export interface TaskJobData {
  v: 1;
  task: StoredTask;
  credentials: SealedCredentials;
}

/** Splits `task` into job data whose credentials are sealed with `key`. */
export function toJobData(task: Task, key: Buffer): TaskJobData {
  const { cookies, authorization, ...rest } = task;
  const authenticator = task.form.find(([name]) => name === AUTHENTICATOR_FIELD)?.[1];
  const form = task.form.filter(([name]) => name !== AUTHENTICATOR_FIELD);

  const credentials = sealCredentials({ cookies, authorization, authenticator }, key);
  return { v: 1, task: { ...rest, form }, credentials };
}

/**
 * Rebuilds the task from job data, appending `_authenticator` as the last
 * form field. Throws TaskError PATPUSH_TASK_DECRYPT_FAILED for a wrong key or
 * modified credentials, and PATPUSH_TASK_INVALID for data of another format.
 */
export function fromJobData(data: unknown, key: Buffer): Task {
  const job = data as Partial<TaskJobData> | null;
  if (typeof job !== "object" || job === null || job.v !== 1 || typeof job.task !== "object") {
    throw new TaskError(
      TaskErrorCode.INVALID,
      "job data is not a patpush task (expected { v: 1, task, credentials })",
    );
  }

  const credentials = openCredentials(job.credentials, key);
  const task: Task = { ...job.task, form: [...job.task.form], cookies: credentials.cookies };
  if (credentials.authorization !== undefined) task.authorization = credentials.authorization;
  if (credentials.authenticator !== undefined) {
    task.form.push([AUTHENTICATOR_FIELD, credentials.authenticator]);
  }
  return task;
}
