import { chromium, type Browser } from "playwright-core";

/** Path of Debian's Chromium; override with PATPUSH_CHROMIUM. */
export const CHROMIUM_PATH = process.env.PATPUSH_CHROMIUM ?? "/usr/bin/chromium";

/**
 * Flags for headless Chromium on a machine without a sandbox, a GPU or an
 * outside network: background networking would otherwise try to reach
 * Google's hosts at every start.
 */
export const CHROMIUM_ARGS = [
  "--headless",
  "--no-sandbox",
  "--disable-gpu",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
  "--no-first-run",
];

/** Launches Debian's Chromium through playwright-core. */
export async function launchChromium(): Promise<Browser> {
  return chromium.launch({ executablePath: CHROMIUM_PATH, args: CHROMIUM_ARGS, headless: true });
}
