/**
 * Socket probes for the rejection specs. One runs inside a page, so the
 * browser sets Origin and cookies itself. The other uses the `ws` package,
 * which can send any Origin and read the status of a rejected upgrade.
 */
import type { Page } from "playwright-core";
import WebSocket from "ws";

/** What a browser socket did: opened and got a first frame, or closed without opening. */
export interface BrowserSocketResult {
  opened: boolean;
  /** Close code when the socket closed before opening. */
  closeCode?: number;
  /** Text of the first frame of an opened socket. */
  firstFrame?: string;
}

/** Opens `url` with the page's WebSocket and reports whether it opened. */
export function openBrowserSocket(page: Page, url: string): Promise<BrowserSocketResult> {
  return page.evaluate(
    (socketUrl) =>
      new Promise<BrowserSocketResult>((resolve) => {
        const socket = new WebSocket(socketUrl);
        let opened = false;
        socket.onopen = () => {
          opened = true;
        };
        socket.onmessage = (event) => {
          resolve({ opened, firstFrame: String(event.data) });
          socket.close();
        };
        socket.onclose = (event) => {
          if (!opened) resolve({ opened: false, closeCode: event.code });
        };
      }),
    url,
  );
}

/** Result of an upgrade with the `ws` package: the HTTP status of a rejection, or the first frame. */
export interface UpgradeResult {
  status?: number;
  /** Body of a rejection, when the request asked for it with `readBody`. */
  body?: string;
  firstFrame?: string;
}

/**
 * Requests an upgrade of `url` with the given Origin and Cookie headers.
 * With `readBody`, a rejection's result carries its response body too.
 */
export function requestUpgrade(
  url: string,
  options: { origin?: string; cookie?: string; readBody?: boolean },
): Promise<UpgradeResult> {
  return new Promise((resolve, reject) => {
    const headers: Record<string, string> =
      options.cookie === undefined ? {} : { Cookie: options.cookie };
    const socket = new WebSocket(url, {
      headers,
      ...(options.origin === undefined ? {} : { origin: options.origin }),
    });

    socket.on("unexpected-response", (request, response) => {
      if (options.readBody !== true) {
        resolve({ status: response.statusCode });
        response.resume();
        request.destroy();
        return;
      }
      const chunks: Buffer[] = [];
      response.on("data", (chunk: Buffer) => chunks.push(chunk));
      response.on("end", () => {
        resolve({ status: response.statusCode, body: Buffer.concat(chunks).toString("utf8") });
        request.destroy();
      });
    });
    socket.on("message", (data) => {
      resolve({ firstFrame: String(data) });
      socket.close();
    });
    socket.on("error", (err) => {
      // The request.destroy() above ends the socket with an error after the status was read.
      if (socket.readyState !== WebSocket.CLOSED) reject(err);
    });
  });
}
