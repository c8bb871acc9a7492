import { z } from "zod";
import { PatpushError } from "../../protocol/errors.ts";

/** Default port of the portal. */
export const DEFAULT_PORTAL_PORT = 8480;

/** Default port of the push server. */
export const DEFAULT_PUSH_PORT = 8481;

/** Default upload limit per file, in bytes (10 MiB). */
export const DEFAULT_MAX_UPLOAD_BYTES = 10 * 1024 * 1024;

/** Options of the demo: the portal, the push server and the task runner in one process. */
export const demoConfigSchema = z
  .object({
    /** Port of the portal; 0 picks a free one. @defaultValue 8480 */
    portalPort: z.number().int().min(0).max(65535).default(DEFAULT_PORTAL_PORT),
    /**
     * Port of the push server; 0 picks a free one. Any other value must differ
     * from portalPort. @defaultValue 8481
     */
    pushPort: z.number().int().min(0).max(65535).default(DEFAULT_PUSH_PORT),
    /** Address both servers listen on. @defaultValue "127.0.0.1" */
    host: z.string().min(1).default("127.0.0.1"),
    /** Folder for uploads and thumbnails; a fresh temporary folder, removed on close, when absent. */
    dataDir: z.string().min(1).optional(),
    /** Simulated slow work in the worker view, in milliseconds. @defaultValue 1500 */
    previewDelayMs: z.number().int().min(0).max(600_000).default(1500),
    /** Largest uploaded file, in bytes; larger ones get 413. @defaultValue 10 MiB */
    maxUploadBytes: z.number().int().positive().default(DEFAULT_MAX_UPLOAD_BYTES),
    /** Maximum number of files in one upload. @defaultValue 10 */
    maxFilesPerUpload: z.number().int().positive().max(100).default(10),
    /** Build dist/patpush.js at startup when it is missing or stale. @defaultValue true */
    buildBundle: z.boolean().default(true),
  })
  .strict()
  .refine((config) => config.pushPort === 0 || config.pushPort !== config.portalPort, {
    message: "must differ from portalPort, because each server needs its own port",
    path: ["pushPort"],
  });

export type DemoConfig = z.infer<typeof demoConfigSchema>;
export type DemoConfigInput = z.input<typeof demoConfigSchema>;

/** Thrown when a port the demo should listen on is taken. */
export class PortInUseError extends PatpushError {
  readonly server: "portal" | "push";
  readonly port: number;

  constructor(server: "portal" | "push", host: string, port: number, cause?: unknown) {
    super("PATPUSH_PORT_IN_USE", `${server} port ${port} on ${host} is already in use`, { cause });
    this.name = "PortInUseError";
    this.server = server;
    this.port = port;
  }
}
