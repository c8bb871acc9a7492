import { join } from "node:path";
import { socketUrlFor, type RequestContext } from "../context.ts";
import type { PortalDocument } from "../documents.ts";
import { ACCEPTED_UPLOADS_TEXT, detectFileType } from "../file-types.ts";
import { HttpError, mediaTypeOf, redirect, sendHtml, sendJson } from "../http.ts";
import { workspacePage } from "../pages.ts";
import type { Session } from "../sessions.ts";
import {
  discardFiles,
  receiveUpload,
  UploadAbortedError,
  type ReceivedFile,
} from "../uploads.ts";
import { USER_CHANNELS } from "./account.ts";
import { pageUserOf, readAuthenticatedForm, requireSession } from "./guards.ts";

/** Name of the task that makes a document's preview; the dispatcher sends it as X-Task-Name. */
export const PREVIEW_TASK_NAME = "make-preview";

/** Most characters of a notification text. */
const MAX_NOTIFICATION_CHARS = 280;

/**
 * Returns the index of the push server that the `push` query parameter
 * picks, or 0 when the parameter is absent. Throws HttpError 400 for a value
 * that names no push server.
 */
function pushServerIndex(ctx: RequestContext): number {
  const value = ctx.url.searchParams.get("push");
  if (value === null) return 0;

  const count = ctx.services.settings.pushPorts.length;
  const index = /^\d{1,3}$/.test(value) ? Number(value) : -1;
  if (index < 0 || index >= count) {
    const received = JSON.stringify(value.slice(0, 20));
    throw new HttpError(
      400,
      `push must be the index of a push server, from 0 to ${count - 1} (got ${received})`,
    );
  }
  return index;
}

/**
 * GET /workspace: the user's documents, the upload form and the
 * notifications. `?push=<index>` connects the page to another push server
 * when the portal has several.
 */
export function showWorkspace(ctx: RequestContext): void {
  const session = requireSession(ctx);
  if (session === undefined) return;

  const { documents, settings } = ctx.services;
  const page = workspacePage({
    page: pageUserOf(ctx, session),
    documents: documents.listFor(session.user),
    origin: ctx.origin,
    socketUrl: socketUrlFor(ctx.origin, settings, pushServerIndex(ctx)),
  });
  sendHtml(ctx.res, 200, page);
}

/**
 * Receives the files of an upload, or returns undefined after logging an
 * upload that the client aborted, which gets no response.
 */
async function receiveFiles(
  ctx: RequestContext,
  session: Session,
): Promise<ReceivedFile[] | undefined> {
  const { authenticator, settings } = ctx.services;
  try {
    return await receiveUpload(ctx.req, {
      maxFileBytes: settings.maxUploadBytes,
      maxFiles: settings.maxFilesPerUpload,
      tmpDir: join(settings.dataDir, "incoming"),
      verifyAuthenticator: (value) => authenticator.verify(session.token, value),
    });
  } catch (err) {
    if (!(err instanceof UploadAbortedError)) throw err;
    ctx.log.warn({ err, user: session.user }, "upload aborted");
    return undefined;
  }
}

/**
 * POST /workspace/upload: stores the uploaded files as documents, enqueues a
 * preview task per document to run once this response has been sent, and
 * redirects to the workspace. Any rejected file rejects the whole upload.
 * A body that is not multipart/form-data gets 403 without a valid
 * `_authenticator` in a urlencoded form, and 415 with one.
 */
export async function uploadFiles(ctx: RequestContext): Promise<void> {
  const session = requireSession(ctx);
  if (session === undefined) return;

  const bodyType = mediaTypeOf(ctx.req);
  if (bodyType !== "multipart/form-data") {
    await readAuthenticatedForm(ctx, session);
    throw new HttpError(
      415,
      `expected a multipart/form-data upload, got ${bodyType}; ` +
        'send the files from a form with enctype="multipart/form-data"',
    );
  }

  const files = await receiveFiles(ctx, session);
  if (files === undefined) return;
  if (files.length === 0) throw new HttpError(400, "no file selected; choose a file to upload");

  const { documents, producer, settings } = ctx.services;

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

  const form = await readAuthenticatedForm(ctx, session);

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
