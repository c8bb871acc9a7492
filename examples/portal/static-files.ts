import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { PROJECT_ROOT } from "./bundle.ts";
import type { RequestContext } from "./context.ts";
import { HttpError } from "./http.ts";

const PORTAL_STATIC = fileURLToPath(new URL("./static/", import.meta.url));

/** The files under /static/, by name; nothing else is served from disk. */
const STATIC_FILES: Record<string, { path: string; type: string }> = {
  "patpush.js": {
    path: join(PROJECT_ROOT, "dist", "patpush.js"),
    type: "text/javascript; charset=utf-8",
  },
  "patpush.js.map": {
    path: join(PROJECT_ROOT, "dist", "patpush.js.map"),
    type: "application/json",
  },
  "portal.js": { path: join(PORTAL_STATIC, "portal.js"), type: "text/javascript; charset=utf-8" },
  "portal.css": { path: join(PORTAL_STATIC, "portal.css"), type: "text/css; charset=utf-8" },
};

/**
 * GET /static/<name>: the browser bundle and the portal's own script and
 * style sheet. Files are read on each request, so a rebuilt bundle is served
 * without a restart.
 */
export async function sendStaticFile(ctx: RequestContext): Promise<void> {
  const name = ctx.params[0] ?? "";
  const file = Object.hasOwn(STATIC_FILES, name) ? STATIC_FILES[name] : undefined;
  if (file === undefined) throw new HttpError(404, `/static/${name} not found`);

  let body: Buffer;
  try {
    body = await readFile(file.path);
  } catch {
    const hint = name.startsWith("patpush") ? "; run npm run build:browser" : "";
    throw new HttpError(404, `/static/${name} not found${hint}`);
  }

  ctx.res.writeHead(200, {
    "Content-Type": file.type,
    "Content-Length": body.length,
    "Cache-Control": "no-cache",
    "X-Content-Type-Options": "nosniff",
  });
  ctx.res.end(body);
}
