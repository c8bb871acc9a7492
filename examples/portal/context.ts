import type { IncomingMessage, ServerResponse } from "node:http";
import type { Logger } from "../../common/logger.ts";
import type { Bus } from "../../server/index.ts";
import type { TaskProducer } from "../../tasks/index.ts";
import type { CsrfAuthenticator } from "./authenticator.ts";
import type { DocumentStore } from "./documents.ts";
import type { SessionStore } from "./sessions.ts";

/** Settings of a running portal, fixed once its port and the push server's port are known. */
export interface PortalSettings {
  /** Origin the portal listens on, e.g. `http://127.0.0.1:8480`; tasks are dispatched to it. */
  canonicalOrigin: string;
  /** Origins a browser may use for the portal; the first is canonicalOrigin. */
  origins: readonly string[];
  /** Ports of the push servers. Pages use the first unless `?push=<index>` picks another. */
  pushPorts: readonly number[];
  /** WebSocket path, the same on every push server. */
  pushPath: string;
  /** Simulated slow work in the worker view, in milliseconds. */
  previewDelayMs: number;
  maxUploadBytes: number;
  maxFilesPerUpload: number;
  dataDir: string;
}

/**
 * Destination of the done messages that the handlers publish: the embedded
 * bus in one process, or the Redis done stream when the push servers run elsewhere.
 */
export type DonePublisher = Pick<Bus, "publish">;

/** The services that the request handlers share. */
export interface PortalServices {
  settings: PortalSettings;
  sessions: SessionStore;
  authenticator: CsrfAuthenticator;
  documents: DocumentStore;
  bus: DonePublisher;
  producer: TaskProducer;
  logger: Logger;
}

/** One request on its way through the handlers. */
export interface RequestContext {
  req: IncomingMessage;
  res: ServerResponse;
  url: URL;
  /** Portal origin the browser used (from the Host header), or the canonical one. */
  origin: string;
  /** Values captured by the route's pattern, e.g. the document id. */
  params: string[];
  log: Logger;
  services: PortalServices;
}

/**
 * Returns the portal origin that a request used when its Host header names
 * one of the allowed origins. Any other Host gives the canonical origin, so a
 * forged Host header never ends up in a link.
 */
export function requestOrigin(req: IncomingMessage, settings: PortalSettings): string {
  const candidate = `http://${req.headers.host ?? ""}`;
  return settings.origins.includes(candidate) ? candidate : settings.canonicalOrigin;
}

/** Returns `origin` when it is one of the portal's origins, else the canonical origin. */
export function trustedOrigin(origin: string | null | undefined, settings: PortalSettings): string {
  return origin && settings.origins.includes(origin) ? origin : settings.canonicalOrigin;
}

/**
 * Returns the WebSocket URL of push server `index` on the same host name as
 * `origin`, so the cookie goes along. Throws RangeError for an index without
 * a push server.
 */
export function socketUrlFor(origin: string, settings: PortalSettings, index = 0): string {
  const port = settings.pushPorts[index];
  if (port === undefined) {
    const count = settings.pushPorts.length;
    throw new RangeError(`push server ${index} does not exist, because the portal has ${count}`);
  }
  const hostname = new URL(origin).hostname;
  return `ws://${hostname}:${port}${settings.pushPath}`;
}
