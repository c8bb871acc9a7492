import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { detectFileType } from "./file-types.ts";

const PNG = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0, 0, 0, 13]);
const JPEG = Buffer.from([0xff, 0xd8, 0xff, 0xe0, 0, 16]);
const GIF = Buffer.from("GIF89a\x01\x00", "latin1");
const WEBP = Buffer.concat([
  Buffer.from("RIFF"),
  Buffer.from([0, 0, 0, 0]),
  Buffer.from("WEBPVP8 "),
]);
const TEXT = Buffer.from("hello\nworld\n");

describe("file type detection", () => {
  it("recognises images by content", () => {
    assert.deepEqual(detectFileType("a.png", "image/png", PNG), {
      kind: "image",
      mediaType: "image/png",
    });
    assert.deepEqual(detectFileType("a.jpg", "image/jpeg", JPEG), {
      kind: "image",
      mediaType: "image/jpeg",
    });
    assert.deepEqual(detectFileType("a.gif", "image/gif", GIF), {
      kind: "image",
      mediaType: "image/gif",
    });
    assert.deepEqual(detectFileType("a.webp", "image/webp", WEBP), {
      kind: "image",
      mediaType: "image/webp",
    });
  });

  it("ignores a declared image type", () => {
    assert.equal(detectFileType("fake.png", "image/png", Buffer.from("<svg></svg>")), undefined);
  });

  it("accepts text by extension or type", () => {
    assert.deepEqual(detectFileType("notes.md", "application/octet-stream", TEXT), {
      kind: "text",
      mediaType: "text/markdown",
    });
    assert.deepEqual(detectFileType("data.CSV", "", TEXT), { kind: "text", mediaType: "text/csv" });
    assert.deepEqual(detectFileType("readme", "text/plain; charset=utf-8", TEXT), {
      kind: "text",
      mediaType: "text/plain",
    });
  });

  it("rejects binary data named as text", () => {
    assert.equal(
      detectFileType("notes.txt", "text/plain", Buffer.from([0x50, 0x4b, 0x03, 0x04, 0x00])),
      undefined,
    );
  });

  it("rejects unsupported types", () => {
    assert.equal(
      detectFileType("report.pdf", "application/pdf", Buffer.from("%PDF-1.7")),
      undefined,
    );
    assert.equal(detectFileType("logo.svg", "image/svg+xml", Buffer.from("<svg/>")), undefined);
  });
});
