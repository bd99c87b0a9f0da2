// Prepends where a generated file comes from, so nobody edits it by hand.
// Usage: node scripts/banner.mjs <file>
import { readFileSync, writeFileSync } from "node:fs";

const [file] = process.argv.slice(2);
const banner =
  "// Generated from the server's OpenAPI document (static/openapi.json, served at\n" +
  "// /api/schema/) by `npm run schema`; a test fails when it is out of date.\n";
const text = readFileSync(file, "utf8");
if (!text.startsWith(banner)) writeFileSync(file, banner + text);
