/**
 * The client address of a request, which the per-address limits count: the
 * TCP peer, or behind a trusted proxy the address that the proxy appended
 * to `X-Forwarded-For`.
 */
import { isIP } from "node:net";

/**
 * Returns `address` in one canonical text form: an IPv4-mapped IPv6 address
 * as its IPv4 address, and any other IPv6 address compressed and lower-case.
 * Returns undefined when `address` is not an IP address.
 */
export function normalizeAddress(address: string): string | undefined {
  const version = isIP(address);
  if (version === 4) return address;
  if (version !== 6) return undefined;

  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(address);
  if (mapped?.[1] !== undefined && isIP(mapped[1]) === 4) return mapped[1];
  // The WHATWG URL serializer writes an IPv6 host compressed and in lower case.
  return new URL(`http://[${address}]/`).hostname.slice(1, -1);
}

/** Resolves the client address of requests from the TCP peer and `X-Forwarded-For`. */
export class ClientAddressResolver {
  readonly #trustedProxies: ReadonlySet<string>;

  /** `trustedProxies` lists the addresses of the proxies whose `X-Forwarded-For` counts. */
  constructor(trustedProxies: readonly string[]) {
    const normalized = trustedProxies.map((address) => normalizeAddress(address) ?? address);
    this.#trustedProxies = new Set(normalized);
  }

  /**
   * Returns the client address: the peer itself unless it is a trusted proxy.
   * From a trusted proxy, returns the right-most `X-Forwarded-For` entry that
   * is not a trusted proxy itself, because entries further left were written
   * by the client and anyone can forge them. A missing or invalid entry
   * leaves the proxy's own address, so the proxy's limits apply.
   */
  resolve(peerText: string, forwardedFor: string): string {
    const peer = normalizeAddress(peerText) ?? peerText;
    if (!this.#trustedProxies.has(peer) || forwardedFor === "") return peer;

    const entries = forwardedFor.split(",");
    let client = peer;
    for (let i = entries.length - 1; i >= 0; i -= 1) {
      const address = normalizeAddress((entries[i] as string).trim());
      if (address === undefined) return client;
      client = address;
      if (!this.#trustedProxies.has(address)) return address;
    }
    return client;
  }
}
