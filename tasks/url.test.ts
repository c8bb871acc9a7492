import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { TaskError } from "./errors.ts";
import { resolveTaskUrl } from "./url.ts";

const ALLOWED = ["http://p", "https://portal.example:8443"];

describe("task URL resolution", () => {
  const resolved: [url: string, contextUrl: string | undefined, expected: string][] = [
    ["/@@x", "http://p/a/doc", "http://p/a/doc/@@x"],
    ["@@x", "http://p/a/doc", "http://p/a/doc/@@x"],
    ["/@@x", "http://p/a/doc/", "http://p/a/doc/@@x"],
    ["@@x", "http://p/a/doc//", "http://p/a/doc/@@x"],
    ["/@@x?size=large", "http://p/a/doc?tab=1#top", "http://p/a/doc/@@x?size=large"],
    ["@@x", "http://p", "http://p/@@x"],
    ["/@@x", "http://p/", "http://p/@@x"],
    ["sub/@@x", "http://p/a/doc", "http://p/a/doc/sub/@@x"],
    ["http://p/other/@@x", undefined, "http://p/other/@@x"],
    ["http://p/other/@@x", "http://p/a/doc", "http://p/other/@@x"],
    ["HTTPS://Portal.Example:8443/y", undefined, "https://portal.example:8443/y"],
    ["/@@x", "https://portal.example:8443/a", "https://portal.example:8443/a/@@x"],
  ];
  for (const [url, contextUrl, expected] of resolved) {
    it(`resolves ${url} against ${contextUrl ?? "no context"}`, () => {
      assert.equal(resolveTaskUrl(url, contextUrl, ALLOWED), expected);
    });
  }

  const rejected: [url: string, contextUrl: string | undefined, code: string, message: RegExp][] = [
    ["ftp://p/x", undefined, "PATPUSH_TASK_URL_INVALID", /unsupported scheme "ftp:"/],
    [
      "javascript:alert(1)",
      "http://p/a",
      "PATPUSH_TASK_URL_INVALID",
      /unsupported scheme "javascript:"/,
    ],
    ["file:///etc/passwd", undefined, "PATPUSH_TASK_URL_INVALID", /unsupported scheme "file:"/],
    ["//evil.example/x", "http://p/a", "PATPUSH_TASK_URL_INVALID", /protocol-relative/],
    [
      "http://evil.example/x",
      undefined,
      "PATPUSH_TASK_URL_NOT_ALLOWED",
      /origin http:\/\/evil\.example is not allowed/,
    ],
    [
      "http://p:8080/x",
      undefined,
      "PATPUSH_TASK_URL_NOT_ALLOWED",
      /origin http:\/\/p:8080 is not allowed/,
    ],
    ["https://p/x", undefined, "PATPUSH_TASK_URL_NOT_ALLOWED", /origin https:\/\/p is not allowed/],
    [
      "/@@x",
      "http://evil.example/a",
      "PATPUSH_TASK_URL_NOT_ALLOWED",
      /origin http:\/\/evil\.example/,
    ],
    [
      "/@@x",
      undefined,
      "PATPUSH_TASK_URL_INVALID",
      /"\/@@x" is relative but contextUrl is missing/,
    ],
    ["@@x", "", "PATPUSH_TASK_URL_INVALID", /is relative but contextUrl is missing/],
    ["@@x", "/a/doc", "PATPUSH_TASK_URL_INVALID", /task contextUrl "\/a\/doc" is not a valid URL/],
    [
      "@@x",
      "ftp://p/a",
      "PATPUSH_TASK_URL_INVALID",
      /contextUrl uses the unsupported scheme "ftp:"/,
    ],
    [
      "http://u:secret@p/x",
      undefined,
      "PATPUSH_TASK_URL_INVALID",
      /contains a user name or password/,
    ],
    ["", "http://p/a", "PATPUSH_TASK_URL_INVALID", /task url is empty/],
  ];
  for (const [url, contextUrl, code, message] of rejected) {
    it(`rejects ${url || "an empty url"} against ${contextUrl ?? "no context"}`, () => {
      assert.throws(
        () => resolveTaskUrl(url, contextUrl, ALLOWED),
        (error: unknown) => {
          assert.ok(error instanceof TaskError);
          assert.equal(error.code, code);
          assert.match(error.message, message);
          return true;
        },
      );
    });
  }

  it("names the option to change", () => {
    assert.throws(() => resolveTaskUrl("http://evil.example/x", undefined, ALLOWED), {
      code: "PATPUSH_TASK_URL_NOT_ALLOWED",
      message:
        "task URL origin http://evil.example is not allowed (allowed: http://p, " +
        "https://portal.example:8443); add it to the tasks allowedOrigins option " +
        "or use a URL on an allowed origin",
    });
  });

  it("keeps passwords out of messages", () => {
    assert.throws(
      () => resolveTaskUrl("http://u:secret@p/x", undefined, ALLOWED),
      (error: Error) => {
        assert.doesNotMatch(error.message, /secret/);
        return true;
      },
    );
  });
});
