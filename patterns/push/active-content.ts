/**
 * The clean-up applied to every fragment before it enters the page. It
 * removes the elements and attributes through which markup can run script or
 * load another document, at any depth, in HTML, SVG and MathML, and inside
 * `<template>` content. It is a block list for HTML that the portal renders,
 * not a sanitizer for HTML written by untrusted users.
 */

/**
 * Elements removed with their whole subtree, as lower-case local names, so
 * SVG's `animateMotion` is listed as `animatemotion`. SVG animation elements
 * can set any attribute of their target, such as a link's `href`, to a
 * `javascript:` URL after the clean-up has checked it.
 */
const ACTIVE_ELEMENTS = new Set([
  "script",
  "iframe",
  "frame",
  "frameset",
  "object",
  "embed",
  "applet",
  "base",
  "meta",
  "link",
  "portal",
  "animate",
  "animatemotion",
  "animatetransform",
  "set",
  "discard",
  "handler",
]);

/** Attributes that hold one URL, as lower-case qualified or local names. */
const URL_ATTRIBUTES = new Set([
  "href",
  "xlink:href",
  "src",
  "data",
  "poster",
  "background",
  "cite",
  "codebase",
]);

const HREF_ATTRIBUTES = new Set(["href", "xlink:href"]);

/** Attributes whose URL submits a form. Only http(s) and relative URLs stay. */
const SUBMIT_ATTRIBUTES = new Set(["action", "formaction"]);

const LINK_SCHEMES = new Set(["http", "https", "mailto", "tel"]);
const SUBMIT_SCHEMES = new Set(["http", "https"]);

/** Raster image data URLs, allowed only in `<img src>`. */
const IMAGE_DATA_URL = /^data:image\/(png|gif|jpeg|webp)[;,]/;
const URL_SCHEME = /^([a-zA-Z][a-zA-Z0-9+.-]*):/;

/**
 * Characters removed before a URL's scheme is read. The URL Standard's parser
 * drops leading and trailing C0 controls and spaces and every tab and
 * newline. Removing all whitespace, control and format characters also turns
 * `java\x01script:`, which Chromium resolves as a relative path, into
 * `javascript:`, so the check errs toward removing an attribute.
 */
const IGNORED_URL_CHARACTERS = /[\s\p{Cc}\p{Cf}]/gu;
/** A CSS escape: a backslash, then up to six hex digits and an optional space, or one character. */
const CSS_ESCAPE = /\\(?:([0-9a-fA-F]{1,6})[ \t\n\r\f]?|([\s\S]))/g;

/*
 * DOM accessors taken from the prototypes. A form's named controls shadow the
 * form's own properties and methods, so in `<form><input name="childNodes">`
 * `form.childNodes` is the input. The clean-up therefore never reads a
 * property or calls a method through the node itself.
 */
const childNodesOf = prototypeGetter<NodeListOf<ChildNode>>(Node.prototype, "childNodes");
const nodeTypeOf = prototypeGetter<number>(Node.prototype, "nodeType");
const textContentOf = prototypeGetter<string | null>(Node.prototype, "textContent");
const localNameOf = prototypeGetter<string>(Element.prototype, "localName");
const attributesOf = prototypeGetter<NamedNodeMap>(Element.prototype, "attributes");
const removeElement = Element.prototype.remove;
const removeAttributeNode = Element.prototype.removeAttributeNode;

/**
 * Returns `nodes` without what could run script once they enter the page:
 * the elements in {@link ACTIVE_ELEMENTS}, SVG `<use>` that references
 * another document, `<style>` elements and `style` attributes that mention a
 * `javascript:` or `vbscript:` URL, `on*` handler attributes, `srcdoc`, and
 * URL attributes with a scheme other than http, https, mailto or tel.
 * Form actions keep only http(s), and data URLs stay only for raster images
 * in `<img src>`. Form and image names that would shadow a property of the
 * page's `document` are removed too. Call it on nodes of an inert document,
 * before they are imported into the page, because an imported image starts
 * loading before it is even inserted.
 */
export function withoutActiveContent(nodes: readonly Node[]): Node[] {
  const kept: Node[] = [];
  for (const node of nodes) {
    if (nodeTypeOf(node) === Node.ELEMENT_NODE) {
      const element = node as Element;
      if (isActiveElement(element)) continue;
      cleanAttributes(element);
    }
    cleanDescendants(node);
    kept.push(node);
  }
  return kept;
}

/** Cleans the subtree of `root` with an explicit stack, so deep nesting cannot overflow it. */
function cleanDescendants(root: Node): void {
  const pending: Node[] = [root];
  while (pending.length > 0) {
    const parent = pending.pop()!;
    // Template content is a separate fragment that childNodes does not include.
    if (parent instanceof HTMLTemplateElement) pending.push(parent.content);

    for (const child of Array.from(childNodesOf(parent))) {
      if (nodeTypeOf(child) !== Node.ELEMENT_NODE) continue;
      const element = child as Element;
      if (isActiveElement(element)) {
        removeElement.call(element);
        continue;
      }
      cleanAttributes(element);
      pending.push(element);
    }
  }
}

function isActiveElement(element: Element): boolean {
  const name = localNameOf(element).toLowerCase();
  if (ACTIVE_ELEMENTS.has(name)) return true;
  if (name === "use") return referencesOtherDocument(element);
  if (name === "style") return mentionsScriptUrl(textContentOf(element) ?? "");
  return false;
}

/** Checks whether an SVG `<use>` points anywhere but at an element of its own document. */
function referencesOtherDocument(use: Element): boolean {
  return Array.from(attributesOf(use)).some(
    (attribute) =>
      isNamed(attribute, HREF_ATTRIBUTES) && !compactUrl(attribute.value).startsWith("#"),
  );
}

function cleanAttributes(element: Element): void {
  for (const attribute of Array.from(attributesOf(element))) {
    if (!isAllowedAttribute(element, attribute)) removeAttributeNode.call(element, attribute);
  }
}

function isAllowedAttribute(element: Element, attribute: Attr): boolean {
  const name = attribute.name.toLowerCase();
  const localName = attribute.localName.toLowerCase();
  const value = attribute.value;

  if (name.startsWith("on") || localName.startsWith("on")) return false;
  if (name === "srcdoc") return false;
  if (name === "id" || name === "name") return !shadowsDocumentProperty(element, name, value);
  if (name === "style") return !mentionsScriptUrl(value);
  if (SUBMIT_ATTRIBUTES.has(name)) return hasScheme(value, SUBMIT_SCHEMES);
  if (name === "srcset") return hasSchemes(imageCandidateUrls(value), LINK_SCHEMES);
  if (name === "ping") return hasSchemes(splitOnWhitespace(value), LINK_SCHEMES);
  if (!isNamed(attribute, URL_ATTRIBUTES)) return true;

  if (isImageSource(element, name) && IMAGE_DATA_URL.test(compactUrl(value).toLowerCase())) {
    return true;
  }
  return hasScheme(value, LINK_SCHEMES);
}

/**
 * Checks whether the attribute would make `document[value]` return `element`
 * in place of a property of the page's document (`<img name="querySelector">`).
 * Named access on the document covers the name of forms and images and the
 * id of images, and also embeds, objects and iframes, which are removed anyway.
 */
function shadowsDocumentProperty(element: Element, attributeName: string, value: string): boolean {
  const exposed =
    element instanceof HTMLFormElement
      ? attributeName === "name"
      : element instanceof HTMLImageElement;
  return exposed && value in document;
}

function isNamed(attribute: Attr, names: ReadonlySet<string>): boolean {
  return names.has(attribute.name.toLowerCase()) || names.has(attribute.localName.toLowerCase());
}

function isImageSource(element: Element, attributeName: string): boolean {
  return element instanceof HTMLImageElement && attributeName === "src";
}

/** Checks whether `url` is relative or has one of `schemes`, which are lower case. */
function hasScheme(url: string, schemes: ReadonlySet<string>): boolean {
  const match = URL_SCHEME.exec(compactUrl(url));
  if (match === null) return true;
  return schemes.has(match[1]!.toLowerCase());
}

function hasSchemes(urls: readonly string[], schemes: ReadonlySet<string>): boolean {
  return urls.every((url) => hasScheme(url, schemes));
}

function compactUrl(url: string): string {
  return url.replace(IGNORED_URL_CHARACTERS, "");
}

/**
 * Returns the URLs of a `srcset`. It splits at every comma, which also cuts
 * a URL that contains one, so a data URL or a hidden second scheme makes
 * the whole attribute fail the check instead of slipping through.
 */
function imageCandidateUrls(srcset: string): string[] {
  return srcset
    .split(",")
    .map((candidate) => splitOnWhitespace(candidate)[0])
    .filter((url): url is string => url !== undefined);
}

function splitOnWhitespace(text: string): string[] {
  return text.split(/[ \t\n\f\r]+/).filter((part) => part !== "");
}

/**
 * Checks whether CSS text contains a `javascript:` or `vbscript:` URL, also
 * when written with CSS escapes (`java\73 cript:`) or with whitespace and
 * control characters inside the scheme. Any mention counts, inside a
 * comment or a string too, so the check errs toward removal.
 */
function mentionsScriptUrl(css: string): boolean {
  const unescaped = css.replace(CSS_ESCAPE, (_escape, hex?: string, character?: string) =>
    hex === undefined ? character! : codePointText(Number.parseInt(hex, 16)),
  );
  const compact = compactUrl(unescaped).toLowerCase();
  return compact.includes("javascript:") || compact.includes("vbscript:");
}

/** Returns the character of a CSS hex escape: U+FFFD for 0, surrogates and values over U+10FFFF. */
function codePointText(codePoint: number): string {
  const invalid = codePoint === 0 || codePoint > 0x10ffff;
  const surrogate = codePoint >= 0xd800 && codePoint <= 0xdfff;
  return invalid || surrogate ? "\ufffd" : String.fromCodePoint(codePoint);
}

function prototypeGetter<T>(prototype: object, name: string): (node: Node) => T {
  const getter = Object.getOwnPropertyDescriptor(prototype, name)?.get;
  if (getter === undefined) throw new TypeError(`the DOM has no ${name} getter`);
  return (node) => getter.call(node) as T;
}
