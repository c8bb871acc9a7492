import assert from "node:assert/strict";
import { mkdtemp, readdir, readFile, rm, stat } from "node:fs/promises";
import { createServer, type Server } from "node:http";
import { connect, type AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, beforeEach, describe, it } from "node:test";
import { HttpError } from "./http.ts";
import { waitFor, waitUntil } from "./testing.ts";
import { receiveUpload, UploadAbortedError, type ReceivedFile } from "./uploads.ts";

const VALID = "a".repeat(64);

const MAX_FILE_BYTES = 1024;

let dir: string;
let server: Server;
let baseUrl: string;
let maxFileBytes: number;
let lastResult: { files?: ReceivedFile[]; error?: unknown };
/** Resolves once receiveUpload of the latest request has settled. */
let settled: Promise<void>;
let markSettled: () => void;

before(async () => {
  dir = await mkdtemp(join(tmpdir(), "patpush-uploads-"));
  server = createServer((req, res) => {
    receiveUpload(req, {
      maxFileBytes,
      maxFiles: 2,
      tmpDir: dir,
      verifyAuthenticator: (value) => value === VALID,
    })
      .then(
        (files) => {
          lastResult = { files };
          res.writeHead(200).end();
        },
        (error: unknown) => {
          lastResult = { error };
          if (error instanceof UploadAbortedError) return;
          const status = error instanceof HttpError ? error.status : 500;
          res.writeHead(status, error instanceof HttpError ? error.headers : {}).end();
        },
      )
      .finally(() => markSettled());
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  baseUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});

after(async () => {
  server.closeAllConnections();
  await new Promise<void>((resolve) => server.close(() => resolve()));
  await rm(dir, { recursive: true, force: true });
});

beforeEach(async () => {
  lastResult = {};
  maxFileBytes = MAX_FILE_BYTES;
  settled = new Promise((resolve) => (markSettled = resolve));
  for (const name of await readdir(dir)) await rm(join(dir, name), { force: true });
});

function form(entries: [string, string | Blob, string?][]): FormData {
  const body = new FormData();
  for (const [name, value, filename] of entries) {
    if (typeof value === "string") body.append(name, value);
    else body.append(name, value, filename);
  }
  return body;
}

function errorOf(): HttpError {
  assert.ok(
    lastResult.error instanceof HttpError,
    `expected an HttpError, got ${String(lastResult.error)}`,
  );
  return lastResult.error;
}

describe("receive upload", () => {
  it("saves files after a valid authenticator", async () => {
    const text = new Blob(["first line\nsecond line\n"], { type: "text/plain" });
    const response = await fetch(baseUrl, {
      method: "POST",
      body: form([
        ["_authenticator", VALID],
        ["file", text, "notes.txt"],
      ]),
    });

    assert.equal(response.status, 200);
    const [file] = lastResult.files ?? [];
    assert.equal(lastResult.files?.length, 1);
    assert.equal(file?.filename, "notes.txt");
    assert.equal(file?.declaredType, "text/plain");
    assert.equal(file?.sizeBytes, 23);
    assert.equal(file?.head.toString(), "first line\nsecond line\n");
    assert.equal(await readFile(file?.tmpPath ?? "", "utf8"), "first line\nsecond line\n");
  });

  it("rejects a wrong authenticator unwritten", async () => {
    const response = await fetch(baseUrl, {
      method: "POST",
      body: form([
        ["_authenticator", "b".repeat(64)],
        ["file", new Blob(["x"]), "a.txt"],
      ]),
    });

    assert.equal(response.status, 403);
    assert.equal(
      errorOf().message,
      "missing or invalid _authenticator; reload the page and try again",
    );
    assert.deepEqual(await readdir(dir), []);
  });

  it("rejects a file before the authenticator", async () => {
    const response = await fetch(baseUrl, {
      method: "POST",
      body: form([
        ["file", new Blob(["x"]), "a.txt"],
        ["_authenticator", VALID],
      ]),
    });

    assert.equal(response.status, 403);
    assert.deepEqual(await readdir(dir), []);
  });

  it("rejects an oversized file and deletes it", async () => {
    const response = await fetch(baseUrl, {
      method: "POST",
      body: form([
        ["_authenticator", VALID],
        ["file", new Blob(["x".repeat(2048)]), "big.txt"],
      ]),
    });

    assert.equal(response.status, 413);
    assert.equal(errorOf().message, "big.txt is larger than 1024 bytes");
    assert.deepEqual(await readdir(dir), []);
  });

  it("rejects too many files", async () => {
    const file = (): Blob => new Blob(["x"]);
    const response = await fetch(baseUrl, {
      method: "POST",
      body: form([
        ["_authenticator", VALID],
        ["file", file(), "1.txt"],
        ["file", file(), "2.txt"],
        ["file", file(), "3.txt"],
      ]),
    });

    assert.equal(response.status, 413);
    assert.equal(errorOf().message, "too many files; upload at most 2 at once");
    assert.deepEqual(await readdir(dir), []);
  });

  it("skips an empty file input", async () => {
    const response = await fetch(baseUrl, {
      method: "POST",
      body: form([
        ["_authenticator", VALID],
        ["file", new Blob([]), ""],
      ]),
    });

    assert.equal(response.status, 200);
    assert.deepEqual(lastResult.files, []);
  });

  it("rejects a body that is not multipart", async () => {
    const response = await fetch(baseUrl, {
      method: "POST",
      body: "a=1",
      headers: { "content-type": "text/plain" },
    });

    assert.equal(response.status, 415);
    assert.equal(errorOf().message, "expected a multipart/form-data upload, got text/plain");
  });

  it("rejects a urlencoded form", async () => {
    const response = await fetch(baseUrl, {
      method: "POST",
      body: new URLSearchParams({ _authenticator: VALID, file: "a.txt" }),
    });

    assert.equal(response.status, 415);
    assert.equal(
      errorOf().message,
      "expected a multipart/form-data upload, got application/x-www-form-urlencoded",
    );
  });

  it("rejects multipart without boundary", async () => {
    const response = await fetch(baseUrl, {
      method: "POST",
      body: "x",
      headers: { "content-type": "multipart/form-data" },
    });

    assert.equal(response.status, 403);
    assert.equal(
      errorOf().message,
      "missing or invalid _authenticator; reload the page and try again",
    );
  });

  it("rejects a malformed body after authenticator", async () => {
    const boundary = "patpush-test-boundary";
    const response = await fetch(baseUrl, {
      method: "POST",
      body: [
        `--${boundary}`,
        'Content-Disposition: form-data; name="_authenticator"',
        "",
        VALID,
        `--${boundary}`,
        'Content-Disposition: form-data; name="file"; filename="cut.txt"',
        "",
        "the body ends without a closing boundary",
      ].join("\r\n"),
      headers: { "content-type": `multipart/form-data; boundary=${boundary}` },
    });

    assert.equal(response.status, 400);
    assert.equal(errorOf().message, "the multipart body is malformed");
    assert.deepEqual(await readdir(dir), []);
  });

  it("rejects a body without authenticator", async () => {
    const response = await fetch(baseUrl, {
      method: "POST",
      body: form([["note", "no file"]]),
    });

    assert.equal(response.status, 403);
    assert.equal(
      errorOf().message,
      "missing or invalid _authenticator; reload the page and try again",
    );
  });
});

describe("receive upload size limit", () => {
  it("accepts a file of exactly the limit", async () => {
    const response = await fetch(baseUrl, {
      method: "POST",
      body: form([
        ["_authenticator", VALID],
        ["file", new Blob(["x".repeat(MAX_FILE_BYTES)]), "exact.txt"],
      ]),
    });

    assert.equal(response.status, 200);
    const [file] = lastResult.files ?? [];
    assert.equal(file?.sizeBytes, MAX_FILE_BYTES);
    assert.equal((await stat(file?.tmpPath ?? "")).size, MAX_FILE_BYTES);
  });

  it("rejects one byte over the limit", async () => {
    const response = await fetch(baseUrl, {
      method: "POST",
      body: form([
        ["_authenticator", VALID],
        ["file", new Blob(["x".repeat(MAX_FILE_BYTES + 1)]), "over.txt"],
      ]),
    });

    assert.equal(response.status, 413);
    assert.equal(errorOf().message, `over.txt is larger than ${MAX_FILE_BYTES} bytes`);
    assert.deepEqual(await readdir(dir), []);
  });
});

describe("receive upload abort", () => {
  it("deletes the partial file and rejects", async () => {
    maxFileBytes = 1024 * 1024;
    const boundary = "patpush-test-boundary";
    const socket = connect(Number(new URL(baseUrl).port), "127.0.0.1");
    socket.on("error", () => {});
    socket.write(
      [
        "POST / HTTP/1.1",
        "Host: 127.0.0.1",
        `Content-Type: multipart/form-data; boundary=${boundary}`,
        "Content-Length: 1000000",
        "",
        `--${boundary}`,
        'Content-Disposition: form-data; name="_authenticator"',
        "",
        VALID,
        `--${boundary}`,
        'Content-Disposition: form-data; name="file"; filename="partial.txt"',
        "",
        "x".repeat(50 * 1024),
      ].join("\r\n"),
    );

    const savedBytes = async (): Promise<number> => {
      const [name] = await readdir(dir);
      if (name === undefined) return 0;
      return (await stat(join(dir, name)).catch(() => ({ size: 0 }))).size;
    };
    await waitUntil(async () => (await savedBytes()) > 0, "the partial file on disk");
    socket.destroy();

    await waitFor(settled, "receiveUpload to settle after the abort");
    assert.ok(lastResult.error instanceof UploadAbortedError);
    assert.equal(lastResult.error.status, 400);
    assert.equal(
      lastResult.error.message,
      "the client closed the connection before the upload finished",
    );
    assert.deepEqual(await readdir(dir), []);
  });
});
