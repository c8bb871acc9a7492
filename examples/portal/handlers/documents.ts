import { createReadStream } from "node:fs";
import { setTimeout as sleep } from "node:timers/promises";
import { trustedOrigin, type RequestContext } from "../context.ts";
import { HttpError, sendHtml, sendJson } from "../http.ts";
import { previewDoneSnippet, previewPage } from "../pages.ts";
import { makePreview } from "../previews.ts";
import {
  pageUserOf,
  readAuthenticatedForm,
  requireOwnedDocument,
  requireSession,
} from "./guards.ts";

function headerValue(value: string | string[] | undefined): string | undefined {
  return Array.isArray(value) ? value[0] : value;
}

/**
 * POST /workspace/docs/<id>/@@make-preview: the worker view that the
 * dispatcher calls with the user's cookie and `_authenticator`. It checks
 * both and the ownership before it touches anything, waits previewDelayMs to
 * stand in for slow work, makes and stores the preview, then publishes the
 * done message that makes the owner's pages fetch it.
 */
export async function makeDocumentPreview(ctx: RequestContext): Promise<void> {
  const session = requireSession(ctx);
  if (session === undefined) return;

  const form = await readAuthenticatedForm(ctx, session);
  const document = requireOwnedDocument(ctx, session);

  const { bus, documents, settings } = ctx.services;
  const log = ctx.log.child({
    user: session.user,
    docId: document.id,
    taskName: headerValue(ctx.req.headers["x-task-name"]),
    taskId: headerValue(ctx.req.headers["x-task-id"]),
    attempt: headerValue(ctx.req.headers["x-task-attempt"]),
  });
  log.info("preview task received");

  await sleep(settings.previewDelayMs);
  const preview = await makePreview(document, documents.folderOf(document.id));
  documents.setPreview(document.id, preview);

  // The page's origin came with the task; only a portal origin is used in the link.
  const origin = trustedOrigin(form.get("origin"), settings);
  await bus.publish({ user: document.owner, html: previewDoneSnippet(origin, document.id) });
  log.info({ previewKind: preview.kind }, "preview published");

  sendJson(ctx.res, 200, { status: "done", preview: preview.kind });
}

/** GET /workspace/docs/<id>/preview: the page whose preview element pat-push fetches. */
export function showPreview(ctx: RequestContext): void {
  const session = requireSession(ctx);
  if (session === undefined) return;

  const document = requireOwnedDocument(ctx, session);
  sendHtml(ctx.res, 200, previewPage(document, ctx.origin, pageUserOf(ctx, session)));
}

/** GET /workspace/docs/<id>/thumbnail: the PNG thumbnail of an image document. */
export function sendThumbnail(ctx: RequestContext): void {
  const session = requireSession(ctx);
  if (session === undefined) return;

  const document = requireOwnedDocument(ctx, session);
  const preview = document.preview;
  if (preview?.kind !== "image")
    throw new HttpError(404, `document ${document.id} has no thumbnail yet`);

  ctx.res.writeHead(200, {
    "Content-Type": preview.mediaType,
    "Cache-Control": "private, no-cache",
    "X-Content-Type-Options": "nosniff",
  });
  createReadStream(preview.thumbnailPath)
    .on("error", (err) => {
      ctx.log.error({ err, docId: document.id }, "thumbnail read failed");
      ctx.res.destroy();
    })
    .pipe(ctx.res);
}
