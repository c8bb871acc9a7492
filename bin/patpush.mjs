#!/usr/bin/env node
// Registers tsx so Node can load the TypeScript sources, then runs the CLI.
import { register } from "tsx/esm/api";

register();
await import("../cli/patpush.ts");
