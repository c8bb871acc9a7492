import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { ClientAddressResolver, normalizeAddress } from "./client-address.ts";

describe("normalizeAddress", () => {
  it("keeps IPv4", () => {
    assert.equal(normalizeAddress("203.0.113.7"), "203.0.113.7");
  });

  it("unmaps IPv4-mapped IPv6", () => {
    assert.equal(normalizeAddress("::ffff:203.0.113.7"), "203.0.113.7");
    assert.equal(normalizeAddress("::FFFF:127.0.0.1"), "127.0.0.1");
  });

  it("compresses IPv6", () => {
    assert.equal(normalizeAddress("0000:0000:0000:0000:0000:0000:0000:0001"), "::1");
    assert.equal(normalizeAddress("2001:DB8:0:0:0:0:0:1"), "2001:db8::1");
  });

  it("rejects non-addresses", () => {
    for (const text of ["", "localhost", "1.2.3", "203.0.113.7:80", "[::1]", "unknown"]) {
      assert.equal(normalizeAddress(text), undefined, text);
    }
  });
});

describe("client address", () => {
  const resolver = new ClientAddressResolver(["10.0.0.1", "10.0.0.2", "::1"]);

  it("ignores the header of an untrusted peer", () => {
    assert.equal(resolver.resolve("203.0.113.9", "198.51.100.1"), "203.0.113.9");
  });

  it("takes the entry a trusted proxy added", () => {
    assert.equal(resolver.resolve("10.0.0.1", "198.51.100.1"), "198.51.100.1");
  });

  it("skips forged entries on the left", () => {
    assert.equal(resolver.resolve("10.0.0.1", "1.1.1.1, 198.51.100.1"), "198.51.100.1");
  });

  it("skips trusted proxies in the chain", () => {
    assert.equal(resolver.resolve("10.0.0.1", "198.51.100.1, 10.0.0.2"), "198.51.100.1");
  });

  it("keeps the proxy on a bad entry", () => {
    assert.equal(resolver.resolve("10.0.0.1", "198.51.100.1, garbage"), "10.0.0.1");
    assert.equal(resolver.resolve("10.0.0.1", ""), "10.0.0.1");
    assert.equal(resolver.resolve("10.0.0.1", " , "), "10.0.0.1");
  });

  it("matches a mapped or long peer", () => {
    assert.equal(resolver.resolve("::ffff:10.0.0.1", "198.51.100.1"), "198.51.100.1");
    assert.equal(resolver.resolve("0:0:0:0:0:0:0:1", "198.51.100.2"), "198.51.100.2");
  });

  it("trusts nothing by default", () => {
    const none = new ClientAddressResolver([]);

    assert.equal(none.resolve("127.0.0.1", "198.51.100.1"), "127.0.0.1");
  });
});
