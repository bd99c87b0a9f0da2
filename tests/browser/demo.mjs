// Two browser contexts chat through the demo page served at `/`, which runs
// on the client package (/chat-client.js), each on one user socket: Bob starts
// a chat with Ann and it appears in Ann's list without a reload; his message
// shows an unread badge there; Ann opens it (Bob's message turns "seen"), types
// (Bob sees it) and answers. Then Ann goes offline (her page reaches the
// server through a proxy that cuts every connection and refuses new ones),
// writes twice while Bob writes once, and comes back: her sends go out from
// the outbox, and both see the same five messages in order, once each. Bob
// reloads, and his messages are still "seen" (Ann's marker is in the chat list).
// Usage: node demo.mjs http://127.0.0.1:PORT screenshot.png
import { chromium } from "playwright-core";
import { connect, createServer } from "node:net";

const [url, screenshot] = process.argv.slice(2);
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"],
});
const timeout = 20_000;

// A TCP proxy to the server that can go offline: open connections are
// destroyed and new ones refused until it comes back.
function networkFor(target) {
  const { hostname, port } = new URL(target);
  const sockets = new Set();
  let online = true;
  const server = createServer((client) => {
    if (!online) return client.destroy();
    const upstream = connect(Number(port), hostname);
    client.pipe(upstream).pipe(client);
    for (const socket of [client, upstream]) {
      sockets.add(socket);
      socket.on("error", () => {});
      socket.on("close", () => { sockets.delete(socket); client.destroy(); upstream.destroy(); });
    }
  });
  return new Promise((done) => server.listen(0, "127.0.0.1", () => done({
    url: `http://127.0.0.1:${server.address().port}`,
    offline() { online = false; for (const socket of sockets) socket.destroy(); },
    online() { online = true; },
    close() { this.offline(); server.close(); },
  })));
}

async function person(name, origin) {
  const context = await browser.newContext();
  const page = await context.newPage();
  page.setDefaultTimeout(timeout);
  page.on("pageerror", (error) => console.error(`${name}'s page:`, error.message));
  await page.goto(origin);
  await page.fill("#email", `${name}@example.com`);
  await page.fill("#password", "correct horse");
  await page.fill("#full_name", name);
  await page.click("#register");
  await page.waitForSelector("#app:not(.hidden)");
  return page;
}

async function say(page, text) {
  await page.fill("#text", text);
  await page.click("#send");
}

async function expectMessage(page, seq, text) {
  const item = page.locator(`#messages li[data-seq="${seq}"] .content`);
  await item.waitFor();
  const got = await item.textContent();
  if (got !== text) throw new Error(`message #${seq}: expected ${JSON.stringify(text)}, got ${JSON.stringify(got)}`);
}

async function transcript(page) {
  return page.$$eval("#messages li", (items) => items.map((li) => `${li.dataset.seq}:${li.querySelector(".content").textContent}`));
}

const network = await networkFor(url);
try {
  const ann = await person("ann", network.url);
  const bob = await person("bob", url);
  await ann.waitForSelector("#status:has-text('Live')");

  await bob.fill("#search", "ann");
  await bob.click("#search-results li");
  await ann.waitForSelector("#chats li:has-text('bob')"); // live, no reload, no polling
  await say(bob, "Hello Ann!");
  await expectMessage(bob, 1, "Hello Ann!");
  const badge = ann.locator("#chats li .badge");
  await badge.waitFor();
  if ((await badge.textContent()) !== "1") throw new Error(`unread badge: ${await badge.textContent()}`);
  if (screenshot) await ann.screenshot({ path: screenshot });

  await ann.click("#chats li");
  await expectMessage(ann, 1, "Hello Ann!");
  await bob.waitForSelector("#messages li.mine .seen"); // Ann's read marker
  await ann.waitForSelector("#chats li:not(:has(.badge))");
  await ann.type("#text", "Hi");
  await bob.waitForSelector("#status:has-text('typing')");
  await ann.fill("#text", "Hi Bob, live from Ann");
  await ann.click("#send");
  await expectMessage(bob, 2, "Hi Bob, live from Ann");

  // Ann goes offline; she writes twice (kept in her outbox), Bob once.
  network.offline();
  await ann.waitForSelector("#status:has-text('Offline')");
  await say(ann, "written offline, first");
  await say(ann, "written offline, second");
  await ann.waitForSelector("#messages li.pending >> nth=1");
  await say(bob, "sent while Ann was away");
  await expectMessage(bob, 3, "sent while Ann was away");
  network.online();
  await ann.waitForSelector("#status:has-text('Live')");
  await expectMessage(bob, 5, "written offline, second");
  await expectMessage(ann, 5, "written offline, second");
  await ann.waitForSelector("#messages li.pending", { state: "detached" });
  const expected = ["1:Hello Ann!", "2:Hi Bob, live from Ann", "3:sent while Ann was away",
                    "4:written offline, first", "5:written offline, second"].join(" | ");
  for (const [who, page] of [["Ann", ann], ["Bob", bob]]) {
    const got = (await transcript(page)).join(" | ");
    if (got !== expected) throw new Error(`${who}'s messages: ${got}`);
  }

  // Bob reloads: what Ann has seen comes with the chat list (her marker is at
  // 5, moved by her sends), so his messages 1 and 3 are "seen" again.
  await bob.reload();
  await bob.waitForSelector("#status:has-text('Live')");
  await bob.click("#chats li");
  await expectMessage(bob, 5, "written offline, second");
  await bob.waitForSelector('#messages li.mine[data-seq="3"] .seen');
  if ((await bob.locator("#messages li.mine .seen").count()) !== 2) throw new Error("seen after the reload");

  console.log("browser test passed: a chat started by the other user appeared live with an unread badge; seen, typing; " +
    "sends made offline went out from the outbox on reconnect, and both pages hold the same five messages in order, once each; " +
    "seen kept across a reload");
} catch (error) {
  console.error("browser test failed:", error.message);
  process.exitCode = 1;
} finally {
  network.close();
  await browser.close();
}
