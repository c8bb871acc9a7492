import busboy from "busboy";
import { randomUUID } from "node:crypto";
import { createWriteStream } from "node:fs";
import { mkdir, rm } from "node:fs/promises";
import type { IncomingMessage } from "node:http";
import { join } from "node:path";
import type { Readable } from "node:stream";
import { pipeline } from "node:stream/promises";
import { AUTHENTICATOR_FIELD } from "./authenticator.ts";
import { SNIFF_BYTES } from "./file-types.ts";
import { HttpError, mediaTypeOf } from "./http.ts";

/** A file part of an upload, saved to a temporary path. */
export interface ReceivedFile {
  filename: string;
  /** The Content-Type the browser sent for the part; not trusted for images. */
  declaredType: string;
  tmpPath: string;
  sizeBytes: number;
  /** The first SNIFF_BYTES bytes, for type detection. */
  head: Buffer;
}

export interface ReceiveUploadOptions {
  /** Largest accepted file, in bytes; a larger one fails the upload with 413. */
  maxFileBytes: number;
  /** Maximum number of files in one upload; more fail it with 413. */
  maxFiles: number;
  /** Folder for the files while the upload is checked. */
  tmpDir: string;
  /** Returns true when the `_authenticator` field is valid for the sender's session. */
  verifyAuthenticator: (value: string) => boolean;
}

/** Saves one file part to `tmpPath`, keeping its head and counting its bytes. */
async function saveFilePart(stream: Readable, tmpPath: string, file: ReceivedFile): Promise<void> {
  const headChunks: Buffer[] = [];
  let headBytes = 0;

  const output = createWriteStream(tmpPath, { flags: "wx" });
  const closed = new Promise<void>((resolve) => output.once("close", () => resolve()));
  try {
    await pipeline(
      stream,
      async function* (source: AsyncIterable<Buffer>) {
        for await (const chunk of source) {
          file.sizeBytes += chunk.length;
          if (headBytes < SNIFF_BYTES) {
            headChunks.push(chunk.subarray(0, SNIFF_BYTES - headBytes));
            headBytes += Math.min(chunk.length, SNIFF_BYTES - headBytes);
          }
          yield chunk;
        }
      },
      output,
    );
  } catch (error) {
    // A destroyed pipeline can settle before the file is even opened, so a
    // caller that deletes it right away could run before it exists.
    await closed;
    throw error;
  }
  file.head = Buffer.concat(headChunks);
}

/** Deletes the temporary files of an upload that is not kept. */
export async function discardFiles(files: readonly { tmpPath: string }[]): Promise<void> {
  await Promise.all(files.map((file) => rm(file.tmpPath, { force: true })));
}

/**
 * The rejection of an upload whose client closed the connection before the
 * body ended. No response can reach that client.
 */
export class UploadAbortedError extends HttpError {
  constructor() {
    super(400, "the client closed the connection before the upload finished");
    this.name = "UploadAbortedError";
  }
}

function authenticatorError(): HttpError {
  return new HttpError(
    403,
    `missing or invalid ${AUTHENTICATOR_FIELD}; reload the page and try again`,
  );
}

/**
 * Creates the busboy parser. Throws HttpError 415 for a body that is not
 * multipart/form-data, and 403 when busboy rejects the Content-Type (e.g. no
 * boundary), because then no `_authenticator` can be read from the body.
 */
function createParser(req: IncomingMessage, options: ReceiveUploadOptions): busboy.Busboy {
  const type = mediaTypeOf(req);
  if (type !== "multipart/form-data") {
    const got = type || "no body type";
    throw new HttpError(415, `expected a multipart/form-data upload, got ${got}`);
  }
  try {
    return busboy({
      headers: req.headers,
      defParamCharset: "utf8",
      limits: {
        // busboy 1.6 emits 'limit' as soon as a file reaches `fileSize` bytes,
        // so one byte more lets a file of exactly maxFileBytes through.
        fileSize: options.maxFileBytes + 1,
        files: options.maxFiles,
        fields: 20,
        fieldSize: 4096,
      },
    });
  } catch {
    throw authenticatorError();
  }
}

/**
 * Receives a multipart/form-data upload and saves its files to `tmpDir`.
 *
 * The `_authenticator` field must come before the first file part, as it
 * does in the portal's form: a file part that arrives before a valid one
 * fails the upload with 403 before any byte of it is written. A body without
 * a valid one fails with 403 too, even when it has no file or is malformed.
 * Parts with an empty filename (a file input left empty) are skipped.
 *
 * On any failure every saved file is deleted and the promise rejects with an
 * HttpError: 415 for another body type, 413 over a limit, 400 for a body
 * malformed after a valid `_authenticator`, and UploadAbortedError when the
 * client disconnects before the body ends.
 */
export async function receiveUpload(
  req: IncomingMessage,
  options: ReceiveUploadOptions,
): Promise<ReceivedFile[]> {
  let parser: busboy.Busboy;
  try {
    parser = createParser(req, options);
  } catch (err) {
    req.resume();
    throw err;
  }
  await mkdir(options.tmpDir, { recursive: true });

  return new Promise((resolve, reject) => {
    const files: ReceivedFile[] = [];
    const writes: Promise<void>[] = [];
    const openStreams = new Set<Readable>();
    let authenticated = false;
    let settling = false;
    let failure: HttpError | undefined;

    // Runs once, after the parser finished or on the first failure.
    const settle = async (): Promise<void> => {
      if (settling) return;
      settling = true;
      const results = await Promise.allSettled(writes);
      const writeFailed = results.some((result) => result.status === "rejected");
      if (failure === undefined && !writeFailed) {
        resolve(files);
        return;
      }
      await discardFiles(files);
      reject(failure ?? new HttpError(500, "the upload could not be saved"));
    };

    const fail = (error: HttpError): void => {
      if (failure !== undefined || settling) return;
      failure = error;
      req.unpipe(parser);
      req.resume();
      for (const stream of openStreams) stream.destroy();
      void settle();
    };

    // A request that closes before its body was read to the end was aborted
    // by the client (or destroyed by a server timeout), and the parser would
    // wait for the rest forever.
    const onRequestClose = (): void => {
      if (!req.readableEnded) fail(new UploadAbortedError());
    };
    req.once("close", onRequestClose);

    parser.on("field", (name, value) => {
      if (name === AUTHENTICATOR_FIELD) authenticated = options.verifyAuthenticator(value);
    });

    parser.on("file", (_name, stream, info) => {
      if (failure !== undefined || !info.filename) {
        stream.resume();
        return;
      }
      if (!authenticated) {
        stream.resume();
        fail(authenticatorError());
        return;
      }

      const file: ReceivedFile = {
        filename: info.filename,
        declaredType: info.mimeType,
        tmpPath: join(options.tmpDir, randomUUID()),
        sizeBytes: 0,
        head: Buffer.alloc(0),
      };
      files.push(file);
      openStreams.add(stream);
      stream.on("limit", () => {
        fail(
          new HttpError(413, `${file.filename} is larger than ${options.maxFileBytes} bytes`, {
            Connection: "close",
          }),
        );
      });
      writes.push(
        saveFilePart(stream, file.tmpPath, file).finally(() => openStreams.delete(stream)),
      );
    });

    parser.on("filesLimit", () => {
      fail(
        new HttpError(413, `too many files; upload at most ${options.maxFiles} at once`, {
          Connection: "close",
        }),
      );
    });
    // Before a valid `_authenticator` a malformed body counts as one without it.
    parser.on("error", () => {
      const malformed = new HttpError(400, "the multipart body is malformed");
      fail(authenticated ? malformed : authenticatorError());
    });
    parser.on("close", () => {
      if (!authenticated) fail(authenticatorError());
      void settle();
    });

    req.pipe(parser);
    if (req.destroyed) onRequestClose();
  });
}
