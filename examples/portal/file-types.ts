import { extname } from "node:path";

/** Kind of preview the portal makes: a thumbnail for images, the first lines for text. */
export type DocumentKind = "image" | "text";

/** The type the portal settled on for an uploaded file. */
export interface FileType {
  kind: DocumentKind;
  mediaType: string;
}

/** Number of leading bytes that detectFileType needs. */
export const SNIFF_BYTES = 8192;

/** Accepted uploads, for the form's `accept` attribute and for error messages. */
export const ACCEPTED_UPLOADS = ".txt,.md,.csv,text/*,image/png,image/jpeg,image/gif,image/webp";
export const ACCEPTED_UPLOADS_TEXT =
  "a text file (.txt, .md, .csv) or a PNG, JPEG, GIF or WebP image";

const TEXT_EXTENSIONS: Record<string, string> = {
  ".txt": "text/plain",
  ".md": "text/markdown",
  ".csv": "text/csv",
};

function startsWith(head: Buffer, bytes: readonly number[], offset = 0): boolean {
  return bytes.every((byte, i) => head[offset + i] === byte);
}

/** Returns the image type named by the file's magic number, or undefined. */
function sniffImage(head: Buffer): string | undefined {
  if (startsWith(head, [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a])) return "image/png";
  if (startsWith(head, [0xff, 0xd8, 0xff])) return "image/jpeg";
  if (
    head
      .subarray(0, 6)
      .toString("latin1")
      .match(/^GIF8[79]a$/)
  )
    return "image/gif";
  if (
    head.subarray(0, 4).toString("latin1") === "RIFF" &&
    head.subarray(8, 12).toString("latin1") === "WEBP"
  ) {
    return "image/webp";
  }
  return undefined;
}

/**
 * Decides what an upload is from its name, the browser's declared type and
 * its first SNIFF_BYTES bytes. Images are recognised by content alone, so a
 * renamed file cannot pass as an image. Text needs a text extension or a
 * `text/*` type and no NUL byte in its head. Returns undefined for anything else.
 */
export function detectFileType(
  filename: string,
  declaredType: string,
  head: Buffer,
): FileType | undefined {
  const image = sniffImage(head);
  if (image !== undefined) return { kind: "image", mediaType: image };

  const byExtension = TEXT_EXTENSIONS[extname(filename).toLowerCase()];
  const declared = declaredType.toLowerCase().split(";")[0]?.trim() ?? "";
  const declaredText = declared.startsWith("text/") ? declared : undefined;
  const mediaType = byExtension ?? declaredText;

  if (mediaType === undefined || head.includes(0)) return undefined;
  return { kind: "text", mediaType };
}
