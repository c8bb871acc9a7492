/** Job data of the bare BullMQ floor: a ready-made POST, with no credentials sealed. */
export interface BareJobData {
  url: string;
  headers: Record<string, string>;
  /** URL-encoded form body. */
  body: string;
}

/** Queue name of the bare BullMQ floor. */
export const BARE_QUEUE_NAME = "bare";
