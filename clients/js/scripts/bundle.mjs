// Bundles the package into one ES module for the demo page
// (static/chat-client.js, served at /chat-client.js and compiled into the
// server), and prints the package's size minified and gzipped. A test builds
// it again and compares it with what the server serves.
import { build } from "esbuild";
import { writeFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { gzipSync } from "node:zlib";

const root = fileURLToPath(new URL("..", import.meta.url));
export const STATIC_BUNDLE = fileURLToPath(new URL("../../../static/chat-client.js", import.meta.url));
const BANNER =
  "// @chat-server/client, bundled from clients/js by `npm run build`: do not edit.\n" +
  "// The demo page (static/index.html) imports it; a test fails when it is out of date.";

/** The package as one ES module: readable, or minified. */
export async function bundle({ minify = false } = {}) {
  const result = await build({
    absWorkingDir: root,
    entryPoints: ["src/index.ts"],
    bundle: true,
    format: "esm",
    target: "es2022",
    legalComments: "none",
    banner: minify ? {} : { js: BANNER },
    minify,
    write: false,
  });
  return result.outputFiles[0].text;
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  writeFileSync(STATIC_BUNDLE, await bundle());
  const minified = Buffer.from(await bundle({ minify: true }));
  console.log(`@chat-server/client: ${minified.length} bytes minified, ${gzipSync(minified, { level: 9 }).length} gzipped`);
}
