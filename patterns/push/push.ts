/**
 * The pat-push pattern. An element with `socket-url` opens the page's
 * connection to the push server, one per distinct URL. For each message
 * frame the pattern injects its pat-inject snippet and dispatches its custom
 * event. Its push id refreshes the `.pat-push` elements with the same
 * `push-id`, as Patternslib's pat-push does.
 */
import {
  PushConnection,
  type ConnectionState,
  type WelcomeDetail,
} from "../../client/connection.ts";
import { getLogger } from "../../client/log.ts";
import type { MessageFrame } from "../../protocol/frames.ts";
import { emit, PushEvent } from "./events.ts";
import { selectorFromHash } from "./fragment.ts";
import { applySnippet, injectFromUrl, type InjectionResult, type InjectOptions } from "./inject.ts";
import { parseOptions, PUSH_OPTIONS } from "./options.ts";
import { refreshPlaceholders } from "./placeholders.ts";

export interface PushOptions {
  pushId: string | null;
  url: string | null;
  mode: "replace" | "append";
  socketUrl: string | null;
  allowedOrigins: string[];
  debug: boolean;
}

interface ConnectionEntry {
  connection: PushConnection;
  elements: Set<Element>;
  /**
   * Tail of the frames being applied one after another in arrival order, so a
   * slow fetch for an earlier frame cannot overwrite what a later frame put in.
   */
  queue: Promise<void>;
}

/** Source of a `.pat-push` element: the page's own markup, or an injected fragment. */
type ElementOrigin = "page" | "injected";

const TRIGGER = ".pat-push";
/**
 * Prefixes and names of the events that the pattern itself dispatches. A
 * message may not use them as its `event`, so a message cannot pose as an
 * injection, which would initialise elements, or as Patternslib's `push`.
 */
const RESERVED_EVENT_PREFIXES = ["patpush:", "pat-inject-"];
const RESERVED_EVENT_NAMES = new Set<string>([PushEvent.PUSH]);
const STATE_CLASS_PREFIX = "pat-push-state-";
const logger = getLogger("pat-push");

const connections = new Map<string, ConnectionEntry>();
const initialised = new WeakSet<Element>();
const optionsCache = new WeakMap<Element, { text: string | null; options: PushOptions }>();
const allowedOrigins = new Set<string>();
/** `push` events this module dispatched and already handles itself. */
const ownPushEvents = new WeakSet<Event>();
let listening = false;

/** Initialises every `.pat-push` element in `root`, and `root` itself, skipping those already done. */
export function init(root: ParentNode = document): void {
  initElements(root, "page");
}

/**
 * Initialises the `.pat-push` elements of `root`. Elements that came with an
 * injected fragment may listen for push ids, but they may not open
 * connections or widen the allowed origins.
 */
function initElements(root: ParentNode, origin: ElementOrigin): void {
  listenOnDocument();
  const elements = Array.from(root.querySelectorAll(TRIGGER));
  if (root instanceof Element && root.matches(TRIGGER)) elements.unshift(root);
  for (const element of elements) initElement(element, origin);
}

/** Returns the connection opened for `socketUrl`, if an element asked for it. */
export function getConnection(socketUrl: string): PushConnection | undefined {
  const url = normaliseSocketUrl(socketUrl);
  return url === undefined ? undefined : connections.get(url)?.connection;
}

/** Reads an element's `data-pat-push` options, parsing each attribute value once. */
export function readOptions(element: Element): PushOptions {
  const text = element.getAttribute("data-pat-push");
  const cached = optionsCache.get(element);
  if (cached !== undefined && cached.text === text) return cached.options;

  const parsed = parseOptions(text, PUSH_OPTIONS, logger);
  const options: PushOptions = {
    pushId: parsed.pushId as string | null,
    url: parsed.url as string | null,
    mode: parsed.mode === "append" ? "append" : "replace",
    socketUrl: parsed.socketUrl as string | null,
    allowedOrigins: String(parsed.allowedOrigins ?? "")
      .split(/[\s,]+/)
      .filter((origin) => origin !== ""),
    debug: parsed.debug === true,
  };
  optionsCache.set(element, { text, options });
  return options;
}

function initElement(element: Element, origin: ElementOrigin): void {
  if (initialised.has(element)) return;
  initialised.add(element);

  const options = readOptions(element);
  if (options.debug) logger.level = "debug";
  if (options.pushId !== null && options.url === null) {
    logger.warn(`push-id "${options.pushId}" has no url, so the element is never updated`, element);
  }
  if (origin === "injected" && (options.socketUrl !== null || options.allowedOrigins.length > 0)) {
    logger.warn("socket-url and allowed-origins of an injected element are ignored", element);
    return;
  }
  if (options.socketUrl !== null) attachConnection(element, options);
  logger.debug("initialised", element);
}

function listenOnDocument(): void {
  if (listening) return;
  if (document.body === null) {
    document.addEventListener("DOMContentLoaded", listenOnDocument, { once: true });
    return;
  }

  listening = true;
  document.body.addEventListener(PushEvent.PUSH, onPushEvent);
  // Injected markup may bring its own .pat-push elements.
  document.addEventListener(PushEvent.INJECTED, (event) => {
    if (event.target instanceof Element) initElements(event.target, "injected");
  });
}

/** Handles a `push` event that someone else dispatched, as Patternslib's pat-push would. */
function onPushEvent(event: Event): void {
  if (ownPushEvents.has(event)) return;

  const pushId: unknown = (event as CustomEvent<{ body?: unknown } | null>).detail?.body;
  if (typeof pushId === "string") void updatePushElements(pushId);
}

function normaliseSocketUrl(text: string): string | undefined {
  try {
    const url = new URL(text, document.baseURI);
    if (url.protocol === "http:") url.protocol = "ws:";
    if (url.protocol === "https:") url.protocol = "wss:";
    return url.protocol === "ws:" || url.protocol === "wss:" ? url.href : undefined;
  } catch {
    return undefined;
  }
}

function attachConnection(element: Element, options: PushOptions): void {
  const url = normaliseSocketUrl(options.socketUrl ?? "");
  if (url === undefined) {
    logger.warn(
      `invalid socket-url "${options.socketUrl}": expected a ws:, wss: or http(s) URL`,
      element,
    );
    return;
  }

  for (const origin of options.allowedOrigins) allowedOrigins.add(origin);
  let entry = connections.get(url);
  if (entry === undefined) {
    entry = openConnection(url, options.debug);
  } else if (options.debug) {
    entry.connection.debug = true;
  }
  entry.elements.add(element);
  showState(element, entry.connection.state);
}

function openConnection(url: string, debug: boolean): ConnectionEntry {
  const connection = new PushConnection({ url, debug });
  const entry: ConnectionEntry = { connection, elements: new Set(), queue: Promise.resolve() };
  connections.set(url, entry);

  connection.addEventListener("state", (event) => {
    for (const element of entry.elements) showState(element, event.detail.state);
  });
  connection.addEventListener("welcome", (event) => {
    const detail = event.detail;
    emit(document, PushEvent.WELCOME, detail.frame);
    if (detail.gap) {
      logger.info("recovery gap: messages may be lost, so placeholders are reloaded", detail.frame);
      emit(document, PushEvent.GAP, detail.frame);
    }
    enqueue(entry, () => handleWelcome(detail));
  });
  connection.addEventListener("message", (event) => {
    const frame = event.detail;
    if (emit(document, PushEvent.MESSAGE, frame, true)) enqueue(entry, () => handleMessage(frame));
  });
  connection.connect();
  return entry;
}

function enqueue(entry: ConnectionEntry, task: () => Promise<void>): void {
  entry.queue = entry.queue.then(task).catch((error: unknown) => {
    logger.error("applying a push frame failed", error);
  });
}

function showState(element: Element, state: ConnectionState): void {
  const stale = Array.from(element.classList).filter((name) => name.startsWith(STATE_CLASS_PREFIX));
  element.classList.remove(...stale);
  element.classList.add(`${STATE_CLASS_PREFIX}${state}`);
}

function injectOptions(): InjectOptions {
  return { allowedOrigins: Array.from(allowedOrigins) };
}

/**
 * Reloads the pending placeholders when the page may lack a message that no
 * frame will bring: on the first welcome and after a gap. A "complete"
 * recovery replays what was missed, so the placeholders wait for those frames.
 */
async function handleWelcome(detail: WelcomeDetail): Promise<void> {
  if (detail.mayHaveMissed) await refreshPlaceholders(document, injectOptions());
}

async function handleMessage(frame: MessageFrame): Promise<void> {
  if (typeof frame.html === "string" && frame.html !== "") {
    await applySnippet(frame.html, injectOptions());
  }
  if (typeof frame.event === "string" && frame.event !== "") {
    dispatchMessageEvent(frame.event, frame);
  }
  if (typeof frame.pushId === "string" && frame.pushId !== "") {
    const event = new CustomEvent(PushEvent.PUSH, {
      bubbles: true,
      detail: { body: frame.pushId },
    });
    ownPushEvents.add(event);
    (document.body ?? document).dispatchEvent(event);
    await updatePushElements(frame.pushId);
  }
}

function dispatchMessageEvent(name: string, frame: MessageFrame): void {
  const reserved =
    RESERVED_EVENT_NAMES.has(name) ||
    RESERVED_EVENT_PREFIXES.some((prefix) => name.toLowerCase().startsWith(prefix));
  if (reserved) {
    const detail = { reason: "reserved event name", event: name, id: frame.id };
    logger.warn(`message event "${name}" is reserved for pat-push and not dispatched`, detail);
    emit(document, PushEvent.INVALID_SNIPPET, detail);
    return;
  }
  // document.body is null once an injection has replaced the page's <body> element.
  emit(document.body ?? document, name, { data: frame.data, id: frame.id });
}

/** Refreshes every `.pat-push` element whose `push-id` is `pushId` from its `url`. */
function updatePushElements(pushId: string): Promise<InjectionResult[]> {
  const updates: Array<Promise<InjectionResult>> = [];
  for (const element of Array.from(document.querySelectorAll(TRIGGER))) {
    const options = readOptions(element);
    if (options.pushId !== pushId || options.url === null) continue;

    const hashStart = options.url.indexOf("#");
    const selector = hashStart === -1 ? undefined : selectorFromHash(options.url.slice(hashStart));
    const source = { selector: selector ?? "body", element: false };
    const position = options.mode === "append" ? "after" : "replace";
    const target = { selector: TRIGGER, element: false, position } as const;
    updates.push(
      injectFromUrl(options.url, [{ source, target, targets: [element] }], injectOptions()),
    );
  }
  logger.debug(`push id "${pushId}" updates ${updates.length} element(s)`);
  return Promise.all(updates);
}
