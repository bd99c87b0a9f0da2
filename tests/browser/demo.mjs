// Two browser contexts chat through the demo page served at `/`:
// Ann registers, finds Bob, starts a chat and writes; Bob sees it live and answers;
// Ann's connection is dropped and resumes with after_seq, missing nothing.
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

  await ann.fill("#search", "bob");
  await ann.click("#search-results li");
  await ann.waitForSelector("#status:has-text('Live')");
  await say(ann, "Hello Bob!");
  await expectMessage(ann, 1, "Hello Bob!");

  await bob.click("#chats li");
  await bob.waitForSelector("#status:has-text('Live')");
  await expectMessage(bob, 1, "Hello Bob!");
  await say(bob, "Hi Ann, live from Bob");
  await expectMessage(ann, 2, "Hi Ann, live from Bob");

  // Drop Ann's socket; while she is away Bob writes; she resumes after #2.
  await ann.evaluate(() => state.socket.close());
  await say(bob, "sent while Ann was away");
  await ann.waitForSelector("#status:has-text('resumed after #2')");
  await expectMessage(ann, 3, "sent while Ann was away");
  const seqs = await ann.$$eval("#messages li", (items) => items.map((li) => Number(li.dataset.seq)));
  if (seqs.join(",") !== "1,2,3") throw new Error(`Ann's messages: ${seqs}`);

  if (screenshot) await ann.screenshot({ path: screenshot });
  console.log("browser test passed: two users chatted live; a dropped socket resumed with after_seq");
} catch (error) {
  console.error("browser test failed:", error.message);
  process.exitCode = 1;
} finally {
  await browser.close();
}
