/**
 * The task queues the benchmark compares, each as a worker command pinned to
 * core 0 and a producer command pinned to core 1.
 */
import { execFileSync } from "node:child_process";
import { fileURLToPath } from "node:url";

/** Root of the repository, the working directory of every child. */
export const REPO_ROOT = fileURLToPath(new URL("../../", import.meta.url));
const TASKS_DIR = fileURLToPath(new URL("./", import.meta.url));
const PYTHON = "/usr/bin/python3";

/** Run settings that a system's commands receive. */
export interface SystemContext {
  redisUrl: string;
  /** Origin of the portal endpoint, e.g. http://127.0.0.1:40123. */
  endpointOrigin: string;
  /** Jobs one worker runs at once. */
  concurrency: number;
  /** JSON bytes of patpush's stored job, which the other producers pad their payload to. */
  jobBytes: number;
}

/** One task queue under test. */
export interface TaskSystem {
  name: "patpush" | "bullmq-bare" | "celery";
  /** One line on what runs, for the results notes. */
  description: string;
  /** Returns why the system cannot run on this machine, or undefined when it can. */
  unavailable(): string | undefined;
  worker(context: SystemContext): { command: string[]; env: NodeJS.ProcessEnv };
  producer(context: SystemContext): { command: string[]; env: NodeJS.ProcessEnv };
}

function nodeScript(file: string): string[] {
  return [process.execPath, "--import", "tsx", TASKS_DIR + file];
}

function baseEnv(context: SystemContext): NodeJS.ProcessEnv {
  return {
    ...process.env,
    BENCH_REDIS_URL: context.redisUrl,
    BENCH_ENDPOINT_URL: context.endpointOrigin,
    BENCH_CONCURRENCY: String(context.concurrency),
    BENCH_JOB_BYTES: String(context.jobBytes),
  };
}

export const patpushSystem: TaskSystem = {
  name: "patpush",
  description:
    "patpush TaskWorker (tasks/worker.ts, log level warn) fed by TaskProducer.enqueue + BullmqQueue " +
    "with a cookie, a CSRF authenticator and X-Task-Name; credentials sealed with AES-256-GCM",
  unavailable: () => undefined,
  worker: (context) => ({ command: nodeScript("patpush-worker.ts"), env: baseEnv(context) }),
  producer: (context) => ({ command: nodeScript("patpush-producer.ts"), env: baseEnv(context) }),
};

export const bareBullmqSystem: TaskSystem = {
  name: "bullmq-bare",
  description:
    "BullMQ Worker doing one undici Pool POST per job, fed by Queue.add with job data padded " +
    "to the size of patpush's job",
  unavailable: () => undefined,
  worker: (context) => ({ command: nodeScript("bullmq-bare-worker.ts"), env: baseEnv(context) }),
  producer: (context) => ({ command: nodeScript("bullmq-bare-producer.ts"), env: baseEnv(context) }),
};

/** Returns the error of importing celery, redis and requests in /usr/bin/python3, or undefined. */
function celeryImportError(): string | undefined {
  try {
    execFileSync(PYTHON, ["-c", "import celery, redis, requests"], { stdio: "pipe", timeout: 20_000 });
    return undefined;
  } catch (error) {
    const stderr = (error as { stderr?: Buffer }).stderr?.toString().trim().split("\n").pop();
    return `${PYTHON} cannot import celery, redis and requests (${stderr ?? String(error)}); ` +
      "install python3-celery, python3-redis and python3-requests";
  }
}

export const celerySystem: TaskSystem = {
  name: "celery",
  description:
    "Celery prefork worker (Debian python3-celery, Redis broker, no result backend; " +
    "--without-gossip --without-mingle --without-heartbeat) running requests.Session().post " +
    "per task, " +
    "fed by apply_async from one Python thread",
  unavailable: celeryImportError,
  worker: (context) => ({
    command: [
      PYTHON, "-m", "celery", "-A", "celery_app", "worker",
      `--concurrency=${context.concurrency}`, "--pool=prefork", "--loglevel=WARNING",
      "--without-gossip", "--without-mingle", "--without-heartbeat",
    ],
    env: { ...baseEnv(context), PYTHONPATH: TASKS_DIR, PYTHONDONTWRITEBYTECODE: "1" },
  }),
  producer: (context) => ({
    command: [PYTHON, TASKS_DIR + "celery_producer.py"],
    env: { ...baseEnv(context), PYTHONPATH: TASKS_DIR, PYTHONDONTWRITEBYTECODE: "1" },
  }),
};

/** Every system, in the order the scenario runs them. */
export const TASK_SYSTEMS: readonly TaskSystem[] = [patpushSystem, bareBullmqSystem, celerySystem];
