import { open } from "node:fs/promises";
import { join } from "node:path";
import sharp from "sharp";
import type { PortalDocument, Preview } from "./documents.ts";

/** Largest width and height of a thumbnail, in pixels. */
export const THUMBNAIL_MAX_PX = 240;

/** Number of lines a text preview shows. */
export const PREVIEW_LINES = 10;

/** Bytes read from the start of a text file to find its first lines. */
const TEXT_HEAD_BYTES = 64 * 1024;

/** Characters kept of each preview line; longer lines end with an ellipsis. */
const MAX_LINE_CHARS = 500;

/**
 * Writes a PNG thumbnail of the image at `sourcePath` that fits in
 * THUMBNAIL_MAX_PX x THUMBNAIL_MAX_PX, turned upright by its EXIF orientation
 * and never enlarged. Of an animated GIF or WebP only the first frame is used.
 */
export async function makeThumbnail(
  sourcePath: string,
  targetPath: string,
): Promise<{ width: number; height: number }> {
  const info = await sharp(sourcePath, { animated: false })
    .rotate()
    .resize({
      width: THUMBNAIL_MAX_PX,
      height: THUMBNAIL_MAX_PX,
      fit: "inside",
      withoutEnlargement: true,
    })
    .png()
    .toFile(targetPath);
  return { width: info.width, height: info.height };
}

/**
 * Reads the first `count` lines of a UTF-8 text file. Only the first 64 KiB
 * are read, and invalid UTF-8 becomes U+FFFD. `truncated` is true when the
 * file goes on past the returned lines.
 */
export async function readFirstLines(
  path: string,
  count: number = PREVIEW_LINES,
): Promise<{ lines: string[]; truncated: boolean }> {
  const file = await open(path, "r");
  let text: string;
  let moreBytes: boolean;
  try {
    // Reading one byte past the limit shows whether the file goes on.
    const buffer = Buffer.alloc(TEXT_HEAD_BYTES + 1);
    const { bytesRead } = await file.read(buffer, 0, buffer.length, 0);
    moreBytes = bytesRead > TEXT_HEAD_BYTES;
    text = new TextDecoder("utf-8").decode(
      buffer.subarray(0, Math.min(bytesRead, TEXT_HEAD_BYTES)),
    );
  } finally {
    await file.close();
  }

  const allLines = text.split(/\r\n|\n|\r/);
  if (allLines.at(-1) === "") allLines.pop();

  const lines = allLines.slice(0, count).map((line) => {
    return line.length > MAX_LINE_CHARS ? `${line.slice(0, MAX_LINE_CHARS)}…` : line;
  });
  const truncated = allLines.length > count || moreBytes;
  return { lines, truncated };
}

/**
 * Makes the preview of a document: a thumbnail in the document's folder for
 * an image, the first lines for a text. A file that sharp cannot decode gives
 * a `failed` preview with the reason, so the page shows it instead of waiting.
 */
export async function makePreview(document: PortalDocument, folder: string): Promise<Preview> {
  if (document.kind === "text") {
    return { kind: "text", ...(await readFirstLines(document.filePath)) };
  }

  const thumbnailPath = join(folder, "thumbnail.png");
  try {
    const size = await makeThumbnail(document.filePath, thumbnailPath);
    return { kind: "image", thumbnailPath, mediaType: "image/png", ...size };
  } catch (err) {
    const detail = err instanceof Error ? err.message : String(err);
    return { kind: "failed", reason: `the image could not be read (${detail})` };
  }
}
