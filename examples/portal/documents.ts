import { mkdir, rename } from "node:fs/promises";
import { join } from "node:path";
import type { DocumentKind } from "./file-types.ts";

/** A finished preview, or the reason none could be made. */
export type Preview =
  | { kind: "image"; thumbnailPath: string; mediaType: string; width: number; height: number }
  | { kind: "text"; lines: string[]; truncated: boolean }
  | { kind: "failed"; reason: string };

/** An uploaded file and its preview, owned by the user who uploaded it. */
export interface PortalDocument {
  id: number;
  owner: string;
  filename: string;
  kind: DocumentKind;
  mediaType: string;
  sizeBytes: number;
  /** Path of the stored upload. */
  filePath: string;
  createdAt: Date;
  /** Absent until the worker view has made the preview. */
  preview?: Preview;
}

/** Input of DocumentStore.create: an uploaded file and what the upload handler detected. */
export interface NewDocument {
  owner: string;
  filename: string;
  kind: DocumentKind;
  mediaType: string;
  sizeBytes: number;
  /** A file the store moves into the document's folder. */
  uploadedPath: string;
}

/**
 * Documents in memory, with their files under `<dataDir>/docs/<id>/`. Ids
 * count up from 1 per store.
 */
export class DocumentStore {
  readonly #documents = new Map<number, PortalDocument>();
  readonly #dataDir: string;
  #lastId = 0;

  constructor(dataDir: string) {
    this.#dataDir = dataDir;
  }

  /** Returns the folder that contains a document's original and its thumbnail. */
  folderOf(id: number): string {
    return join(this.#dataDir, "docs", String(id));
  }

  /** Moves the uploaded file into a new document's folder and stores the document. */
  async create(input: NewDocument): Promise<PortalDocument> {
    const id = ++this.#lastId;
    const folder = this.folderOf(id);
    await mkdir(folder, { recursive: true });

    const filePath = join(folder, "original");
    await rename(input.uploadedPath, filePath);

    const document: PortalDocument = {
      id,
      owner: input.owner,
      filename: input.filename,
      kind: input.kind,
      mediaType: input.mediaType,
      sizeBytes: input.sizeBytes,
      filePath,
      createdAt: new Date(),
    };
    this.#documents.set(id, document);
    return document;
  }

  /** Returns the document when it exists and `user` owns it; other users get undefined. */
  findOwned(id: number, user: string): PortalDocument | undefined {
    const document = this.#documents.get(id);
    return document?.owner === user ? document : undefined;
  }

  /** Returns the user's documents, newest first. */
  listFor(user: string): PortalDocument[] {
    return [...this.#documents.values()].filter((doc) => doc.owner === user).reverse();
  }

  /** Stores a finished preview on a document. */
  setPreview(id: number, preview: Preview): void {
    const document = this.#documents.get(id);
    if (document !== undefined) document.preview = preview;
  }
}
