// Bundles the browser part (client + pat-push pattern) into one script that
// a page includes with <script src=".../patpush.js">.
import { build } from "esbuild";
import { fileURLToPath } from "node:url";

const root = fileURLToPath(new URL("..", import.meta.url));

await build({
  absWorkingDir: root,
  entryPoints: ["patterns/push/index.ts"],
  outfile: "dist/patpush.js",
  bundle: true,
  format: "iife",
  globalName: "patpush",
  platform: "browser",
  target: ["es2020"],
  sourcemap: true,
  minify: process.env.PATPUSH_MINIFY === "1",
  logLevel: "warning",
});

console.log("built dist/patpush.js");
