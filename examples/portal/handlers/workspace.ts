import { join } from "node:path";
import { AUTHENTICATOR_FIELD } from "../authenticator.ts";
import { socketUrlFor, type RequestContext } from "../context.ts";
import type { PortalDocument } from "../documents.ts";
import { ACCEPTED_UPLOADS_TEXT, detectFileType } from "../file-types.ts";
import { HttpError, readForm, redirect, sendHtml, sendJson } from "../http.ts";
import { workspacePage } from "../pages.ts";
import { discardFiles, receiveUpload } from "../uploads.ts";
import { USER_CHANNELS } from "./account.ts";
import { pageUserOf, requireAuthenticator, requireSession } from "./guards.ts";

/** Name of the task that makes a document's preview; the dispatcher sends it as X-Task-Name. */
export const PREVIEW_TASK_NAME = "make-preview";

/** Most characters of a notification text. */
const MAX_NOTIFICATION_CHARS = 280;

/** GET /workspace: the user's documents, the upload form and the notifications. */
export function showWorkspace(ctx: RequestContext): void {
  const session = requireSession(ctx);
  if (session === undefined) return;

  const { documents, settings } = ctx.services;
  const page = workspacePage({
    page: pageUserOf(ctx, session),
    documents: documents.listFor(session.user),
    origin: ctx.origin,
    socketUrl: socketUrlFor(ctx.origin, settings),
  });
  sendHtml(ctx.res, 200, page);
}

/**
 * POST /workspace/upload: stores the uploaded files as documents, enqueues a
 * preview task per document to run once this response has been sent, and
 * redirects to the workspace. Any rejected file rejects the whole upload.
 */
export async function uploadFiles(ctx: RequestContext): Promise<void> {
  const session = requireSession(ctx);
  if (session === undefined) return;

  const { authenticator, documents, producer, settings } = ctx.services;
  const files = await receiveUpload(ctx.req, {
    maxFileBytes: settings.maxUploadBytes,
    maxFiles: settings.maxFilesPerUpload,
    tmpDir: join(settings.dataDir, "incoming"),
    verifyAuthenticator: (value) => authenticator.verify(session.token, value),
  });
  if (files.length === 0) throw new HttpError(400, "no file selected; choose a file to upload");

  const types = files.map((file) => detectFileType(file.filename, file.declaredType, file.head));
  const rejected = files.findIndex((_file, i) => types[i] === undefined);
  if (rejected >= 0) {
    await discardFiles(files);
    const file = files[rejected];
    throw new HttpError(
      415,
      `${file?.filename ?? "file"} (${file?.declaredType || "no type"}) is not supported; upload ${ACCEPTED_UPLOADS_TEXT}`,
    );
  }

  const created: PortalDocument[] = [];
  for (const [i, file] of files.entries()) {
    const type = types[i]!;
    const document = await documents.create({
      owner: session.user,
      filename: file.filename,
      kind: type.kind,
      mediaType: type.mediaType,
      sizeBytes: file.sizeBytes,
      uploadedPath: file.tmpPath,
    });
    created.push(document);
  }

  for (const document of created) {
    // The dispatcher calls the canonical origin, which the portal listens on
    // for certain; the page's origin travels along for the links in the message.
    await producer.enqueueAfterResponse(ctx.req, ctx.res, {
      name: PREVIEW_TASK_NAME,
      contextUrl: `${settings.canonicalOrigin}/workspace/docs/${document.id}`,
      url: "/@@make-preview",
      data: { origin: ctx.origin },
    });
    ctx.log.info(
      { user: session.user, docId: document.id, kind: document.kind },
      "document uploaded",
    );
  }
  redirect(ctx.res, 303, "/workspace");
}

/**
 * POST /notify: publishes a short text to the `site` channel as a
 * `portal-notification` event, which the workspace page lists. Returns JSON
 * to a fetch that accepts JSON and redirects a form post.
 */
export async function sendNotification(ctx: RequestContext): Promise<void> {
  const session = requireSession(ctx);
  if (session === undefined) return;

  const form = await readForm(ctx.req);
  requireAuthenticator(ctx, session, form.get(AUTHENTICATOR_FIELD));

  const text = (form.get("text") ?? "").trim();
  if (text.length === 0 || text.length > MAX_NOTIFICATION_CHARS) {
    throw new HttpError(
      400,
      `the notification text must have 1 to ${MAX_NOTIFICATION_CHARS} characters`,
    );
  }

  const channel = USER_CHANNELS[0]!;
  await ctx.services.bus.publish({
    channel,
    event: "portal-notification",
    data: { from: session.user, text },
  });
  ctx.log.info({ user: session.user, channel }, "notification published");

  if (ctx.req.headers.accept === "application/json") {
    sendJson(ctx.res, 200, { status: "sent" });
    return;
  }
  redirect(ctx.res, 303, "/workspace");
}
