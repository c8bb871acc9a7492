import { AUTHENTICATOR_FIELD } from "../authenticator.ts";
import type { RequestContext } from "../context.ts";
import type { PortalDocument } from "../documents.ts";
import { HttpError, isFormBody, mediaTypeOf, readForm, redirect } from "../http.ts";
import type { PageUser } from "../pages.ts";
import type { Session } from "../sessions.ts";

/**
 * Returns the request's session, or redirects to the login page (302) and
 * returns undefined. A POST comes back to the workspace after the login, a
 * GET to the page it asked for. The dispatcher treats a redirect to the
 * login page as an authorisation failure, as it would in Plone.
 */
export function requireSession(ctx: RequestContext): Session | undefined {
  const session = ctx.services.sessions.sessionFrom(ctx.req);
  if (session !== undefined) return session;

  const cameFrom = ctx.req.method === "GET" ? ctx.url.pathname + ctx.url.search : "/workspace";
  redirect(ctx.res, 302, `/login?came_from=${encodeURIComponent(cameFrom)}`);
  return undefined;
}

/**
 * Throws HttpError 403 unless `value` is the `_authenticator` token of the
 * session. Handlers call it before they change anything.
 */
export function requireAuthenticator(
  ctx: RequestContext,
  session: Session,
  value: string | null,
): void {
  if (ctx.services.authenticator.verify(session.token, value)) return;

  ctx.log.warn(
    {
      user: session.user,
      path: ctx.url.pathname,
      bodyType: mediaTypeOf(ctx.req),
      fieldPresent: value !== null,
    },
    "authenticator rejected",
  );
  throw new HttpError(
    403,
    `missing or invalid ${AUTHENTICATOR_FIELD}; reload the page and try again`,
  );
}

/**
 * Reads the urlencoded form of a POST that changes state and checks its
 * `_authenticator`. A body of any other type cannot carry the field, so it
 * is drained and gets 403 as well, not 415. Throws HttpError 413 for a form
 * over MAX_FORM_BYTES and 403 for a missing or wrong authenticator.
 */
export async function readAuthenticatedForm(
  ctx: RequestContext,
  session: Session,
): Promise<URLSearchParams> {
  const form = isFormBody(ctx.req) ? await readForm(ctx.req) : undefined;
  if (form === undefined) ctx.req.resume();

  requireAuthenticator(ctx, session, form?.get(AUTHENTICATOR_FIELD) ?? null);
  return form ?? new URLSearchParams();
}

/** Returns what the page layout needs to know about the session. */
export function pageUserOf(ctx: RequestContext, session: Session): PageUser {
  return { user: session.user, authenticator: ctx.services.authenticator.tokenFor(session.token) };
}

/**
 * Returns the document named by the route's id when the session's user owns
 * it. Throws HttpError 404 otherwise, so other users cannot tell whether the
 * id exists.
 */
export function requireOwnedDocument(ctx: RequestContext, session: Session): PortalDocument {
  const id = Number(ctx.params[0]);
  const document = Number.isSafeInteger(id)
    ? ctx.services.documents.findOwned(id, session.user)
    : undefined;
  if (document === undefined) throw new HttpError(404, `document ${ctx.params[0] ?? ""} not found`);
  return document;
}
