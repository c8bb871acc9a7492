import assert from "node:assert/strict";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { after, before, describe, it } from "node:test";
import { createLogger } from "../../common/logger.ts";
import type { DoneMessage } from "../../protocol/message.ts";
import { startDemo, type Demo } from "./app.ts";
import { PortInUseError } from "./config.ts";

const logger = createLogger({ level: process.env.PATPUSH_LOG_LEVEL ?? "silent" });

let demo: Demo;

before(async () => {
  demo = await startDemo({
    portalPort: 0,
    pushPort: 0,
    previewDelayMs: 0,
    maxUploadBytes: 1024,
    buildBundle: false,
    logger,
  });
});

after(async () => {
  await demo?.close();
});

/** Logs in through POST /login and returns the `__ac` cookie and the page's authenticator. */
async function logIn(user: string): Promise<{ cookie: string; authenticator: string }> {
  const response = await fetch(`${demo.portalUrl}/login`, {
    method: "POST",
    body: new URLSearchParams({ login: user, password: user, came_from: "/workspace" }),
    redirect: "manual",
  });
  assert.equal(response.status, 303);
  const cookie = (response.headers.get("set-cookie") ?? "").split(";")[0] ?? "";

  const page = await (
    await fetch(`${demo.portalUrl}/workspace`, { headers: { Cookie: cookie } })
  ).text();
  const authenticator = /name="_authenticator" value="([0-9a-f]{64})"/.exec(page)?.[1] ?? "";
  return { cookie, authenticator };
}

function uploadForm(
  authenticator: string | undefined,
  name: string,
  body: string,
  type: string,
): FormData {
  const form = new FormData();
  if (authenticator !== undefined) form.append("_authenticator", authenticator);
  form.append("file", new Blob([body], { type }), name);
  return form;
}

function upload(cookie: string, form: FormData): Promise<Response> {
  return fetch(`${demo.portalUrl}/workspace/upload`, {
    method: "POST",
    body: form,
    headers: { Cookie: cookie },
    redirect: "manual",
  });
}

describe("portal login", () => {
  it("redirects anonymous pages to login", async () => {
    const response = await fetch(`${demo.portalUrl}/workspace/docs/1/preview`, {
      redirect: "manual",
    });
    assert.equal(response.status, 302);
    assert.equal(
      response.headers.get("location"),
      "/login?came_from=%2Fworkspace%2Fdocs%2F1%2Fpreview",
    );
  });

  it("sets an HttpOnly Lax session cookie", async () => {
    const response = await fetch(`${demo.portalUrl}/login`, {
      method: "POST",
      body: new URLSearchParams({
        login: "bob",
        password: "bob",
        came_from: "/workspace/docs/3/preview",
      }),
      redirect: "manual",
    });
    assert.equal(response.status, 303);
    assert.equal(response.headers.get("location"), "/workspace/docs/3/preview");
    assert.match(
      response.headers.get("set-cookie") ?? "",
      /^__ac=[A-Za-z0-9_-]{43}; Path=\/; HttpOnly; SameSite=Lax$/,
    );
  });

  it("rejects a wrong password", async () => {
    const response = await fetch(`${demo.portalUrl}/login`, {
      method: "POST",
      body: new URLSearchParams({ login: "alice", password: "bob" }),
      redirect: "manual",
    });
    assert.equal(response.status, 401);
    assert.equal(response.headers.get("set-cookie"), null);
    assert.match(await response.text(), /Wrong user name or password\./);
  });

  it("ignores a foreign came_from", async () => {
    const response = await fetch(`${demo.portalUrl}/login`, {
      method: "POST",
      body: new URLSearchParams({
        login: "alice",
        password: "alice",
        came_from: "//evil.example/",
      }),
      redirect: "manual",
    });
    assert.equal(response.headers.get("location"), "/workspace");
  });

  it("needs the authenticator to log out", async () => {
    const { cookie, authenticator } = await logIn("alice");
    const forged = await fetch(`${demo.portalUrl}/logout`, {
      method: "POST",
      headers: { Cookie: cookie },
      body: new URLSearchParams(),
      redirect: "manual",
    });
    assert.equal(forged.status, 403);
    assert.equal(
      (await fetch(`${demo.portalUrl}/patpush/auth`, { headers: { Cookie: cookie } })).status,
      200,
    );

    const logout = await fetch(`${demo.portalUrl}/logout`, {
      method: "POST",
      headers: { Cookie: cookie },
      body: new URLSearchParams({ _authenticator: authenticator }),
      redirect: "manual",
    });
    assert.equal(logout.status, 303);
    assert.equal(
      (await fetch(`${demo.portalUrl}/patpush/auth`, { headers: { Cookie: cookie } })).status,
      401,
    );
  });
});

describe("portal auth callback", () => {
  it("returns the user and channels", async () => {
    const { cookie } = await logIn("bob");
    const response = await fetch(`${demo.portalUrl}/patpush/auth`, { headers: { Cookie: cookie } });
    assert.equal(response.status, 200);
    assert.deepEqual(await response.json(), { user: "bob", channels: ["site"] });
  });

  it("rejects a missing session", async () => {
    const response = await fetch(`${demo.portalUrl}/patpush/auth`, {
      headers: { Cookie: `__ac=${"x".repeat(43)}` },
    });
    assert.equal(response.status, 401);
    assert.deepEqual(await response.json(), {});
  });
});

describe("portal upload", () => {
  it("rejects an unsupported type", async () => {
    const { cookie, authenticator } = await logIn("alice");
    const response = await upload(
      cookie,
      uploadForm(authenticator, "report.pdf", "%PDF-1.7", "application/pdf"),
    );
    assert.equal(response.status, 415);
    assert.match(
      await response.text(),
      /report\.pdf \(application\/pdf\) is not supported; upload a text file \(\.txt, \.md, \.csv\) or a PNG, JPEG, GIF or WebP image/,
    );
  });

  it("rejects a file over the limit", async () => {
    const { cookie, authenticator } = await logIn("alice");
    const response = await upload(
      cookie,
      uploadForm(authenticator, "big.txt", "x".repeat(2048), "text/plain"),
    );
    assert.equal(response.status, 413);
    assert.match(await response.text(), /big\.txt is larger than 1024 bytes/);
  });

  it("rejects an upload without authenticator", async () => {
    const { cookie } = await logIn("bob");
    const response = await upload(cookie, uploadForm(undefined, "a.txt", "hello", "text/plain"));
    assert.equal(response.status, 403);

    const page = await (
      await fetch(`${demo.portalUrl}/workspace`, { headers: { Cookie: cookie } })
    ).text();
    assert.match(page, /No documents yet\./);
  });

  it("stores the document and makes its preview", async () => {
    const { cookie, authenticator } = await logIn("alice");
    const published = new Promise<DoneMessage>((resolve) => {
      const unsubscribe = demo.bus.subscribe((event) => {
        if (event.type !== "message") return;
        unsubscribe();
        resolve(event.message);
      });
    });

    const response = await upload(
      cookie,
      uploadForm(authenticator, "notes.md", "# One\n<two>\n", "text/markdown"),
    );
    assert.equal(response.status, 303);
    assert.equal(response.headers.get("location"), "/workspace");

    const message = await published;
    assert.equal(message.user, "alice");
    const id = /docs\/(\d+)\/preview/.exec(message.html ?? "")?.[1];
    const preview = await (
      await fetch(`${demo.portalUrl}/workspace/docs/${id}/preview`, { headers: { Cookie: cookie } })
    ).text();
    assert.match(
      preview,
      new RegExp(
        `<div id="doc-${id}-preview" class="preview ready text"><pre># One\n&lt;two&gt;</pre></div>`,
      ),
    );
  });
  it("links previews to the request's host", async () => {
    const { cookie, authenticator } = await logIn("bob");
    const published = new Promise<DoneMessage>((resolve) => {
      const unsubscribe = demo.bus.subscribe((event) => {
        if (event.type !== "message") return;
        unsubscribe();
        resolve(event.message);
      });
    });
    const localUrl = demo.portalUrl.replace("127.0.0.1", "localhost");

    const response = await fetch(`${localUrl}/workspace/upload`, {
      method: "POST",
      body: uploadForm(authenticator, "local.txt", "hello", "text/plain"),
      headers: { Cookie: cookie },
      redirect: "manual",
    });
    assert.equal(response.status, 303);

    const message = await published;
    assert.equal(message.user, "bob");
    assert.match(
      message.html ?? "",
      new RegExp(`^<a href="${localUrl}/workspace/docs/\\d+/preview#doc-\\d+-preview"`),
    );
  });
});

describe("portal notifications", () => {
  it("publishes to the site channel", async () => {
    const { cookie, authenticator } = await logIn("bob");
    const published = new Promise<DoneMessage>((resolve) => {
      const unsubscribe = demo.bus.subscribe((event) => {
        if (event.type !== "message") return;
        unsubscribe();
        resolve(event.message);
      });
    });

    const response = await fetch(`${demo.portalUrl}/notify`, {
      method: "POST",
      headers: { Cookie: cookie, Accept: "application/json" },
      body: new URLSearchParams({ _authenticator: authenticator, text: "lunch at noon" }),
    });
    assert.equal(response.status, 200);
    assert.deepEqual(await published, {
      channel: "site",
      event: "portal-notification",
      data: { from: "bob", text: "lunch at noon" },
    });
  });
});

describe("portal pages", () => {
  it("uses the request's portal host", async () => {
    const { cookie } = await logIn("alice");
    const port = new URL(demo.portalUrl).port;
    const pushPort = new URL(demo.pushUrl).port;

    const local = await (
      await fetch(`http://localhost:${port}/workspace`, { headers: { Cookie: cookie } })
    ).text();
    assert.match(local, new RegExp(`data-pat-push="socket-url: ws://localhost:${pushPort}/push"`));
  });

  it("picks push server by index", async () => {
    const { cookie } = await logIn("alice");
    const pushPort = new URL(demo.pushUrl).port;

    const first = await fetch(`${demo.portalUrl}/workspace?push=0`, {
      headers: { Cookie: cookie },
    });
    assert.equal(first.status, 200);
    assert.match(
      await first.text(),
      new RegExp(`data-pat-push="socket-url: ws://127\\.0\\.0\\.1:${pushPort}/push"`),
    );

    for (const value of ["1", "-1", "x", ""]) {
      const response = await fetch(`${demo.portalUrl}/workspace?push=${value}`, {
        headers: { Cookie: cookie },
      });
      assert.equal(response.status, 400, `push=${value}`);
      assert.match(
        await response.text(),
        /push must be the index of a push server, from 0 to 0/,
        `push=${value}`,
      );
    }
  });

  it("ignores a forged Host header", async () => {
    const { cookie } = await logIn("alice");
    const pushPort = new URL(demo.pushUrl).port;
    const { request } = await import("node:http");

    const body = await new Promise<string>((resolve, reject) => {
      const req = request(
        `${demo.portalUrl}/workspace`,
        { headers: { Cookie: cookie, Host: "evil.example" } },
        (res) => {
          let text = "";
          res
            .setEncoding("utf8")
            .on("data", (chunk: string) => (text += chunk))
            .on("end", () => resolve(text));
        },
      );
      req.on("error", reject).end();
    });
    assert.match(
      body,
      new RegExp(`data-pat-push="socket-url: ws://127\\.0\\.0\\.1:${pushPort}/push"`),
    );
    assert.doesNotMatch(body, /evil\.example/);
  });
});

describe("start demo", () => {
  let blocker: Server;

  before(async () => {
    blocker = createServer();
    await new Promise<void>((resolve) => blocker.listen(0, "127.0.0.1", resolve));
  });

  after(async () => {
    await new Promise<void>((resolve) => blocker.close(() => resolve()));
  });

  it("names a taken portal port", async () => {
    const port = (blocker.address() as AddressInfo).port;
    await assert.rejects(
      startDemo({ portalPort: port, pushPort: 0, buildBundle: false, logger }),
      (err: unknown) => {
        assert.ok(err instanceof PortInUseError);
        assert.equal(err.code, "PATPUSH_PORT_IN_USE");
        assert.equal(err.server, "portal");
        assert.equal(err.message, `portal port ${port} on 127.0.0.1 is already in use`);
        return true;
      },
    );
  });

  it("names a taken push port", async () => {
    const port = (blocker.address() as AddressInfo).port;
    await assert.rejects(
      startDemo({ portalPort: 0, pushPort: port, buildBundle: false, logger }),
      (err: unknown) => {
        assert.ok(err instanceof PortInUseError);
        assert.equal(err.server, "push");
        assert.equal(err.message, `push port ${port} on 127.0.0.1 is already in use`);
        return true;
      },
    );
  });

  it("rejects an invalid option", async () => {
    await assert.rejects(startDemo({ portalPort: -1, buildBundle: false, logger }), {
      code: "PATPUSH_CONFIG_INVALID",
      message: /portalPort: .* \(got -1\)/,
    });
  });
});
