import { randomUUID } from "node:crypto";
import type { IncomingMessage, ServerResponse } from "node:http";
import type { Logger } from "../../common/logger.ts";
import { requestOrigin, type PortalServices, type RequestContext } from "./context.ts";
import { checkPushAuth, showLogin, submitLogin, submitLogout } from "./handlers/account.ts";
import { makeDocumentPreview, sendThumbnail, showPreview } from "./handlers/documents.ts";
import { sendNotification, showWorkspace, uploadFiles } from "./handlers/workspace.ts";
import { HttpError, redirect, sendHtml, sendJson, sendText } from "./http.ts";
import { errorPage } from "./pages.ts";
import { sendStaticFile } from "./static-files.ts";

type Handler = (ctx: RequestContext) => void | Promise<void>;

interface Route {
  method: "GET" | "POST";
  /** Anchored pattern of the path; its groups become `ctx.params`. */
  path: RegExp;
  handler: Handler;
}

const ROUTES: readonly Route[] = [
  { method: "GET", path: /^\/$/, handler: (ctx) => redirect(ctx.res, 302, "/workspace") },
  { method: "GET", path: /^\/login$/, handler: showLogin },
  { method: "POST", path: /^\/login$/, handler: submitLogin },
  { method: "POST", path: /^\/logout$/, handler: submitLogout },
  { method: "GET", path: /^\/workspace$/, handler: showWorkspace },
  { method: "POST", path: /^\/workspace\/upload$/, handler: uploadFiles },
  {
    method: "POST",
    path: /^\/workspace\/docs\/(\d+)\/@@make-preview$/,
    handler: makeDocumentPreview,
  },
  { method: "GET", path: /^\/workspace\/docs\/(\d+)\/preview$/, handler: showPreview },
  { method: "GET", path: /^\/workspace\/docs\/(\d+)\/thumbnail$/, handler: sendThumbnail },
  { method: "POST", path: /^\/notify$/, handler: sendNotification },
  { method: "GET", path: /^\/patpush\/auth$/, handler: checkPushAuth },
  { method: "GET", path: /^\/static\/([\w.-]+)$/, handler: sendStaticFile },
  { method: "GET", path: /^\/health$/, handler: (ctx) => sendJson(ctx.res, 200, { status: "ok" }) },
];

/** Returns the route and its captured params, or the methods the path allows when only the method differs. */
function matchRoute(
  method: string,
  pathname: string,
): { route?: Route; params: string[]; allowed: string[] } {
  const allowed: string[] = [];
  for (const route of ROUTES) {
    const match = route.path.exec(pathname);
    if (match === null) continue;
    if (route.method === method || (method === "HEAD" && route.method === "GET")) {
      return { route, params: match.slice(1), allowed };
    }
    allowed.push(route.method);
  }
  return { params: [], allowed };
}

/** Ends a request that a handler failed with a page, JSON or plain text, as the route expects. */
function sendError(ctx: RequestContext, err: unknown): void {
  const status = err instanceof HttpError ? err.status : 500;
  const message =
    err instanceof HttpError ? err.message : "the portal failed to handle this request";
  if (status >= 500) {
    ctx.log.error({ err, method: ctx.req.method, path: ctx.url.pathname }, "request failed");
  }

  if (ctx.res.headersSent) {
    ctx.res.destroy();
    return;
  }
  // writeHead sets the status text before it checks the headers, so a call
  // that threw (e.g. on a CR LF in Location) would leave "See Other" behind.
  ctx.res.statusMessage = "";
  const headers = err instanceof HttpError ? err.headers : {};
  if (ctx.url.pathname === "/patpush/auth") {
    sendJson(ctx.res, status, {});
  } else if (ctx.url.pathname.includes("/@@") || ctx.req.headers.accept === "application/json") {
    sendText(ctx.res, status, message, headers);
  } else {
    sendHtml(ctx.res, status, errorPage(status, message), headers);
  }
}

/** Returns the URL of the request target, or undefined when it cannot be parsed. */
function parseTarget(target: string, base: string): URL | undefined {
  try {
    return new URL(target, base);
  } catch {
    return undefined;
  }
}

/** Routes one request and runs its handler. Any error the handler throws ends in sendError. */
async function handleRequest(
  services: PortalServices,
  req: IncomingMessage,
  res: ServerResponse,
): Promise<void> {
  const startedAt = performance.now();
  const log = services.logger.child({ reqId: randomUUID().slice(0, 8) });
  const url = parseTarget(req.url ?? "/", services.settings.canonicalOrigin);
  if (url === undefined) {
    // Node passes an absolute-form target such as `http://[::1` through unparsed.
    log.debug({ method: req.method, target: req.url?.slice(0, 200) }, "invalid request target");
    req.resume();
    sendText(res, 400, "invalid request target");
    return;
  }

  const { route, params, allowed } = matchRoute(req.method ?? "GET", url.pathname);
  const ctx: RequestContext = {
    req,
    res,
    url,
    origin: requestOrigin(req, services.settings),
    params,
    log,
    services,
  };

  res.on("finish", () => {
    const durationMs = Math.round(performance.now() - startedAt);
    log.debug(
      { method: req.method, path: url.pathname, status: res.statusCode, durationMs },
      "request handled",
    );
  });

  if (route === undefined) {
    const error =
      allowed.length > 0
        ? new HttpError(405, `${req.method} is not allowed here`, { Allow: allowed.join(", ") })
        : new HttpError(404, `${url.pathname} not found`);
    req.resume();
    sendError(ctx, error);
    return;
  }

  try {
    await route.handler(ctx);
  } catch (err) {
    sendError(ctx, err);
  }
}

/**
 * Ends a request whose handling threw outside the handlers' error path, for
 * example inside sendError. Sends 500 when no header has been sent and
 * destroys the socket otherwise. Logs the error, the method and the path,
 * never the headers.
 */
function answerUnexpectedError(
  logger: Logger,
  req: IncomingMessage,
  res: ServerResponse,
  err: unknown,
): void {
  const path = req.url?.split("?")[0]?.slice(0, 200);
  logger.error({ err, method: req.method, path }, "request handling failed");
  try {
    if (res.headersSent) {
      res.destroy();
      return;
    }
    res.statusMessage = "";
    req.resume();
    sendText(res, 500, "the portal failed to handle this request");
  } catch (sendErr) {
    logger.error({ err: sendErr }, "error response failed");
    res.destroy();
  }
}

/**
 * Returns the portal's `request` listener. An error thrown while routing or
 * handling ends in an error response and a log line instead of escaping.
 */
export function createRequestListener(
  services: PortalServices,
): (req: IncomingMessage, res: ServerResponse) => void {
  return (req, res) => {
    handleRequest(services, req, res).catch((err: unknown) =>
      answerUnexpectedError(services.logger, req, res, err),
    );
  };
}
