import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { DEFAULT_RETURN_PATH, MAX_RETURN_PATH_CHARS, safeReturnPath } from "./http.ts";

const ORIGIN = "http://127.0.0.1:8480";

/** `came_from` values that must not lead anywhere but DEFAULT_RETURN_PATH, by what they try. */
const HOSTILE_RETURN_PATHS: readonly [string, string][] = [
  ["tab after the slash", "/\t/127.0.0.1:9/x"],
  ["newline after the slash", "/\n/evil.example/"],
  ["CR LF header injection", "/x\r\nSet-Cookie: a=b"],
  ["protocol-relative URL", "//evil.example/"],
  ["backslash after the slash", "/\\evil.example/"],
  ["backslash later", "/x\\..\\\\evil.example/"],
  ["absolute URL", "https://evil.example/"],
  ["javascript URL", "javascript:alert(1)"],
  ["dot segment to //", "/.//evil.example/"],
  ["dot-dot segment to //", "/..//evil.example/"],
  ["encoded dot-dot to //", "/%2e%2e//evil.example/"],
  ["space", "/x y"],
  ["NUL byte", "/x\u0000"],
  ["DEL character", "/x\u007f"],
  ["non-ASCII letters", "/workspace/ä"],
  ["full-width slash", "/\uff0fevil.example"],
  ["relative path", "workspace"],
  ["empty string", ""],
  ["too long", `/${"a".repeat(MAX_RETURN_PATH_CHARS)}`],
];

describe("safe return path", () => {
  for (const [name, value] of HOSTILE_RETURN_PATHS) {
    it(`rejects ${name}`, () => {
      assert.equal(safeReturnPath(value, ORIGIN), DEFAULT_RETURN_PATH);
    });
  }

  it("rejects a missing value", () => {
    assert.equal(safeReturnPath(null, ORIGIN), DEFAULT_RETURN_PATH);
    assert.equal(safeReturnPath(undefined, ORIGIN), DEFAULT_RETURN_PATH);
  });

  it("keeps a local path and query", () => {
    assert.equal(
      safeReturnPath("/workspace/docs/3/preview?x=1", ORIGIN),
      "/workspace/docs/3/preview?x=1",
    );
  });

  it("keeps percent-encoded characters", () => {
    assert.equal(safeReturnPath("/%09/evil.example/", ORIGIN), "/%09/evil.example/");
    assert.equal(safeReturnPath("/%2F/evil.example", ORIGIN), "/%2F/evil.example");
  });

  it("resolves dot segments and drops the fragment", () => {
    assert.equal(safeReturnPath("/a/../workspace#top", ORIGIN), "/workspace");
  });

  it("accepts the longest allowed path", () => {
    const value = `/${"a".repeat(MAX_RETURN_PATH_CHARS - 1)}`;
    assert.equal(safeReturnPath(value, ORIGIN), value);
  });
});
