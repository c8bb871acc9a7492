import type { PortalDocument } from "./documents.ts";
import { ACCEPTED_UPLOADS } from "./file-types.ts";
import { AUTHENTICATOR_FIELD } from "./authenticator.ts";
import { html, type SafeHtml } from "./html.ts";

/** Data about the logged-in user that every page renders. */
export interface PageUser {
  user: string;
  /** The session's `_authenticator` token for the page's forms. */
  authenticator: string;
}

/** Returns the id of the element that contains a document's preview. */
export function previewElementId(documentId: number): string {
  return `doc-${documentId}-preview`;
}

/** Returns the absolute URL of a document's preview page, with the fragment selector. */
export function previewSourceUrl(origin: string, documentId: number): string {
  return `${origin}/workspace/docs/${documentId}/preview#${previewElementId(documentId)}`;
}

/**
 * Returns the pat-inject snippet a worker publishes when a preview is done:
 * fetch the preview page and replace the placeholder element with the
 * element of the same id. `::element` is needed on both sides because
 * pat-inject selects an element's content by default, and the content alone
 * would lose the element's id and classes.
 */
export function previewDoneSnippet(origin: string, documentId: number): string {
  const id = previewElementId(documentId);
  const inject = `source: #${id}::element; target: #${id}::element`;
  const href = previewSourceUrl(origin, documentId);
  return html`<a href="${href}" data-pat-inject="${inject}"></a>`.value;
}

function formatSize(bytes: number): string {
  if (bytes < 1024) return `${bytes} B`;
  if (bytes < 1024 * 1024) return `${(bytes / 1024).toFixed(1)} KB`;
  return `${(bytes / 1024 / 1024).toFixed(1)} MB`;
}

/**
 * Returns a document's preview element: the finished preview, or a pending
 * placeholder that pat-push refreshes from the preview page when its socket
 * opens. The markup has no whitespace around the content, so the injected
 * fragment is exactly the element.
 */
export function previewElement(document: PortalDocument, origin: string): SafeHtml {
  const id = previewElementId(document.id);
  const preview = document.preview;

  if (preview === undefined) {
    const pendingUrl = previewSourceUrl(origin, document.id);
    return html`<div id="${id}" class="preview pending" data-pat-push-pending="${pendingUrl}">Preparing preview…</div>`;
  }
  if (preview.kind === "image") {
    const src = `/workspace/docs/${document.id}/thumbnail`;
    const image = html`<img src="${src}" alt="${document.filename}" width="${preview.width}" height="${preview.height}">`;
    return html`<div id="${id}" class="preview ready image">${image}</div>`;
  }
  if (preview.kind === "text") {
    const body = preview.lines.length > 0 ? preview.lines.join("\n") : "(empty file)";
    const more = preview.truncated ? html`<p class="more">…</p>` : "";
    return html`<div id="${id}" class="preview ready text"><pre>${body}</pre>${more}</div>`;
  }
  return html`<div id="${id}" class="preview failed">No preview: ${preview.reason}</div>`;
}

function authenticatorInput(authenticator: string): SafeHtml {
  return html`<input type="hidden" name="${AUTHENTICATOR_FIELD}" value="${authenticator}">`;
}

/** Wraps page content in the portal's layout. */
export function layout(title: string, content: SafeHtml, page?: PageUser): SafeHtml {
  const account = page
    ? html`<form class="logout" method="post" action="/logout">
  ${authenticatorInput(page.authenticator)}
  <span class="user">${page.user}</span>
  <button type="submit">Log out</button>
</form>`
    : "";

  return html`<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<link rel="icon" href="data:,">
<title>${title} · patpush demo portal</title>
<link rel="stylesheet" href="/static/portal.css">
</head>
<body>
<header class="top">
<a class="brand" href="/workspace">patpush demo portal</a>
${account}
</header>
<main>
${content}
</main>
</body>
</html>
`;
}

/** Returns the login page, with an error message after a failed attempt. */
export function loginPage(cameFrom: string, error?: string): SafeHtml {
  const content = html`<section class="card login">
  <h1>Log in</h1>
  ${error ? html`<p class="error" role="alert">${error}</p>` : ""}
  <form method="post" action="/login">
    <input type="hidden" name="came_from" value="${cameFrom}">
    <label>User name <input name="login" autocomplete="username" required autofocus></label>
    <label>Password <input name="password" type="password" autocomplete="current-password" required></label>
    <button type="submit">Log in</button>
  </form>
  <p class="hint">Demo logins: alice / alice and bob / bob.</p>
</section>`;
  return layout("Log in", content);
}

function documentItem(document: PortalDocument, origin: string): SafeHtml {
  const size = `${document.mediaType}, ${formatSize(document.sizeBytes)}`;
  return html`<li class="document" id="doc-${document.id}">
  <div class="meta"><span class="filename">${document.filename}</span> <span class="size">${size}</span></div>
  ${previewElement(document, origin)}
</li>`;
}

/** Data the workspace page renders. */
export interface WorkspaceView {
  page: PageUser;
  documents: readonly PortalDocument[];
  /** Origin the browser used for this page; URLs in the markup use it. */
  origin: string;
  /** WebSocket URL of the push server, on the same host name as the page. */
  socketUrl: string;
}

/** Returns the workspace: the upload form, the user's documents and the notifications. */
export function workspacePage(view: WorkspaceView): SafeHtml {
  const authenticator = authenticatorInput(view.page.authenticator);
  const items = view.documents.map((document) => documentItem(document, view.origin));
  const list = items.length > 0 ? items : html`<li class="empty">No documents yet.</li>`;

  const content = html`<div class="pat-push" data-pat-push="socket-url: ${view.socketUrl}"></div>
<div class="columns">
  <div class="primary">
    <section class="card">
      <h1>Workspace</h1>
      <form class="upload" method="post" action="/workspace/upload" enctype="multipart/form-data">
        ${authenticator}
        <label>Text files or images <input type="file" name="file" multiple accept="${ACCEPTED_UPLOADS}"></label>
        <button type="submit">Upload</button>
      </form>
      <p class="hint">Each upload gets a preview made by a background task. It appears here without a reload.</p>
    </section>
    <section class="card">
      <h2>Documents</h2>
      <ul id="documents">${list}</ul>
    </section>
  </div>
  <aside class="card" id="notifications">
    <h2>Notifications</h2>
    <form class="notify" method="post" action="/notify">
      ${authenticator}
      <label>Message to everyone <input name="text" maxlength="280" required></label>
      <button type="submit">Send</button>
    </form>
    <ol id="notification-list" aria-live="polite"></ol>
  </aside>
</div>
<script src="/static/patpush.js" defer></script>
<script src="/static/portal.js" defer></script>`;
  return layout("Workspace", content, view.page);
}

/** Returns the preview page of one document; pat-push fetches its preview element. */
export function previewPage(document: PortalDocument, origin: string, page: PageUser): SafeHtml {
  const content = html`<section class="card">
  <h1>${document.filename}</h1>
  ${previewElement(document, origin)}
  <p><a href="/workspace">Back to the workspace</a></p>
</section>`;
  return layout(document.filename, content, page);
}

/** Returns a page that states why a request failed. */
export function errorPage(status: number, message: string, page?: PageUser): SafeHtml {
  const content = html`<section class="card">
  <h1>Error ${status}</h1>
  <p class="error" role="alert">${message}</p>
  <p><a href="/workspace">Back to the workspace</a></p>
</section>`;
  return layout(`Error ${status}`, content, page);
}
