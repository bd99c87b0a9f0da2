// Every REST call of the package against the real server; the generated
// types checked against the schema the server serves; the bundle the server
// serves to the demo page checked against these sources.
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { mkdirSync, mkdtempSync, readFileSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { pathToFileURL } from "node:url";
import { test } from "node:test";
import { ApiError, Rest } from "../src/index.js";
import { register, withServer } from "./helpers.js";

test("every REST call: auth, users, chats, history pages and cursors, sends", async () =>
  withServer(async (server) => {
    const rest = new Rest({ baseUrl: server.url });
    const ann = await rest.register({ email: "ann@example.com", password: "correct horse", full_name: "Ann", nickname: "annie" });
    assert.deepEqual(Object.keys(ann).sort(), ["email", "full_name", "id", "nickname"]);
    const bob = await register(server, "bob");
    const tokens = await rest.login({ email: "ann@example.com", password: "correct horse" });
    const access = await rest.refresh(tokens.refresh);
    assert.match(access, /^[\w-]+\.[\w-]+\.[\w-]+$/);
    rest.auth = { access: async () => access, refreshed: async () => access };

    assert.deepEqual((await rest.searchUsers("bob")).map((u) => u.id), [bob.id]);
    const started = await rest.startChat(bob.id);
    assert.equal((await rest.startChat(bob.id)).id, started.id, "the existing chat");
    const sent = [];
    for (let i = 1; i <= 30; i++) sent.push(await rest.send(started.id, { content: `m${i}`, metadata: { i }, client_msg_id: `id-${i}` }));
    assert.deepEqual(sent.map((m) => m.seq), Array.from({ length: 30 }, (_, i) => i + 1));
    const retried = await rest.send(started.id, { content: "m1", metadata: { i: 1 }, client_msg_id: "id-1" });
    assert.equal(retried.id, sent[0]!.id, "a retried client_msg_id returns the original");

    const [listed] = await rest.chats();
    assert.equal(listed!.id, started.id);
    assert.deepEqual([listed!.last_seq, listed!.read_seq, listed!.unread_count], [30, 30, 0]);
    const page = await rest.history(started.id, { page: 2, page_size: 10 });
    assert.equal(page.count, 30);
    assert.deepEqual(page.results.map((m) => m.seq), [11, 12, 13, 14, 15, 16, 17, 18, 19, 20]);
    assert.ok(page.next && page.previous);
    assert.deepEqual((await rest.after(started.id, 25, 3)).map((m) => m.seq), [26, 27, 28]);
    assert.deepEqual((await rest.before(started.id, 3)).map((m) => m.seq), [1, 2]);
    assert.deepEqual(sent[4]!.metadata, { i: 5 });

    const refused = await rest.startChat(ann.id).catch((error: unknown) => error);
    assert.ok(refused instanceof ApiError);
    assert.equal(refused.status, 400);
    const missing = await rest.history(999_999).catch((error: unknown) => error);
    assert.ok(missing instanceof ApiError && missing.status === 404);

    await rest.logout(tokens.refresh);
    const afterLogout = await rest.refresh(tokens.refresh).catch((error: unknown) => error);
    assert.ok(afterLogout instanceof ApiError && afterLogout.status === 401, String(afterLogout));
  }));

test("the generated types are those of the schema the server serves", async () =>
  withServer(async (server) => {
    const dir = mkdtempSync(join(tmpdir(), "chat-client-schema-"));
    const served = join(dir, "openapi.json");
    writeFileSync(served, await (await fetch(`${server.url}/api/schema/`)).text());
    const generated = join(dir, "schema.ts");
    const root = resolve(import.meta.dirname, "../..");
    execFileSync(join(root, "node_modules/.bin/openapi-typescript"), [served, "--output", generated], { stdio: "ignore" });
    execFileSync(process.execPath, [join(root, "scripts/banner.mjs"), generated]);
    assert.equal(
      readFileSync(join(root, "src/schema.ts"), "utf8"),
      readFileSync(generated, "utf8"),
      "src/schema.ts is out of date: run `npm run schema` in clients/js",
    );
  }));

test("the server serves the package bundled from these sources at /chat-client.js", async () =>
  withServer(async (server) => {
    const script = resolve(import.meta.dirname, "../../scripts/bundle.mjs");
    const { bundle } = (await import(pathToFileURL(script).href)) as { bundle: () => Promise<string> };
    const served = await fetch(`${server.url}/chat-client.js`);
    assert.equal(served.headers.get("content-type"), "text/javascript; charset=utf-8");
    assert.equal(await served.text(), await bundle(), "static/chat-client.js is out of date: run `npm run build` in clients/js, then rebuild the server");
  }));

test("the README's Node example works when pasted, and prints what the README says", async () =>
  withServer(async (server) => {
    const root = resolve(import.meta.dirname, "../..");
    const readme = readFileSync(join(root, "README.md"), "utf8");
    const [, example, printed] = /## Example \(Node\)[\s\S]*?```js\n([\s\S]*?)```[\s\S]*?```\n([\s\S]*?)```/.exec(readme)!;
    const dir = mkdtempSync(join(tmpdir(), "chat-client-example-"));
    mkdirSync(join(dir, "node_modules/@chat-server"), { recursive: true });
    symlinkSync(root, join(dir, "node_modules/@chat-server/client"));
    symlinkSync(join(root, "node_modules/ws"), join(dir, "node_modules/ws"));
    writeFileSync(join(dir, "example.mjs"), example!.replace("http://127.0.0.1:8000", server.url));
    const output = execFileSync(process.execPath, ["example.mjs"], { cwd: dir, timeout: 20_000, encoding: "utf8" });
    const lines = (text: string) => text.trim().split("\n").sort();
    assert.deepEqual(lines(output), lines(printed!));
  }));
