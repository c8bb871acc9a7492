/**
 * Prometheus metrics of a TaskWorker: jobs rejected before dispatch (tampered,
 * undecryptable or outside the allowed origins) and the outcome of every
 * dispatch attempt.
 */
import { Counter, Registry } from "prom-client";
import { TaskError, TaskErrorCode } from "./errors.ts";
import type { DispatchOutcome } from "./dispatch.ts";

/** `reason` labels of `patpush_tasks_rejected_total`, by TaskError code. */
const REJECTION_LABELS: Record<string, string> = {
  [TaskErrorCode.DECRYPT_FAILED]: "decrypt_failed",
  [TaskErrorCode.INVALID]: "invalid",
  [TaskErrorCode.URL_INVALID]: "url_invalid",
  [TaskErrorCode.URL_NOT_ALLOWED]: "url_not_allowed",
};

/** Every `outcome` label of `patpush_task_dispatches_total`. */
const OUTCOMES: readonly DispatchOutcome["kind"][] = ["success", "retry", "unauthorised", "failed"];

/** The counters a TaskWorker updates, in a registry of its own unless one is given. */
export class TaskWorkerMetrics {
  readonly registry: Registry;
  readonly #rejected: Counter<"reason">;
  readonly #dispatches: Counter<"outcome">;

  constructor(registry = new Registry()) {
    this.registry = registry;
    this.#rejected = new Counter({
      name: "patpush_tasks_rejected_total",
      help: "Jobs failed without a dispatch: invalid, changed or undecryptable job data.",
      labelNames: ["reason"],
      registers: [registry],
    });
    this.#dispatches = new Counter({
      name: "patpush_task_dispatches_total",
      help: "Dispatch attempts by outcome: success, retry, unauthorised or failed.",
      labelNames: ["outcome"],
      registers: [registry],
    });

    // Start every labelled series at 0, so a rate over it exists before the first event.
    for (const reason of [...Object.values(REJECTION_LABELS), "other"]) {
      this.#rejected.inc({ reason }, 0);
    }
    for (const outcome of OUTCOMES) this.#dispatches.inc({ outcome }, 0);
  }

  /** Counts a job that was rejected before dispatch with `error`. */
  jobRejected(error: unknown): void {
    const code = error instanceof TaskError ? error.code : "";
    this.#rejected.inc({ reason: REJECTION_LABELS[code] ?? "other" });
  }

  /** Counts one dispatch attempt. */
  dispatched(outcome: DispatchOutcome): void {
    this.#dispatches.inc({ outcome: outcome.kind });
  }
}
