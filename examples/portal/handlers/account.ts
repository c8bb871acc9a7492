import type { RequestContext } from "../context.ts";
import { readForm, redirect, safeReturnPath, sendHtml, sendJson } from "../http.ts";
import { loginPage } from "../pages.ts";
import { expiredSessionCookie, sessionCookie } from "../sessions.ts";
import { checkPassword } from "../users.ts";
import { readAuthenticatedForm, requireSession } from "./guards.ts";

/** The channels every logged-in user receives besides their own messages. */
export const USER_CHANNELS = ["site"];

/** GET /login: the login form. */
export function showLogin(ctx: RequestContext): void {
  const cameFrom = safeReturnPath(ctx.url.searchParams.get("came_from"), ctx.origin);
  sendHtml(ctx.res, 200, loginPage(cameFrom));
}

/**
 * POST /login: checks the password, starts a session and sets the `__ac`
 * cookie. `came_from` is reduced to a same-origin path before the session
 * exists, so no value of it can fail the redirect after the session is made.
 */
export async function submitLogin(ctx: RequestContext): Promise<void> {
  const form = await readForm(ctx.req);
  const cameFrom = safeReturnPath(form.get("came_from"), ctx.origin);
  const user = checkPassword(form.get("login") ?? "", form.get("password") ?? "");

  if (user === undefined) {
    ctx.log.warn({ path: ctx.url.pathname }, "login failed");
    sendHtml(ctx.res, 401, loginPage(cameFrom, "Wrong user name or password."));
    return;
  }

  const token = ctx.services.sessions.create(user);
  ctx.log.info({ user }, "user logged in");
  redirect(ctx.res, 303, cameFrom, { "Set-Cookie": sessionCookie(token) });
}

/** POST /logout: ends the session; needs a valid `_authenticator`. */
export async function submitLogout(ctx: RequestContext): Promise<void> {
  const session = requireSession(ctx);
  if (session === undefined) return;

  await readAuthenticatedForm(ctx, session);

  ctx.services.sessions.delete(session.token);
  ctx.log.info({ user: session.user }, "user logged out");
  redirect(ctx.res, 303, "/login", { "Set-Cookie": expiredSessionCookie() });
}

/**
 * GET /patpush/auth: the push server's auth callback. Returns the user and
 * channels of the `__ac` session, or 401 with `{}`.
 */
export function checkPushAuth(ctx: RequestContext): void {
  const session = ctx.services.sessions.sessionFrom(ctx.req);
  if (session === undefined) {
    sendJson(ctx.res, 401, {});
    return;
  }
  sendJson(ctx.res, 200, { user: session.user, channels: USER_CHANNELS });
}
