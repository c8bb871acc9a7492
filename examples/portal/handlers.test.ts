import assert from "node:assert/strict";
import { mkdtemp, readdir, rm, stat } from "node:fs/promises";
import { connect } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import type { Demo } from "./app.ts";
import { logIn, startTestPortal, waitUntil, type LogCapture } from "./testing.ts";

let demo: Demo;
let logs: LogCapture;
let dataDir: string;

before(async () => {
  dataDir = await mkdtemp(join(tmpdir(), "patpush-handlers-"));
  ({ demo, logs } = await startTestPortal({ dataDir }));
});

after(async () => {
  await demo?.close();
  await rm(dataDir, { recursive: true, force: true });
});

/** `came_from` values that try to leave the portal or break the redirect, by what they try. */
const HOSTILE_CAME_FROM: readonly [string, string][] = [
  ["tab after the slash", "/\t/127.0.0.1:9/x"],
  ["newline after the slash", "/\n/evil.example/"],
  ["CR LF header injection", "/x\r\nSet-Cookie: a=b"],
  ["protocol-relative URL", "//evil.example/"],
  ["backslash after the slash", "/\\evil.example/"],
  ["dot segment to //", "/.//evil.example/"],
  ["absolute URL", "https://evil.example/"],
  ["javascript URL", "javascript:alert(1)"],
  ["non-ASCII characters", "/\uff0fevil.example/ä"],
  ["very long path", `/${"a".repeat(20_000)}`],
];

describe("login redirect", () => {
  for (const [name, cameFrom] of HOSTILE_CAME_FROM) {
    it(`stays on the portal for ${name}`, async () => {
      const response = await fetch(`${demo.portalUrl}/login`, {
        method: "POST",
        body: new URLSearchParams({ login: "alice", password: "alice", came_from: cameFrom }),
        redirect: "manual",
      });

      assert.equal(response.status, 303);
      assert.equal(response.statusText, "See Other");
      assert.equal(response.headers.get("location"), "/workspace");
      assert.match(response.headers.get("set-cookie") ?? "", /^__ac=[A-Za-z0-9_-]{43}; /);
    });
  }

  it("returns to an encoded local path", async () => {
    const response = await fetch(`${demo.portalUrl}/login`, {
      method: "POST",
      body: new URLSearchParams({ login: "bob", password: "bob", came_from: "/%09/evil.example/" }),
      redirect: "manual",
    });

    const location = response.headers.get("location") ?? "";
    assert.equal(location, "/%09/evil.example/");
    assert.equal(new URL(location, demo.portalUrl).origin, demo.portalUrl);
  });

  it("renders the form with a safe path", async () => {
    const query = new URLSearchParams({ came_from: "/\t/evil.example/" });
    const page = await (await fetch(`${demo.portalUrl}/login?${query}`)).text();

    assert.match(page, /<input type="hidden" name="came_from" value="\/workspace">/);
  });
});

describe("authenticator before body type", () => {
  let cookie: string;
  let authenticator: string;

  before(async () => {
    ({ cookie, authenticator } = await logIn(demo.portalUrl, "alice"));
  });

  const post = (path: string, init: RequestInit = {}): Promise<Response> =>
    fetch(`${demo.portalUrl}${path}`, {
      method: "POST",
      redirect: "manual",
      ...init,
      headers: { Cookie: cookie, ...init.headers },
    });

  it("rejects a worker call without body", async () => {
    const response = await post("/workspace/docs/1/@@make-preview");

    assert.equal(response.status, 403);
    assert.equal(
      await response.text(),
      "missing or invalid _authenticator; reload the page and try again",
    );
  });

  it("rejects a JSON notification", async () => {
    const response = await post("/notify", {
      body: JSON.stringify({ _authenticator: authenticator, text: "hi" }),
      headers: { "Content-Type": "application/json", Accept: "application/json" },
    });

    assert.equal(response.status, 403);
  });

  it("rejects a plain-text logout", async () => {
    const response = await post("/logout", {
      body: `_authenticator=${authenticator}`,
      headers: { "Content-Type": "text/plain" },
    });

    assert.equal(response.status, 403);
  });

  it("rejects a plain-text upload", async () => {
    const response = await post("/workspace/upload", {
      body: "hello",
      headers: { "Content-Type": "text/plain" },
    });

    assert.equal(response.status, 403);
  });

  it("rejects a form upload without authenticator", async () => {
    const response = await post("/workspace/upload", { body: new URLSearchParams({ a: "1" }) });

    assert.equal(response.status, 403);
  });

  it("rejects a form upload with 415", async () => {
    const response = await post("/workspace/upload", {
      body: new URLSearchParams({ _authenticator: authenticator, file: "notes.txt" }),
    });

    assert.equal(response.status, 415);
    const page = await response.text();
    assert.match(
      page,
      /expected a multipart\/form-data upload, got application\/x-www-form-urlencoded; /,
    );
    assert.match(page, /send the files from a form with enctype=&quot;multipart\/form-data&quot;/);
  });

  it("rejects a multipart upload without authenticator", async () => {
    const form = new FormData();
    form.append("note", "no file and no authenticator");
    const response = await post("/workspace/upload", { body: form });

    assert.equal(response.status, 403);
  });
});

describe("aborted upload", () => {
  it("deletes the partial file and logs", async () => {
    const { cookie, authenticator } = await logIn(demo.portalUrl, "bob");
    const port = Number(new URL(demo.portalUrl).port);
    const incoming = join(dataDir, "incoming");
    const boundary = "patpush-test-boundary";
    const head = [
      `--${boundary}`,
      'Content-Disposition: form-data; name="_authenticator"',
      "",
      authenticator,
      `--${boundary}`,
      'Content-Disposition: form-data; name="file"; filename="partial.txt"',
      "Content-Type: text/plain",
      "",
      "",
    ].join("\r\n");

    const socket = connect(port, "127.0.0.1");
    socket.on("error", () => {});
    socket.write(
      [
        "POST /workspace/upload HTTP/1.1",
        `Host: 127.0.0.1:${port}`,
        `Cookie: ${cookie}`,
        `Content-Type: multipart/form-data; boundary=${boundary}`,
        "Content-Length: 1000000",
        "",
        "",
      ].join("\r\n"),
    );
    socket.write(head);
    socket.write("x".repeat(50 * 1024));

    const partialFileSize = async (): Promise<number> => {
      const names = await readdir(incoming).catch(() => []);
      if (names.length === 0) return 0;
      return (await stat(join(incoming, names[0]!)).catch(() => ({ size: 0 }))).size;
    };
    await waitUntil(async () => (await partialFileSize()) > 0, "the partial file on disk");
    socket.destroy();

    await waitUntil(() => logs.find("upload aborted").length > 0, "the upload aborted log line");
    assert.deepEqual(await readdir(incoming), []);

    const [record] = logs.find("upload aborted");
    assert.equal(record?.level, 40);
    assert.equal(record?.user, "bob");
    assert.equal(logs.find("request failed").length, 0);
    assert.ok(!logs.text.includes(cookie.slice("__ac=".length)), "the log contains the cookie");
    assert.ok(!logs.text.includes(authenticator), "the log contains the authenticator");
  });
});
