import assert from "node:assert/strict";
import { mkdtemp, readdir, readFile, rm } from "node:fs/promises";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, beforeEach, describe, it } from "node:test";
import { HttpError } from "./http.ts";
import { receiveUpload, type ReceivedFile } from "./uploads.ts";

const VALID = "a".repeat(64);

let dir: string;
let server: Server;
let baseUrl: string;
let lastResult: { files?: ReceivedFile[]; error?: unknown };

before(async () => {
  dir = await mkdtemp(join(tmpdir(), "patpush-uploads-"));
  server = createServer((req, res) => {
    receiveUpload(req, {
      maxFileBytes: 1024,
      maxFiles: 2,
      tmpDir: dir,
      verifyAuthenticator: (value) => value === VALID,
    }).then(
      (files) => {
        lastResult = { files };
        res.writeHead(200).end();
      },
      (error: unknown) => {
        lastResult = { error };
        const status = error instanceof HttpError ? error.status : 500;
        res.writeHead(status, error instanceof HttpError ? error.headers : {}).end();
      },
    );
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
    assert.equal(errorOf().message, "expected a multipart/form-data upload");
  });
});
