/**
 * The injector, which applies a pushed pat-inject snippet without Patternslib.
 * For each element with `href` and `data-pat-inject` it fetches the URL,
 * selects the source in the response, and swaps it into the target.
 * It follows pat-inject's rules. `href#id` is the default source and target,
 * and `body` is the default when there is no `#id`. `::element` acts on the
 * element rather than its content, and `::before` / `::after` insert instead
 * of replacing.
 */
import { getLogger } from "../../client/log.ts";
import { withoutActiveContent } from "./active-content.ts";
import { emit, PushEvent } from "./events.ts";
import {
  parseHtml,
  parseSourceSpec,
  parseTargetSpec,
  placeNodes,
  querySafely,
  selectorFromHash,
  type SourceSpec,
  type TargetSpec,
} from "./fragment.ts";
import { parseOptionSets, type OptionSpec } from "./options.ts";
import { resolveUrl, urlRejection } from "./url-policy.ts";

export interface InjectOptions {
  /** Origins besides the page's own that fragments may come from, such as `https://cdn.example.org`. */
  allowedOrigins?: readonly string[];
  /** Time limit of one fragment request in milliseconds, 30000 by default. */
  timeoutMs?: number;
}

export interface InjectionStep {
  source: SourceSpec;
  target: TargetSpec;
  /** Elements to act on. When absent, `target.selector` is looked up in the page. */
  targets?: readonly Element[];
}

export interface InjectionResult {
  /** The URL as given, with its `#id`. */
  url: string;
  /** Nodes now in the page, empty when the injection failed. */
  injected: Node[];
}

interface LocatedStep {
  step: InjectionStep;
  targets: readonly Element[];
}

const INJECT_OPTIONS: readonly OptionSpec[] = [
  { name: "source", default: null, type: "string" },
  { name: "target", default: null, type: "string" },
];

const DEFAULT_TIMEOUT_MS = 30_000;
const SNIPPET_EXCERPT_CHARS = 200;
/** Injection elements applied per snippet, so that one message cannot cause many requests. */
export const MAX_TRIGGERS = 16;
/**
 * Elements whose content the injector never replaces. Text put into a
 * `<script>` that has not run yet runs as script, and text in a `<style>`
 * can read the page through selectors and send it away with `url()`.
 */
const RAW_TEXT_TARGETS = new Set(["script", "style"]);

const logger = getLogger("pat-push");

function report(anchor: EventTarget | undefined, type: string, message: string, detail: object) {
  logger.warn(message, detail);
  emit(anchor ?? document, type, detail);
}

/**
 * Applies one pat-inject snippet, such as
 * `<a href="/docs/7/preview#doc-7" data-pat-inject="target: #doc-7::element"></a>`.
 * Resolves when every injection in it has finished or failed. Failures are
 * reported as events and warnings instead of being thrown.
 */
export async function applySnippet(
  html: string,
  options: InjectOptions = {},
): Promise<InjectionResult[]> {
  // Messages come from JSON, so a wrong type is possible despite the signature.
  const text = typeof html === "string" ? html : "";
  const snippet = text.slice(0, SNIPPET_EXCERPT_CHARS);
  const triggers = Array.from(parseHtml(text).querySelectorAll("[data-pat-inject], .pat-inject"));
  if (triggers.length === 0) {
    report(undefined, PushEvent.INVALID_SNIPPET, "snippet has no pat-inject element", {
      reason: "no pat-inject element",
      snippet,
    });
    return [];
  }
  if (triggers.length > MAX_TRIGGERS) {
    report(undefined, PushEvent.INVALID_SNIPPET, "snippet has too many pat-inject elements", {
      reason: "too many pat-inject elements",
      count: triggers.length,
      max: MAX_TRIGGERS,
      snippet,
    });
  }

  const applied = triggers.slice(0, MAX_TRIGGERS);
  return Promise.all(applied.map((trigger) => applyTrigger(trigger, snippet, options)));
}

async function applyTrigger(
  trigger: Element,
  snippet: string,
  options: InjectOptions,
): Promise<InjectionResult> {
  const href = trigger.getAttribute("href")?.trim() ?? "";
  const url = resolveUrl(href);
  if (url === undefined) {
    const reason = href === "" ? "missing href" : "invalid href";
    report(undefined, PushEvent.INVALID_SNIPPET, `snippet element has ${reason}`, {
      reason,
      href,
      snippet,
    });
    return { url: href, injected: [] };
  }

  const defaultSelector = selectorFromHash(url.hash) ?? "body";
  const optionSets = parseOptionSets(trigger.getAttribute("data-pat-inject"), INJECT_OPTIONS);
  const steps = optionSets.map((set) => ({
    source: parseSourceSpec(typeof set.source === "string" ? set.source : defaultSelector),
    target: parseTargetSpec(typeof set.target === "string" ? set.target : defaultSelector),
  }));
  return injectFromUrl(href, steps, options);
}

/**
 * Fetches `href` once and performs each step with the response. Used for
 * snippets, for push-id elements and for pending placeholders alike.
 */
export async function injectFromUrl(
  href: string,
  steps: readonly InjectionStep[],
  options: InjectOptions = {},
): Promise<InjectionResult> {
  const result: InjectionResult = { url: href, injected: [] };
  const url = resolveUrl(href);
  if (url === undefined) {
    report(undefined, PushEvent.INVALID_SNIPPET, "invalid injection URL", {
      reason: "invalid href",
      href,
    });
    return result;
  }

  const rejection = urlRejection(url, options.allowedOrigins);
  if (rejection !== undefined) {
    const detail = { url: url.href, origin: url.origin, reason: rejection };
    report(
      findAnyTarget(steps),
      PushEvent.URL_REJECTED,
      `injection URL rejected: ${rejection}`,
      detail,
    );
    return result;
  }

  const located = locateTargets(steps, url.href);
  if (located.length === 0) return result;

  const page = await fetchPage(url, options, located[0]!.targets[0]);
  if (page === undefined) return result;

  for (const entry of located) result.injected.push(...injectStep(page, entry, url.href));
  return result;
}

function hasRawTextContent(element: Element): boolean {
  return RAW_TEXT_TARGETS.has(element.localName.toLowerCase());
}

function findAnyTarget(steps: readonly InjectionStep[]): Element | undefined {
  for (const step of steps) {
    const target = step.targets?.[0] ?? querySafely(document, step.target.selector)?.[0];
    if (target !== undefined) return target;
  }
  return undefined;
}

function locateTargets(steps: readonly InjectionStep[], url: string): LocatedStep[] {
  const located: LocatedStep[] = [];
  for (const step of steps) {
    const selector = step.target.selector;
    const targets = step.targets ?? querySafely(document, selector);
    if (targets === undefined) {
      const detail = { reason: "invalid target selector", selector, url };
      report(undefined, PushEvent.INVALID_SNIPPET, `invalid target selector "${selector}"`, detail);
    } else if (targets.length === 0) {
      report(undefined, PushEvent.MISSING_TARGET, `target "${selector}" not found`, {
        selector,
        url,
      });
    } else if (!step.target.element && targets.some(hasRawTextContent)) {
      const detail = { reason: "target is a script or style element", selector, url };
      report(targets[0], PushEvent.INVALID_SNIPPET, `target "${selector}" is not allowed`, detail);
    } else if (step.target.element && targets.includes(document.documentElement)) {
      // Replacing or adding siblings to <html> would empty the page or throw.
      const detail = { reason: "target is the document element", selector, url };
      report(undefined, PushEvent.INVALID_SNIPPET, `target "${selector}" is not allowed`, detail);
    } else {
      located.push({ step, targets });
    }
  }
  return located;
}

/** Fetches `url` with the page's cookies and parses it inertly, or reports why it could not. */
async function fetchPage(
  url: URL,
  options: InjectOptions,
  anchor: Element | undefined,
): Promise<Document | undefined> {
  const requestUrl = new URL(url.href);
  requestUrl.hash = "";
  const controller = new AbortController();
  const timer = setTimeout(() => controller.abort(), options.timeoutMs ?? DEFAULT_TIMEOUT_MS);
  const failed = (status: number, reason: string) => {
    report(anchor, PushEvent.FETCH_FAILED, `fetching ${requestUrl.href} failed: ${reason}`, {
      url: requestUrl.href,
      status,
      reason,
    });
    return undefined;
  };

  try {
    // A redirect is not followed, because its target may lie outside the allowed
    // origins and the browser hides the target of a redirect it did not follow.
    const response = await fetch(requestUrl.href, {
      credentials: "same-origin",
      headers: { Accept: "text/html" },
      redirect: "manual",
      signal: controller.signal,
    });
    if (response.type === "opaqueredirect") return failed(0, "redirect not followed");
    if (!response.ok) return failed(response.status, `status ${response.status}`);

    return parseHtml(await response.text());
  } catch (error) {
    const reason = controller.signal.aborted ? "timed out" : `network error: ${String(error)}`;
    return failed(0, reason);
  } finally {
    clearTimeout(timer);
  }
}

function injectStep(page: Document, entry: LocatedStep, url: string): Node[] {
  const { step, targets } = entry;
  const source = step.source.selector;
  const anchor = targets[0];
  const sources = source === "body" ? [page.body] : querySafely(page, source);
  if (sources === undefined) {
    const detail = { reason: "invalid source selector", selector: source, url };
    report(anchor, PushEvent.INVALID_SNIPPET, `invalid source selector "${source}"`, detail);
    return [];
  }
  if (sources.length === 0) {
    report(anchor, PushEvent.MISSING_SOURCE, `source "${source}" not found in ${url}`, {
      selector: source,
      url,
    });
    return [];
  }

  const inertNodes = step.source.element
    ? sources
    : sources.flatMap((element) => Array.from(element.childNodes));
  const cleanNodes = withoutActiveContent(inertNodes);
  const detail = { url, source: formatSpec(step.source), target: formatSpec(step.target) };
  const injected: Node[] = [];
  for (const target of targets) {
    const parent = target.parentElement;
    const nodes = cleanNodes.map((node) => document.importNode(node, true));
    try {
      placeNodes(target, step.target, nodes);
    } catch (error) {
      // The DOM rejects some placements, such as two elements in place of <html>.
      const failure = { reason: "insertion failed", error: String(error), url };
      report(
        target,
        PushEvent.INVALID_SNIPPET,
        `inserting into ${formatSpec(step.target)} failed`,
        failure,
      );
      continue;
    }
    announce(nodes, step.target.element ? parent : target, detail);
    injected.push(...nodes);
  }
  return injected;
}

/** Fires the success events on each injected element, or on `fallback` when only text went in. */
function announce(nodes: readonly Node[], fallback: Element | null, detail: object): void {
  const receivers = nodes.filter((node): node is Element => node.nodeType === Node.ELEMENT_NODE);
  if (receivers.length === 0 && fallback !== null) receivers.push(fallback);
  for (const receiver of receivers) {
    emit(receiver, PushEvent.INJECT_SUCCESS, detail);
    emit(receiver, PushEvent.INJECTED, detail);
  }
}

function formatSpec(spec: SourceSpec | TargetSpec): string {
  const element = spec.element ? "::element" : "";
  const position = "position" in spec && spec.position !== "replace" ? `::${spec.position}` : "";
  return `${spec.selector}${element}${position}`;
}
