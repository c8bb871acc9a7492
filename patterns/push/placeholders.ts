/**
 * Pending placeholders: elements that a page renders while a task is still
 * running, marked with `data-pat-push-pending="URL#id"`. A result that was
 * published before this page's socket opened never reaches the page, so the
 * pattern refreshes every placeholder once the socket is open. It refreshes
 * them again after a reconnect whose welcome does not report a complete replay.
 */
import { selectorFromHash, type SourceSpec } from "./fragment.ts";
import { injectFromUrl, type InjectionResult, type InjectOptions } from "./inject.ts";

export const PENDING_ATTRIBUTE = "data-pat-push-pending";

/**
 * Fetches the placeholder's URL and replaces the placeholder element with
 * the element `#id` of the response (`::element` on both sides), or with
 * the response body's content when the URL has no `#id`.
 */
export function refreshPlaceholder(
  element: Element,
  options: InjectOptions = {},
): Promise<InjectionResult> {
  const href = element.getAttribute(PENDING_ATTRIBUTE)?.trim() ?? "";
  const hashStart = href.indexOf("#");
  const selector = hashStart === -1 ? undefined : selectorFromHash(href.slice(hashStart));
  const source: SourceSpec =
    selector === undefined ? { selector: "body", element: false } : { selector, element: true };
  const target = {
    selector: `[${PENDING_ATTRIBUTE}]`,
    element: true,
    position: "replace" as const,
  };

  return injectFromUrl(href, [{ source, target, targets: [element] }], options);
}

/** Refreshes every pending placeholder under `root`, all at once. */
export function refreshPlaceholders(
  root: ParentNode = document,
  options: InjectOptions = {},
): Promise<InjectionResult[]> {
  const placeholders = Array.from(root.querySelectorAll(`[${PENDING_ATTRIBUTE}]`));
  return Promise.all(placeholders.map((element) => refreshPlaceholder(element, options)));
}
