/**
 * Base class of every error patpush throws on purpose. The `code` is stable
 * (`PATPUSH_…`) and listed in docs/errors.md, so callers branch on it rather
 * than on the message text.
 */
export class PatpushError extends Error {
  readonly code: string;

  constructor(code: string, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = "PatpushError";
    this.code = code;
  }
}
