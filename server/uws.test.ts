import assert from "node:assert/strict";
import { createRequire } from "node:module";
import { describe, it } from "node:test";
import { PatpushError } from "../protocol/errors.ts";
import { captureLogs } from "./test-support.ts";
import { loadUws, locateUwsBinary } from "./uws.ts";

const require = createRequire(import.meta.url);

describe("loadUws", () => {
  it("loads the native binary", () => {
    const logs = captureLogs();
    const uws = loadUws(logs.logger);
    const binary = locateUwsBinary();

    assert.equal(typeof uws.App, "function");
    assert.match(String(uws.App), /\[native code\]/);
    assert.match(binary.path, /binaries\/uws_\w+_\w+_\d+\.node$/);
    assert.ok(require.cache[binary.path], "the .node file is in the module cache");
  });

  it("never loads the ws-based fallback", () => {
    loadUws(captureLogs().logger);
    const fallback = Object.keys(require.cache).filter((path) =>
      /uws-js-unofficial[\\/](dist|src)[\\/]/.test(path),
    );
    assert.deepEqual(fallback, []);
  });

  it("logs the binary and version", () => {
    const logs = captureLogs();
    loadUws(logs.logger);

    const record = logs.records().find((r) => r.msg === "uWS binary loaded");
    assert.ok(record, "a 'uWS binary loaded' line is logged");
    assert.equal(record.level, 30);
    const expected = `uws_${process.platform}_${process.arch}_${process.versions.modules}.node`;
    assert.equal(record.binary, `binaries/${expected}`);
    assert.equal(record.uwsVersion, "20.30.0-unofficial.0");
  });

  it("throws for an unknown ABI", () => {
    const binary = locateUwsBinary("1");
    assert.throws(
      () => loadUws(captureLogs().logger, { abi: "1" }),
      (error: unknown) => {
        assert.ok(error instanceof PatpushError);
        assert.equal(error.code, "PATPUSH_UWS_UNAVAILABLE");
        assert.ok(error.message.includes(binary.path), error.message);
        assert.ok(error.message.includes("(ABI 1)"), error.message);
        assert.match(error.message, new RegExp(`Node ABIs [\\d, ]*${process.versions.modules}`));
        assert.ok(error.cause instanceof Error);
        return true;
      },
    );
  });
});
