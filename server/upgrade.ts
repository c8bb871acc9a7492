/**
 * The socket upgrade: the per-socket state that uWS keeps as user data, and
 * the upgrade handler that runs the admission checks and then upgrades or
 * writes the rejection.
 */
import { randomBytes } from "node:crypto";
import type {
  HttpRequest,
  HttpResponse,
  us_socket_context_t,
} from "@trufflesuite/uws-js-unofficial";
import type { MessageId } from "../protocol/message-id.ts";
import type { Admission } from "./admission.ts";
import type { AuthIdentity } from "./auth.ts";
import { writeRejection } from "./rejection.ts";
import type { RevalidatedConnection } from "./revalidation.ts";

/**
 * Per-socket state that uWS keeps as the socket's user data. Every idle socket
 * pays for each field, so it contains nothing that can be derived. Log lines
 * name the socket with connectionFields(), and socketTopics() returns its topics.
 */
export interface Connection extends AuthIdentity, RevalidatedConnection {
  conn: string;
  /** Remote address of the upgrade. The socket takes one of its maxSocketsPerIp slots. */
  ip: string;
  /** The `last` query parameter of the upgrade: the id of the last message the client saw. */
  last: MessageId | undefined;
  /** True once shutdown waits for this socket's send buffer to drain before closing it. */
  draining: boolean;
  /** True once the welcome frame was sent. */
  welcomed: boolean;
}

/** Upgrades sockets that pass admission, and rejects the others with a JSON body. */
export class SocketUpgrade {
  readonly #admission: Admission;
  /** Random prefix of connection ids, so ids from different server runs differ in the logs. */
  readonly #connPrefix = randomBytes(3).toString("hex");
  #connCount = 0;

  constructor(admission: Admission) {
    this.#admission = admission;
  }

  /** The `upgrade` handler of the socket route. */
  onUpgrade(res: HttpResponse, req: HttpRequest, context: us_socket_context_t): void {
    // uWS requires an abort handler before the handler returns without responding.
    let aborted = false;
    res.onAborted(() => {
      aborted = true;
    });
    // HttpRequest is valid only during this call, so read every header now.
    const ip = this.#admission.clientAddress(res, req);
    const origin = req.getHeader("origin");
    const cookieHeader = req.getHeader("cookie");
    const key = req.getHeader("sec-websocket-key");
    const extensions = req.getHeader("sec-websocket-extensions");
    const query = req.getQuery();

    const reject = (error: unknown) => {
      const rejection = this.#admission.logRejection(error, ip, origin, "upgrade");
      if (!aborted) res.cork(() => writeRejection(res, rejection));
    };

    this.#admission.admitSocket(ip, origin, cookieHeader, query).then((admitted) => {
      if (aborted) {
        this.#admission.abandon(admitted);
        return;
      }
      try {
        this.#admission.complete(admitted);
      } catch (error) {
        reject(error);
        return;
      }

      const { identity, last, sessionCookies } = admitted;
      const conn = `${this.#connPrefix}-${++this.#connCount}`;
      const connection: Connection = {
        ...identity,
        conn,
        ip,
        sessionCookies,
        closed: false,
        revalidateAtS: undefined,
        last,
        draining: false,
        welcomed: false,
      };
      // patpush defines no subprotocol, so the response names none. uWS calls the open
      // handler within upgrade(), so the address slot passes to the socket at once.
      res.cork(() => res.upgrade(connection, key, "", extensions, context));
    }, reject);
  }
}
