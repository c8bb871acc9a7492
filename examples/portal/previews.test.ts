import assert from "node:assert/strict";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import sharp from "sharp";
import type { PortalDocument } from "./documents.ts";
import { makePreview, PREVIEW_LINES, readFirstLines, THUMBNAIL_MAX_PX } from "./previews.ts";

let dir: string;

before(async () => {
  dir = await mkdtemp(join(tmpdir(), "patpush-previews-"));
});

after(async () => {
  await rm(dir, { recursive: true, force: true });
});

function documentFor(filePath: string, kind: "image" | "text", mediaType: string): PortalDocument {
  return {
    id: 1,
    owner: "alice",
    filename: "f",
    kind,
    mediaType,
    sizeBytes: 0,
    filePath,
    createdAt: new Date(),
  };
}

describe("image preview", () => {
  it("fits a wide PNG into the box", async () => {
    const source = join(dir, "wide.png");
    await sharp({ create: { width: 800, height: 400, channels: 3, background: "#2463eb" } })
      .png()
      .toFile(source);

    const preview = await makePreview(documentFor(source, "image", "image/png"), dir);

    assert.equal(preview.kind, "image");
    if (preview.kind !== "image") return;
    assert.equal(preview.width, THUMBNAIL_MAX_PX);
    assert.equal(preview.height, THUMBNAIL_MAX_PX / 2);
    const meta = await sharp(preview.thumbnailPath).metadata();
    assert.equal(meta.format, "png");
    assert.equal(meta.width, THUMBNAIL_MAX_PX);
    assert.equal(meta.height, THUMBNAIL_MAX_PX / 2);
  });

  it("never enlarges a small image", async () => {
    const source = join(dir, "small.jpg");
    await sharp({ create: { width: 40, height: 30, channels: 3, background: "#ff0000" } })
      .jpeg()
      .toFile(source);

    const preview = await makePreview(documentFor(source, "image", "image/jpeg"), join(dir));

    assert.equal(preview.kind, "image");
    if (preview.kind !== "image") return;
    assert.equal(preview.width, 40);
    assert.equal(preview.height, 30);
  });

  it("reports an undecodable image", async () => {
    const source = join(dir, "broken.png");
    await writeFile(source, Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 1, 2, 3]));

    const preview = await makePreview(documentFor(source, "image", "image/png"), dir);

    assert.equal(preview.kind, "failed");
    if (preview.kind !== "failed") return;
    assert.match(preview.reason, /^the image could not be read \(/);
  });
});

describe("text preview", () => {
  it("keeps the first ten lines", async () => {
    const source = join(dir, "long.txt");
    const lines = Array.from({ length: 25 }, (_, i) => `line ${i + 1}`);
    await writeFile(source, lines.join("\r\n"));

    const preview = await makePreview(documentFor(source, "text", "text/plain"), dir);

    assert.deepEqual(preview, {
      kind: "text",
      lines: lines.slice(0, PREVIEW_LINES),
      truncated: true,
    });
  });

  it("keeps markup as plain text", async () => {
    const source = join(dir, "short.md");
    await writeFile(source, "# Title\n<script>alert(1)</script>\n");

    const result = await readFirstLines(source);

    assert.deepEqual(result, { lines: ["# Title", "<script>alert(1)</script>"], truncated: false });
  });

  it("reads an empty file as no lines", async () => {
    const source = join(dir, "empty.txt");
    await writeFile(source, "");

    assert.deepEqual(await readFirstLines(source), { lines: [], truncated: false });
  });

  it("marks a file past the read limit", async () => {
    const source = join(dir, "one-long-line.txt");
    await writeFile(source, "x".repeat(70 * 1024));

    const result = await readFirstLines(source);

    assert.equal(result.truncated, true);
    assert.equal(result.lines.length, 1);
    assert.equal(result.lines[0]?.endsWith("…"), true);
  });
});
