import { execFile } from "node:child_process";
import { mkdir, open, readdir, rm, stat } from "node:fs/promises";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import type { Logger } from "../../common/logger.ts";
import { PatpushError } from "../../protocol/errors.ts";

const run = promisify(execFile);

/** Root of the repository. */
export const PROJECT_ROOT = fileURLToPath(new URL("../../", import.meta.url));

/** The browser bundle that scripts/build-browser.mjs writes. */
export const BUNDLE_PATH = join(PROJECT_ROOT, "dist", "patpush.js");

/** Folders whose sources go into the bundle. */
const SOURCE_DIRS = ["patterns", "client", "protocol"];

/** A build lock older than this belongs to a process that died, in milliseconds. */
const STALE_LOCK_MS = 120_000;

/** How long to wait for another process's build before giving up, in milliseconds. */
const LOCK_WAIT_MS = 120_000;

async function newestSourceMtimeMs(dir: string): Promise<number> {
  let newest = 0;
  let entries;
  try {
    entries = await readdir(dir, { withFileTypes: true, recursive: true });
  } catch {
    return 0;
  }
  for (const entry of entries) {
    if (!entry.isFile() || !/\.(ts|js|mjs)$/.test(entry.name) || /\.test\.ts$/.test(entry.name))
      continue;
    const info = await stat(join(entry.parentPath, entry.name));
    newest = Math.max(newest, info.mtimeMs);
  }
  return newest;
}

/** Returns true when the bundle is missing or older than one of its sources. */
export async function isBundleStale(): Promise<boolean> {
  let bundleMtimeMs: number;
  try {
    bundleMtimeMs = (await stat(BUNDLE_PATH)).mtimeMs;
  } catch {
    return true;
  }
  const sources = await Promise.all(
    SOURCE_DIRS.map((dir) => newestSourceMtimeMs(join(PROJECT_ROOT, dir))),
  );
  return Math.max(...sources) > bundleMtimeMs;
}

/** Takes the build lock; returns false when another process holds a fresh one. */
async function takeBuildLock(lockPath: string): Promise<boolean> {
  try {
    await (await open(lockPath, "wx")).close();
    return true;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== "EEXIST") throw err;
  }

  const age = Date.now() - (await stat(lockPath).catch(() => ({ mtimeMs: Date.now() }))).mtimeMs;
  if (age > STALE_LOCK_MS) await rm(lockPath, { force: true });
  return false;
}

/**
 * Builds dist/patpush.js with scripts/build-browser.mjs when it is missing or
 * older than its sources. A lock file in dist/ keeps parallel processes (test
 * files run in parallel) from writing the bundle at the same time: the others
 * wait for the build and then check again.
 */
export async function ensureBrowserBundle(logger: Logger): Promise<void> {
  const lockPath = join(PROJECT_ROOT, "dist", ".build.lock");
  await mkdir(join(PROJECT_ROOT, "dist"), { recursive: true });
  const deadline = Date.now() + LOCK_WAIT_MS;

  while (await isBundleStale()) {
    if (!(await takeBuildLock(lockPath))) {
      if (Date.now() > deadline) {
        throw new PatpushError(
          "PATPUSH_BUNDLE_BUILD_FAILED",
          `timed out waiting for ${lockPath}; delete it if no build is running`,
        );
      }
      await sleep(200);
      continue;
    }

    try {
      logger.info({ bundle: BUNDLE_PATH }, "building browser bundle");
      await run(process.execPath, [join(PROJECT_ROOT, "scripts", "build-browser.mjs")], {
        cwd: PROJECT_ROOT,
      });
    } catch (err) {
      const detail = (err as { stderr?: string }).stderr?.trim() || String(err);
      throw new PatpushError(
        "PATPUSH_BUNDLE_BUILD_FAILED",
        `building ${BUNDLE_PATH} failed: ${detail}`,
        { cause: err },
      );
    } finally {
      await rm(lockPath, { force: true });
    }
    return;
  }
}
