import { readdirSync, readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import type { Logger } from "../common/logger.ts";
import { PushServerError, ServerErrorCode } from "./errors.ts";

/** The uWebSockets.js module: `App`, `us_listen_socket_close` and the rest. */
export type Uws = typeof import("@trufflesuite/uws-js-unofficial");

const PACKAGE_NAME = "@trufflesuite/uws-js-unofficial";

const require = createRequire(import.meta.url);

/** Options for {@link loadUws}, for tests and unusual installs. */
export interface LoadUwsOptions {
  /** Node ABI to load the binary for. @defaultValue `process.versions.modules` */
  abi?: string;
}

/** Location of a uWS native binary and the package that ships it. */
export interface UwsBinary {
  /** Absolute path of the `.node` file. */
  path: string;
  /** Package directory, containing `binaries/`. */
  packageDir: string;
  /** Package version from its package.json. */
  version: string;
}

/** Returns where the native binary for this platform, architecture and `abi` lives. */
export function locateUwsBinary(abi: string = process.versions.modules): UwsBinary {
  const packageJsonPath = require.resolve(`${PACKAGE_NAME}/package.json`);
  const packageDir = dirname(packageJsonPath);
  const packageJson = JSON.parse(readFileSync(packageJsonPath, "utf8")) as { version?: string };
  const fileName = `uws_${process.platform}_${process.arch}_${abi}.node`;
  return {
    path: join(packageDir, "binaries", fileName),
    packageDir,
    version: packageJson.version ?? "unknown",
  };
}

/**
 * Loads the uWS native binary directly. The package's own entry point
 * (src/uws.js) silently swaps in a much slower `ws`-based imitation when the
 * binary fails to load. patpush never uses that entry point, so a missing or
 * incompatible binary throws PATPUSH_UWS_UNAVAILABLE instead.
 */
export function loadUws(logger: Logger, options: LoadUwsOptions = {}): Uws {
  const abi = options.abi ?? process.versions.modules;
  const binary = locateUwsBinary(abi);

  let uws: Uws;
  try {
    uws = require(binary.path) as Uws;
  } catch (error) {
    throw new PushServerError(ServerErrorCode.UWS_UNAVAILABLE, describeLoadFailure(binary, abi), {
      cause: error,
    });
  }

  logger.info(
    { binary: binary.path.slice(binary.packageDir.length + 1), uwsVersion: binary.version },
    "uWS binary loaded",
  );
  return uws;
}

function describeLoadFailure(binary: UwsBinary, abi: string): string {
  const target = `${process.platform}_${process.arch}`;
  const available = listAvailableAbis(binary.packageDir, target);
  const packageText = `${PACKAGE_NAME}@${binary.version}`;
  const availableText =
    available.length > 0
      ? `${packageText} ships binaries for Node ABIs ${available.join(", ")} on ${target}`
      : `${packageText} ships no binary for ${target}`;
  return (
    `failed to load the uWS native binary ${binary.path} ` +
    `for Node ${process.version} (ABI ${abi}). ` +
    `${availableText}; run a Node.js release whose process.versions.modules is one of them ` +
    `(Node 20 is ABI 115), or install a uWS build for this Node.js`
  );
}

function listAvailableAbis(packageDir: string, target: string): string[] {
  const pattern = new RegExp(`^uws_${target}_(\\d+)\\.node$`);
  try {
    return readdirSync(join(packageDir, "binaries"))
      .map((name) => pattern.exec(name)?.[1])
      .filter((abi): abi is string => abi !== undefined)
      .sort((a, b) => Number(a) - Number(b));
  } catch {
    return [];
  }
}
