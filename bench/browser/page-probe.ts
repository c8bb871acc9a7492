/**
 * The script that the benchmark adds to the page before pat-push runs. It
 * stamps, on the page's clock (`performance.timeOrigin + performance.now()`,
 * in milliseconds), each message frame that pat-push handles, each fragment
 * request (from Resource Timing) and each swapped fragment, keyed by the
 * fragment's sequence number.
 */
import type { Page } from "playwright-core";

/** Times of one message in the page, in milliseconds on the page's clock. */
export interface PageRecord {
  sequence: number;
  /** `patpush:message` dispatched: pat-push has parsed the frame. */
  frameAt?: number;
  /** Resource Timing `fetchStart` of the fragment request. */
  fetchStartAt?: number;
  /** Resource Timing `responseEnd` of the fragment request: the body has arrived. */
  fetchDoneAt?: number;
  /** `patpush:injected` dispatched on the fragment's element, right after it entered the DOM. */
  swappedAt?: number;
}

/** Everything the probe saw: per-message times, failure events and the welcome. */
export interface ProbeReport {
  records: PageRecord[];
  /** `patpush:fetch-failed`, `patpush:invalid-snippet` and other failure events, as `type: detail`. */
  failures: string[];
  /** Sequence numbers of the fragment elements in the log element, in DOM order. */
  sequencesInDom: number[];
}

/**
 * Source of the probe, as a string, because a function passed to Playwright
 * would be serialised with whatever helpers the TypeScript loader added to it.
 * `patpush:injected` is dispatched synchronously after the nodes are placed,
 * so its time is the swap time without the delay of a MutationObserver
 * callback.
 */
export const PROBE_SCRIPT = `(() => {
  const clock = () => performance.timeOrigin + performance.now();
  const records = new Map();
  const failures = [];
  const waiters = new Map();
  let welcomed = false;
  const record = (sequence) => {
    let entry = records.get(sequence);
    if (entry === undefined) {
      entry = { sequence };
      records.set(sequence, entry);
    }
    return entry;
  };
  const sequenceOf = (text) => {
    const match = /\\/fragment\\/(\\d+)/.exec(String(text));
    return match === null ? undefined : Number(match[1]);
  };
  document.addEventListener("patpush:welcome", () => { welcomed = true; });
  document.addEventListener("patpush:message", (event) => {
    const sequence = sequenceOf(event.detail && event.detail.html);
    if (sequence !== undefined) record(sequence).frameAt = clock();
  });
  document.addEventListener("patpush:injected", (event) => {
    const swappedAt = clock();
    const sequence = Number(event.target && event.target.dataset && event.target.dataset.sequence);
    if (!Number.isInteger(sequence)) return;
    record(sequence).swappedAt = swappedAt;
    const wake = waiters.get(sequence);
    if (wake !== undefined) wake(true);
  });
  for (const type of ["patpush:fetch-failed", "patpush:invalid-snippet", "patpush:url-rejected",
                      "pat-inject-missingSource", "pat-inject-missingTarget"]) {
    document.addEventListener(type, (event) => {
      failures.push(type + ": " + JSON.stringify(event.detail));
    });
  }
  new PerformanceObserver((list) => {
    for (const entry of list.getEntries()) {
      const sequence = sequenceOf(entry.name);
      if (sequence === undefined) continue;
      const target = record(sequence);
      target.fetchStartAt = performance.timeOrigin + entry.fetchStart;
      target.fetchDoneAt = performance.timeOrigin + entry.responseEnd;
    }
  }).observe({ type: "resource", buffered: true });
  window.__patpushBench = {
    clock,
    welcomed: () => welcomed,
    waitForSwap(sequence, timeoutMs) {
      if (records.get(sequence)?.swappedAt !== undefined) return Promise.resolve(true);
      return new Promise((resolve) => {
        const timer = setTimeout(() => { waiters.delete(sequence); resolve(false); }, timeoutMs);
        waiters.set(sequence, (swapped) => {
          clearTimeout(timer);
          waiters.delete(sequence);
          resolve(swapped);
        });
      });
    },
    report(logId) {
      const log = document.getElementById(logId);
      const items = log === null ? [] : Array.from(log.querySelectorAll("[data-sequence]"));
      return {
        records: Array.from(records.values()),
        failures: failures.slice(),
        sequencesInDom: items.map((item) => Number(item.getAttribute("data-sequence"))),
      };
    },
  };
})();`;

/** The probe's API on `window`, as {@link PROBE_SCRIPT} defines it. */
interface ProbeApi {
  clock(): number;
  welcomed(): boolean;
  waitForSwap(sequence: number, timeoutMs: number): Promise<boolean>;
  report(logId: string): ProbeReport;
}

declare global {
  interface Window {
    __patpushBench: ProbeApi;
  }
}

/** Installs the probe in every document the page loads from now on. */
export async function installProbe(page: Page): Promise<void> {
  await page.addInitScript(PROBE_SCRIPT);
}

/** Waits until pat-push has handled the socket's welcome frame, or throws after `timeoutMs`. */
export async function waitForWelcome(page: Page, timeoutMs: number): Promise<void> {
  await page.waitForFunction(() => window.__patpushBench.welcomed(), undefined, {
    timeout: timeoutMs,
  });
}

/** Waits until the fragment of `sequence` is in the page; false after `timeoutMs`. */
export function waitForSwap(page: Page, sequence: number, timeoutMs: number): Promise<boolean> {
  return page.evaluate(
    ([target, limitMs]) => window.__patpushBench.waitForSwap(target, limitMs),
    [sequence, timeoutMs] as const,
  );
}

/** Returns the probe's records, failure events and the sequence numbers in the log element. */
export function readProbeReport(page: Page, logElementId: string): Promise<ProbeReport> {
  return page.evaluate((logId) => window.__patpushBench.report(logId), logElementId);
}

/** Returns the page's clock: `performance.timeOrigin + performance.now()`, in milliseconds. */
export function readPageClock(page: Page): Promise<number> {
  return page.evaluate(() => window.__patpushBench.clock());
}
