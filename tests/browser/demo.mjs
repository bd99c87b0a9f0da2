// Two browser contexts chat through the demo page served at `/`, each on one
// user socket: Bob starts a chat with Ann and it appears in Ann's list without
// a reload; his message shows an unread badge there; Ann opens it (Bob's
// message turns "seen"), types (Bob sees it) and answers; Ann's connection is
// dropped and resumes with `sync`, missing nothing.
// Usage: node demo.mjs http://127.0.0.1:PORT screenshot.png
import { chromium } from "playwright-core";

const [url, screenshot] = process.argv.slice(2);
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"],
});
const timeout = 10_000;

async function person(name) {
  const context = await browser.newContext();
  const page = await context.newPage();
  page.setDefaultTimeout(timeout);
  await page.goto(url);
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

try {
  const ann = await person("ann");
  const bob = await person("bob");
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

  // Drop Ann's socket; while she is away Bob writes; she resumes with sync.
  await ann.evaluate(() => state.socket.close());
  await say(bob, "sent while Ann was away");
  await ann.waitForSelector("#status:has-text('synced')");
  await expectMessage(ann, 3, "sent while Ann was away");
  const seqs = await ann.$$eval("#messages li", (items) => items.map((li) => Number(li.dataset.seq)));
  if (seqs.join(",") !== "1,2,3") throw new Error(`Ann's messages: ${seqs}`);

  console.log("browser test passed: a chat started by the other user appeared live with an unread badge; seen, typing; a dropped user socket resumed with sync");
} catch (error) {
  console.error("browser test failed:", error.message);
  process.exitCode = 1;
} finally {
  await browser.close();
}
