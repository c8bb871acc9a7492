/**
 * HTML handling for injection: inert parsing, selector queries that never
 * throw, and the pat-inject selector modifiers. The clean-up applied to
 * every fragment before it enters the page is in active-content.ts.
 */

/** Position of a source's nodes relative to a target. */
export type TargetPosition = "replace" | "before" | "after";

export interface SourceSpec {
  selector: string;
  /** True for `::element` (take the element itself), false for its content. */
  element: boolean;
}

export interface TargetSpec {
  selector: string;
  /** True for `::element` (act on the element itself), false for its content. */
  element: boolean;
  /** `::before` / `::after`, or "replace" when neither is given. */
  position: TargetPosition;
}

const SOURCE_MODIFIERS = /^(.*?)(::element)?$/s;
const TARGET_MODIFIERS = /^(.*?)(::element)?(::before|::after)?$/s;

/** Splits `#id::element` into its selector and modifier. */
export function parseSourceSpec(text: string): SourceSpec {
  const match = SOURCE_MODIFIERS.exec(text.trim())!;
  return { selector: match[1]!.trim(), element: match[2] !== undefined };
}

/** Splits `#id::element::after` into its selector and modifiers. */
export function parseTargetSpec(text: string): TargetSpec {
  const match = TARGET_MODIFIERS.exec(text.trim())!;
  let position: TargetPosition = "replace";
  if (match[3] === "::before") position = "before";
  if (match[3] === "::after") position = "after";
  return { selector: match[1]!.trim(), element: match[2] !== undefined, position };
}

/**
 * Parses HTML into a separate document that has no browsing context, so
 * nothing in it runs or loads: scripts stay inert and images are not
 * fetched, so their `onerror` handlers cannot fire.
 */
export function parseHtml(html: string): Document {
  return new DOMParser().parseFromString(html, "text/html");
}

/** Returns the elements matching `selector`, or undefined when the selector is invalid. */
export function querySafely(root: ParentNode, selector: string): Element[] | undefined {
  if (selector === "") return undefined;
  try {
    return Array.from(root.querySelectorAll(selector));
  } catch {
    return undefined;
  }
}

/** Returns the `#id` selector for a URL fragment such as `doc-7` or `%C3%A9t%C3%A9`. */
export function selectorFromHash(hash: string): string | undefined {
  const id = hash.replace(/^#/, "");
  if (id === "") return undefined;

  let decoded = id;
  try {
    decoded = decodeURIComponent(id);
  } catch {
    // A malformed escape stays as written, and then the id simply does not match.
  }
  return `#${CSS.escape(decoded)}`;
}

/** Puts `nodes` into the page relative to `target` and returns them. */
export function placeNodes(target: Element, spec: TargetSpec, nodes: Node[]): Node[] {
  if (spec.element) {
    if (spec.position === "before") target.before(...nodes);
    else if (spec.position === "after") target.after(...nodes);
    else target.replaceWith(...nodes);
    return nodes;
  }

  if (spec.position === "before") target.prepend(...nodes);
  else if (spec.position === "after") target.append(...nodes);
  else target.replaceChildren(...nodes);
  return nodes;
}
