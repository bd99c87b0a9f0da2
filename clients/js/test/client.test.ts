// The ChatClient against the real server binary: live delivery and the chat
// list, a server killed mid-stream, sends while offline and across a reload,
// a stored cursor past its chat's end, markers told again after a bus
// reconnect, a user with more chats than one sync names (a later sync refused
// for the rate and sent again), two pages sharing one storage (and saving at
// the same moment), sends refused for the rate, long gaps read through REST,
// token expiry, a refused refresh, a dead connection replaced, and what the
// peer saw meanwhile learned from the chat list.
import assert from "node:assert/strict";
import { test } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { backoffDelay, memoryStore, Rest } from "../src/index.js";
import { clientOf, closeClients, countingFetch, live, oneTo, Recorder, register, signedOutForGood, until, withServer, type TestUser } from "./helpers.js";
import { FaultProxy } from "./proxy.js";
import { TestRedis } from "./redis.js";
import { syncsOf } from "../src/client.js";
import { furthestCursors } from "../src/storage.js";
import { TestServer } from "./server.js";

test("full jitter: every wait lies between 0 and min(cap, base * 2^attempt)", () => {
  const backoff = { baseMs: 100, capMs: 1_000 };
  assert.equal(backoffDelay(0, backoff, () => 0.999), 99);
  assert.equal(backoffDelay(3, backoff, () => 0.5), 400);
  assert.equal(backoffDelay(40, backoff, () => 0.999), 999);
  assert.equal(backoffDelay(5, backoff, () => 0), 0);
});

test("syncs name every chat, at most 1,000 each, the most recent first; {} when there is none", () => {
  assert.deepEqual(syncsOf([]), [{}]);
  const cursors = oneTo(2_001).map((chat): [number, number] => [chat, chat * 2]);
  const syncs = syncsOf(cursors);
  assert.deepEqual(syncs.map((sync) => Object.keys(sync).length), [1_000, 1_000, 1]);
  assert.equal(syncs[0]!["1"], 2);
  assert.equal(syncs[2]!["2001"], 4_002);
});

test("stored cursors never move back: each chat at the furthest of the page's and the stored", () => {
  const mine = new Map([[1, 5], [2, 3], [4, 7]]);
  const stored = { "1": 9, "2": 1, "3": 6, "5": Number.NaN };
  assert.deepEqual(furthestCursors(stored, mine), { "1": 9, "2": 3, "3": 6, "4": 7 });
  assert.deepEqual(furthestCursors({}, mine), { "1": 5, "2": 3, "4": 7 });
  assert.deepEqual(furthestCursors(stored, mine, new Set([1])), { "1": 5, "2": 3, "3": 6, "4": 7 }, "a lowered cursor stands");
});

test("live: a chat started by the peer, messages in order, unread counts, read markers, typing", async () =>
  withServer(async (server) => {
    const [ann, bob] = [await register(server, "ann"), await register(server, "bob")];
    const [a, b] = await live(clientOf(server, ann), clientOf(server, bob));

    const chat = await b.client.rest.startChat(ann.id);
    await until("the chat reaches Ann", () => a.client.chat(chat.id));
    for (const text of ["one", "two", "three"]) b.client.send(chat.id, text);
    await until("three messages at Ann", () => a.seqs(chat.id).length === 3);
    assert.deepEqual(a.contents(chat.id), ["one", "two", "three"]);
    assert.equal(a.events.chat.findIndex((c) => c.id === chat.id) < a.events.message.length, true);
    assert.equal(a.client.chat(chat.id)!.unread_count, 3);
    await until("Bob's sends sent, in order", () => b.events.outbox.filter((e) => e.status === "sent").length === 3);
    assert.deepEqual(
      b.events.outbox.map((e) => `${e.content}:${e.status}`),
      ["one:pending", "two:pending", "three:pending", "one:sent", "two:sent", "three:sent"],
    );

    a.client.markRead(chat.id);
    assert.equal(a.client.chat(chat.id)!.unread_count, 0);
    const read = await until("Bob hears Ann read", () => b.events.read.find((r) => r.user_id === ann.id));
    assert.deepEqual([read.chat, read.seq], [chat.id, 3]);
    assert.equal(b.client.chat(chat.id)!.peer_read_seq, 3, "what Ann has seen, for Bob's \"seen\"");
    const [listed] = await a.client.rest.chats();
    assert.deepEqual([listed!.read_seq, listed!.unread_count], [3, 0]);

    a.client.typing(chat.id);
    a.client.typing(chat.id); // throttled
    await until("Bob sees Ann typing", () => b.events.typing.length === 1);
    await sleep(300);
    assert.equal(b.events.typing.length, 1, "one typing per interval");

    const refused = a.client.send(chat.id, "   ");
    const failed = await until("a blank send fails", () => a.events.outbox.find((e) => e.client_msg_id === refused.client_msg_id && e.status === "failed"));
    assert.equal(failed.error!.code, "invalid_fields");
    a.client.close();
    b.client.close();
  }));

test("the server killed with -9 and restarted mid-stream: every `sent` stored once, all delivered in order once", async () =>
  withServer(async (server) => {
    const [ann, bob] = [await register(server, "ann"), await register(server, "bob")];
    const chat = await new Rest({ baseUrl: server.url, auth: fixed(ann.tokens.access) }).startChat(bob.id);
    const [a, b] = await live(clientOf(server, ann), clientOf(server, bob));

    const total = 300;
    for (let i = 1; i <= total; i++) {
      a.client.send(chat.id, `m${i}`);
      if (i === 100) {
        await until("some sent", () => a.events.outbox.some((e) => e.status === "sent"));
        await server.kill();
        await until("Ann offline", () => a.client.state === "offline");
      }
      if (i === 200) await server.restart();
      if (i % 10 === 0) await sleep(5);
    }
    await until("every send settled", () => a.events.outbox.filter((e) => e.status !== "pending").length === total, 30_000);
    assert.deepEqual(a.events.outbox.filter((e) => e.status === "failed"), []);
    await until("Bob has all", () => b.seqs(chat.id).length === total, 30_000);

    const sent = a.events.outbox.filter((e) => e.status === "sent");
    assert.deepEqual(sent.map((e) => e.content), oneTo(total).map((i) => `m${i}`), "sent, in the order sent");
    assert.deepEqual(b.seqs(chat.id), oneTo(total), "in order, exactly once");
    assert.deepEqual(b.contents(chat.id), oneTo(total).map((i) => `m${i}`));
    assert.deepEqual(a.seqs(chat.id), oneTo(total), "the sender's own echoes too");
    const stored = await b.client.rest.after(chat.id, 0, 100);
    for (let after = 100; after < total; after += 100) stored.push(...(await b.client.rest.after(chat.id, after, 100)));
    assert.deepEqual(stored.map((m) => m.client_msg_id), sent.map((e) => e.client_msg_id), "each stored once");
    a.client.close();
    b.client.close();
  }));

test("sends refused for the send rate go out again in the order sent, with no close for flooding", async () =>
  withServer(
    async (server) => {
      const [ann, bob] = [await register(server, "ann"), await register(server, "bob")];
      const chat = await new Rest({ baseUrl: server.url, auth: fixed(ann.tokens.access) }).startChat(bob.id);
      const [a, b] = await live(clientOf(server, ann), clientOf(server, bob));
      try {
        const total = 80;
        // All at once: 70 past the burst leave before the first refusal is back.
        for (let i = 1; i <= total; i++) a.client.send(chat.id, `m${i}`);
        await until("every send settled", () => a.events.outbox.filter((e) => e.status !== "pending").length === total, 30_000);
        assert.deepEqual(a.events.outbox.filter((e) => e.status === "failed"), [], "none failed");
        const sent = a.events.outbox.filter((e) => e.status === "sent");
        const order = oneTo(total).map((i) => `m${i}`);
        assert.deepEqual(sent.map((e) => e.content), order, "announced in the order sent");
        await until("Bob has all", () => b.seqs(chat.id).length === total, 30_000);
        assert.deepEqual(b.contents(chat.id), order, "stored and delivered in the order sent");
        assert.deepEqual(
          a.events.state.filter((state) => state === "offline"),
          [],
          "the socket was never closed for flooding",
        );
      } finally {
        a.client.close();
        b.client.close();
      }
    },
    { RATE_LIMIT_SENDS_PER_SEC: "100", RATE_LIMIT_SENDS_BURST: "10", WS_FLOOD_CLOSE_AFTER: "5" },
  ));

test("sends queued behind one the database did not take go out after it: order kept through an outage", async (t) => {
  const base = process.env.TEST_PG_URL;
  if (!base) return t.skip("needs PostgreSQL (TEST_PG_URL)");
  const upstream = new URL(base);
  const database = await FaultProxy.start(Number(upstream.port || 5432), upstream.hostname);
  const url = `postgres://${upstream.username || "postgres"}@127.0.0.1:${database.port}/chat_test_js_outage_${process.pid}`;
  try {
    await withServer(
      async (server) => {
        const [ann, bob] = [await register(server, "ann"), await register(server, "bob")];
        const chat = await new Rest({ baseUrl: server.url, auth: fixed(ann.tokens.access) }).startChat(bob.id);
        const [a, b] = await live(clientOf(server, ann), clientOf(server, bob));
        try {
          a.client.send(chat.id, "m0");
          await until("m0 delivered", () => b.contents(chat.id).length === 1);
          database.cut();
          const cutAt = Date.now();
          // m1 waits alone for the database (2 s, then refused); m2..m4 queue
          // behind it and would reach it once it is back, at 3 s.
          a.client.send(chat.id, "m1");
          await sleep(300);
          for (const i of [2, 3, 4]) a.client.send(chat.id, `m${i}`);
          await sleep(Math.max(0, cutAt + 3000 - Date.now()));
          database.restore();
          const order = ["m0", "m1", "m2", "m3", "m4"];
          await until("Bob has all", () => b.seqs(chat.id).length === order.length, 30_000);
          assert.deepEqual(b.contents(chat.id), order, "stored and delivered in the order sent");
          assert.deepEqual(b.seqs(chat.id), oneTo(order.length), "each once");
          // Bob's copies can arrive before Ann's own echoes, which announce `sent`.
          const sent = () => a.events.outbox.filter((e) => e.status === "sent").map((e) => e.content);
          await until("Ann told of each send", () => sent().length >= order.length, 10_000);
          assert.deepEqual(sent(), order, "each announced sent, in order");
        } finally {
          a.client.close();
          b.client.close();
        }
      },
      { DATABASE_URL: url, DB_RETRY_SECS: "2" },
    );
  } finally {
    database.close();
  }
});

test("a send while offline goes out after reconnect, and the outbox survives a reload", async () =>
  withServer(async (server) => {
    const [ann, bob] = [await register(server, "ann"), await register(server, "bob")];
    const chat = await new Rest({ baseUrl: server.url, auth: fixed(bob.tokens.access) }).startChat(ann.id);
    const storage = memoryStore();
    const a = new Recorder(clientOf(server, ann, { storage }));
    const b = new Recorder(clientOf(server, bob));
    a.client.connect();
    b.client.connect();
    await until("both live", () => a.client.state === "live" && b.client.state === "live");

    await server.kill();
    await until("Ann offline", () => a.client.state === "offline");
    a.client.send(chat.id, "written offline");
    assert.equal(a.client.pending().length, 1);
    await server.restart();
    await until("delivered after reconnect", () => b.contents(chat.id).includes("written offline"));
    await until("sent", () => a.events.outbox.some((e) => e.status === "sent"));

    // A reload: the page goes away with a send pending; a new client on the
    // same storage sends it.
    await server.kill();
    await until("Ann offline again", () => a.client.state === "offline");
    a.client.send(chat.id, "written before the reload");
    a.client.close();
    await server.restart();
    const reloaded = new Recorder(clientOf(server, ann, { storage }));
    assert.deepEqual(reloaded.client.pending().map((e) => e.content), ["written before the reload"]);
    reloaded.client.connect();
    await until("delivered after the reload", () => b.contents(chat.id).includes("written before the reload"));
    await until("sent after the reload", () => reloaded.events.outbox.some((e) => e.status === "sent"));
    assert.deepEqual(b.seqs(chat.id), [1, 2]);
    assert.deepEqual(reloaded.seqs(chat.id), [2], "the reloaded page resumes after what it had");
    reloaded.client.close();
    b.client.close();
  }));

test("a stored cursor past its chat's end (the database lost what the page had) moves back: later messages arrive", async () =>
  withServer(async (server) => {
    const [ann, bob] = [await register(server, "ann"), await register(server, "bob")];
    const bobRest = new Rest({ baseUrl: server.url, auth: fixed(bob.tokens.access) });
    const chat = await bobRest.startChat(ann.id);
    for (const text of ["one", "two"]) await bobRest.send(chat.id, { content: text });
    // Ann's page was given seqs 1..9 before the database was restored to seq 2.
    const storage = memoryStore();
    storage.setItem(`chat-server:${ann.id}:cursors`, JSON.stringify({ cursors: { [chat.id]: 9 } }));
    const a = new Recorder(clientOf(server, ann, { storage }));
    a.client.connect();
    await until("Ann live", () => a.client.state === "live");
    assert.equal(a.client.cursor(chat.id), 2);
    assert.equal(a.client.chat(chat.id)!.last_seq, 2);

    await bobRest.send(chat.id, { content: "three" });
    await until("seq 3 reaches Ann", () => a.seqs(chat.id).includes(3));
    assert.deepEqual(a.contents(chat.id), ["three"], "nothing before the cursor, nothing twice");
    await until("the lowered cursor saved", () => JSON.parse(storage.getItem(`chat-server:${ann.id}:cursors`)!).cursors[chat.id] === 3);
    a.client.close();
  }));

test("markers the server tells again after catching the sockets up (its bus reconnected) reach the app once", async () => {
  const redis = await TestRedis.start();
  try {
    await withServer(async (server) => {
      const [ann, bob] = [await register(server, "ann"), await register(server, "bob")];
      const [a, b] = await live(clientOf(server, ann), clientOf(server, bob));
      const chat = await a.client.rest.startChat(bob.id);
      a.client.send(chat.id, "seen?");
      await until("Bob has it", () => b.seqs(chat.id).length === 1);
      b.client.markRead(chat.id);
      await until("Ann hears Bob read", () => a.events.read.length === 1);

      const resyncs = await counter(server, "chat_ws_resyncs_total");
      await redis.dropSubscribers();
      // Both sockets catch up in place: each is told the markers again.
      await until("both sockets caught up", async () => (await counter(server, "chat_ws_resyncs_total")) >= resyncs + 2);
      a.client.send(chat.id, "after the catch-up");
      await until("Bob has it too", () => b.seqs(chat.id).length === 2);
      assert.equal(a.events.read.length, 1, "Bob's marker reached Ann's app once");
      assert.equal(b.events.read.length, 0, "Bob's own marker, which his app set, not passed back");
      assert.equal(a.client.chat(chat.id)!.peer_read_seq, 1);
    }, { REDIS_URL: redis.url });
  } finally {
    await redis.stop();
  }
});

test("a user with over 2,000 chats names them all in syncs of 1,000, one refused for the rate sent again: a bus reconnect catches the socket up in place", async () => {
  const redis = await TestRedis.start();
  try {
    await withServer(async (server) => {
      const ann = await register(server, "ann");
      const peers: TestUser[] = [];
      for (let start = 1; start <= 2_001; start += 50) {
        const names = oneTo(Math.min(50, 2_002 - start)).map((n) => `peer${start + n - 1}`);
        peers.push(...(await Promise.all(names.map((name) => register(server, name)))));
      }
      const annRest = new Rest({ baseUrl: server.url, auth: fixed(ann.tokens.access) });
      const oldRest = new Rest({ baseUrl: server.url, auth: fixed(peers[0]!.tokens.access) });
      // The oldest chat holds a message and comes last in Ann's list, in
      // the third sync; the limit (a burst of one later sync) refuses that
      // one at first.
      const oldest = await annRest.startChat(peers[0]!.id);
      await oldRest.send(oldest.id, { content: "before the others" });
      for (let start = 1; start < peers.length; start += 50) {
        await Promise.all(peers.slice(start, start + 50).map((peer) => annRest.startChat(peer.id)));
      }
      const list = await annRest.chats();
      assert.equal(list.length, 2_001);
      assert.equal(list[2_000]!.id, oldest.id, "the oldest chat is past the first 2,000");

      // Nothing of the oldest chat is delivered before the bus reconnects:
      // only the third sync, sent again after its refusal, tells the server
      // where Ann's client stands in it.
      const limited = await counter(server, "chat_rate_limited_total");
      const [a] = await live(clientOf(server, ann));
      await until("the third sync refused", async () => (await counter(server, "chat_rate_limited_total")) > limited);
      // Its wait (about a second) passes and it goes out again; nothing
      // outside the client tells when it was served, so the test gives it
      // three seconds (a failure here would be a close with 4009 below).
      await sleep(3_000);
      const resyncs = await counter(server, "chat_ws_resyncs_total");
      const states = a!.events.state.length;
      await redis.dropSubscribers();
      await until("the socket caught up", async () => (await counter(server, "chat_ws_resyncs_total")) > resyncs);
      await oldRest.send(oldest.id, { content: "after the catch-up" });
      await until("Ann has it", () => a!.seqs(oldest.id).length === 1);
      assert.deepEqual(a!.contents(oldest.id), ["after the catch-up"], "once, and nothing from before she connected");
      assert.deepEqual(a!.events.state.slice(states), [], "the connection was kept: no close (4009) and reconnect");
      assert.deepEqual(a!.events.error, [], "no refusal reached the app");
    }, {
      REDIS_URL: redis.url,
      ARGON2_MEMORY_KIB: "64",
      ARGON2_ITERATIONS: "1",
      RATE_LIMIT_SYNC_PER_MIN: "60",
      RATE_LIMIT_SYNC_BURST: "1",
    });
  } finally {
    await redis.stop();
  }
});

test("two pages of one user on one storage: no send is lost or brought back by the other's saves", async () =>
  withServer(async (server) => {
    const [ann, bob] = [await register(server, "ann"), await register(server, "bob")];
    const chat = await new Rest({ baseUrl: server.url, auth: fixed(bob.tokens.access) }).startChat(ann.id);
    const storage = memoryStore();
    const [b] = await live(clientOf(server, bob)); // Bob hears every send below
    // What a page opened now would find in the outbox.
    const stored = () => {
      const page = clientOf(server, ann, { storage });
      page.close();
      return page.pending().map((e) => e.content);
    };

    // Two pages open, neither connected: each writes a send.
    const first = clientOf(server, ann, { storage });
    const second = clientOf(server, ann, { storage });
    first.send(chat.id, "from the first page");
    second.send(chat.id, "from the second page");
    assert.deepEqual(stored(), ["from the first page", "from the second page"]);

    // A third page takes both, sends them and settles them, while the first
    // page (still offline) holds its own send and writes another.
    const third = new Recorder(clientOf(server, ann, { storage }));
    third.client.connect();
    await until("both sent by the third page", () => third.events.outbox.filter((e) => e.status === "sent").length === 2);
    assert.deepEqual(stored(), []);
    first.send(chat.id, "later, from the first page");
    assert.deepEqual(stored(), ["later, from the first page"], "a settled send does not come back");
    first.close();
    second.close();

    const reloaded = new Recorder(clientOf(server, ann, { storage }));
    reloaded.client.connect();
    await until("the later send delivered", () => b.contents(chat.id).includes("later, from the first page"));
    await until("sent after the reload", () => reloaded.events.outbox.some((e) => e.status === "sent"));
    assert.deepEqual(b.contents(chat.id), ["from the first page", "from the second page", "later, from the first page"]);
    assert.deepEqual(b.seqs(chat.id), [1, 2, 3], "each send stored once");
    for (const client of [third.client, reloaded.client, b.client]) client.close();
  }));

/** Where a page hears of other pages' storage writes, and `written(key)`: what a browser tells it when one writes `key`. */
function otherPagesWrites(): { storageEvents: EventTarget; written: (key: string | null) => boolean } {
  const storageEvents = new EventTarget();
  const written = (key: string | null) => storageEvents.dispatchEvent(Object.assign(new Event("storage"), { key }));
  return { storageEvents, written };
}

test("a page whose cursors another page's save left behind (both saved at once) saves them again", async () =>
  withServer(async (server) => {
    const [ann, bob] = [await register(server, "ann"), await register(server, "bob")];
    const bobRest = new Rest({ baseUrl: server.url, auth: fixed(bob.tokens.access) });
    const chat = await bobRest.startChat(ann.id);
    const storage = memoryStore();
    const { storageEvents, written } = otherPagesWrites();
    const key = `chat-server:${ann.id}:cursors`;
    const storedCursor = () => JSON.parse(storage.getItem(key) ?? "null")?.cursors?.[chat.id];
    const a = new Recorder(clientOf(server, ann, { storage, storageEvents }));
    a.client.connect();
    await until("live", () => a.client.state === "live");
    for (const text of ["one", "two", "three"]) await bobRest.send(chat.id, { content: text });
    await until("the page was given seq 3 and saved it", () => a.seqs(chat.id).length === 3 && storedCursor() === 3);

    // Another page read the cursors before this page's save and wrote its own.
    storage.setItem(key, JSON.stringify({ cursors: { [chat.id]: 1 } }));
    written("chat-server:other");
    await sleep(20);
    assert.equal(storedCursor(), 1, "a write of another item changes nothing");
    written(key);
    await until("the furthest cursor stored again", () => storedCursor() === 3);

    // A logout in another page removed them: they stay removed.
    storage.removeItem(key);
    written(key);
    await sleep(20);
    assert.equal(storage.getItem(key), null);

    a.client.close();
    storage.setItem(key, JSON.stringify({ cursors: { [chat.id]: 1 } }));
    written(key);
    await sleep(20);
    assert.equal(storedCursor(), 1, "a closed page writes nothing");
  }));

test("a send another page's save dropped (both saved at once) is written again; one another page settled is not", async () =>
  withServer(async (server) => {
    const [ann, bob] = [await register(server, "ann"), await register(server, "bob")];
    const chat = await new Rest({ baseUrl: server.url, auth: fixed(bob.tokens.access) }).startChat(ann.id);
    const storage = memoryStore();
    const { storageEvents, written } = otherPagesWrites();
    const key = `chat-server:${ann.id}:outbox`;
    const stored = () => (JSON.parse(storage.getItem(key) ?? "null") as { content: string }[] | null)?.map((e) => e.content);
    const page = clientOf(server, ann, { storage, storageEvents }); // offline: its sends wait
    page.send(chat.id, "mine");

    // Another page read the list before this page's save and wrote its own send.
    const theirs = { client_msg_id: "0f0e0d0c-0b0a-4908-8706-050403020100", chat: chat.id, content: "theirs", metadata: {} };
    storage.setItem(key, JSON.stringify([theirs]));
    written("chat-server:other");
    await sleep(20);
    assert.deepEqual(stored(), ["theirs"], "a write of another item changes nothing");
    written(key);
    await until("the dropped send written again", () => stored()?.length === 2);
    assert.deepEqual(stored(), ["theirs", "mine"]);

    // A page opened now sends and settles both: they stay settled.
    const other = new Recorder(clientOf(server, ann, { storage }));
    other.client.connect();
    await until("both sent by the other page", () => other.events.outbox.filter((e) => e.status === "sent").length === 2);
    assert.deepEqual(stored(), []);
    const settledNames = () => (JSON.parse(storage.getItem(`${key}:settled`) ?? "[]") as string[]).length;
    assert.equal(settledNames(), 2, "sends another page added are named as settled");
    other.client.send(chat.id, "the other page's own");
    await until("its own sent", () => other.events.outbox.filter((e) => e.status === "sent").length === 3);
    assert.equal(settledNames(), 2, "a send a page added itself is not");
    written(key);
    await sleep(20);
    assert.deepEqual(stored(), [], "a send another page settled is not written again");
    page.send(chat.id, "later");
    assert.deepEqual(stored(), ["later"], "nor by this page's next save");

    // A logout in another page removed the list: it stays removed.
    storage.removeItem(key);
    written(key);
    await sleep(20);
    assert.equal(storage.getItem(key), null);

    // Something else under the settled ids' key: a dropped send is written again all the same.
    storage.setItem(key, "[]");
    storage.setItem(`${key}:settled`, "{}");
    written(key);
    await until("written again past a foreign item", () => stored()?.length === 1);
    assert.deepEqual(stored(), ["later"]);

    storage.setItem(key, "[]");
    page.close();
    written(key);
    await sleep(20);
    assert.deepEqual(stored(), [], "a closed page writes nothing");
    other.client.close();
  }));

test("a gap longer than a page is read through REST before sync", async () =>
  withServer(async (server) => {
    const [ann, bob] = [await register(server, "ann"), await register(server, "bob")];
    const bobRest = new Rest({ baseUrl: server.url, auth: fixed(bob.tokens.access) });
    const chat = await bobRest.startChat(ann.id);
    const storage = memoryStore();
    const first = new Recorder(clientOf(server, ann, { storage }));
    first.client.connect();
    await until("live", () => first.client.state === "live");
    await bobRest.send(chat.id, { content: "before" });
    await until("the first message", () => first.seqs(chat.id).length === 1);
    first.client.close();
    for (let i = 2; i <= 251; i++) await bobRest.send(chat.id, { content: `m${i}` });

    const counting = countingFetch();
    const again = new Recorder(clientOf(server, ann, { storage, fetch: counting.fetch, pageSize: 100 }));
    again.client.connect();
    await until("all 251", () => again.seqs(chat.id).length === 250);
    assert.deepEqual(again.seqs(chat.id), oneTo(251).slice(1));
    assert.ok(counting.urls.filter((url) => url.includes("after_seq=")).length >= 2, counting.urls.join("\n"));
    again.client.close();
  }));

test("an access token expiring during a session: refreshed, reconnected, nothing visible lost", async () =>
  withServer(async (server) => {
    const [ann, bob] = [await register(server, "ann"), await register(server, "bob")];
    const chat = await new Rest({ baseUrl: server.url, auth: fixed(ann.tokens.access) }).startChat(bob.id);
    const [a, b] = await live(clientOf(server, ann), clientOf(server, bob));
    const total = 40;
    for (let i = 1; i <= total; i++) {
      a.client.send(chat.id, `m${i}`);
      await sleep(200);
    }
    await until("Bob has all", () => b.seqs(chat.id).length === total, 20_000);
    assert.deepEqual(b.contents(chat.id), oneTo(total).map((i) => `m${i}`));
    assert.ok(a.events.tokens.length >= 2, `refreshed ${a.events.tokens.length} times`);
    assert.ok(a.events.state.filter((s) => s === "live").length >= 3, `reconnected: ${a.events.state}`);
    assert.deepEqual([...a.events.state, ...b.events.state].filter((s) => s === "offline"), [], "never offline");
    assert.deepEqual([a.events.signedOut, a.events.outbox.filter((e) => e.status === "failed")], [[], []]);
    a.client.close();
    b.client.close();
  }, { ACCESS_TOKEN_TTL_SECS: "3" }));

test("a refused refresh signs out once, and nothing is retried after", async () =>
  withServer(async (server) => {
    const ann = await register(server, "ann");
    const counting = countingFetch();
    const [a] = await live(clientOf(server, ann, { fetch: counting.fetch }));
    await new Rest({ baseUrl: server.url }).logout(ann.tokens.refresh);
    await signedOutForGood(a!, counting.urls, 10_000);
  }, { ACCESS_TOKEN_TTL_SECS: "2" }));

test("a server that no longer takes the tokens: one refresh, refused, signs out; no loop", async () =>
  withServer(async (server) => {
    const ann = await register(server, "ann");
    const counting = countingFetch();
    const [a] = await live(clientOf(server, ann, { fetch: counting.fetch }));
    await server.kill();
    server.env.SECRET_KEY = "another-secret-0123456789abcdef-rotated";
    await server.restart();
    await signedOutForGood(a!, counting.urls, 15_000);
  }));

test("a connection that stops answering is detected and replaced", async () => {
  const server = await TestServer.start();
  const proxy = await FaultProxy.start(server.port);
  try {
    const [ann, bob] = [await register(server, "ann"), await register(server, "bob")];
    const chat = await new Rest({ baseUrl: server.url, auth: fixed(bob.tokens.access) }).startChat(ann.id);
    // Its REST calls go through the proxy too, and a pooled connection may be
    // frozen: a resume that hangs on it is cut off after connectTimeoutMs.
    const a = new Recorder(clientOf(server, ann, { url: proxy.url, heartbeatMs: 300, connectTimeoutMs: 2_000 }));
    a.client.connect();
    await until("live", () => a.client.state === "live");
    proxy.freeze(); // the open connection goes silent; new ones get through
    await new Rest({ baseUrl: server.url, auth: fixed(bob.tokens.access) }).send(chat.id, { content: "while frozen" });
    await until("live again on a new connection", () => a.events.state.filter((s) => s === "live").length === 2, 10_000);
    await until("the message", () => a.contents(chat.id).includes("while frozen"));
    assert.ok(proxy.connections >= 2, `${proxy.connections} connections`);
    a.client.close();
  } finally {
    closeClients();
    proxy.close();
    await server.stop();
  }
});

test("what the peer saw while the connection was down comes with the chat list on reconnect", async () => {
  const server = await TestServer.start();
  const proxy = await FaultProxy.start(server.port);
  try {
    const [ann, bob] = [await register(server, "ann"), await register(server, "bob")];
    const a = new Recorder(clientOf(server, ann, { url: proxy.url, heartbeatMs: 300, connectTimeoutMs: 2_000 }));
    const b = new Recorder(clientOf(server, bob));
    a.client.connect();
    b.client.connect();
    await until("both live", () => a.client.state === "live" && b.client.state === "live");
    const chat = await a.client.rest.startChat(bob.id);
    a.client.send(chat.id, "did you see this?");
    await until("Bob has it", () => b.seqs(chat.id).length === 1);
    proxy.freeze(); // Bob's read event goes to a connection that no longer answers
    b.client.markRead(chat.id);
    await until("Bob's read stored", async () => (await b.client.rest.chats())[0]?.read_seq === 1);
    await until("Ann learns it from the chat list", () => a.events.chat.some((c) => c.id === chat.id && c.peer_read_seq === 1), 10_000);
    assert.equal(a.events.read.length, 0, "no read event reached Ann");
    assert.equal(a.client.chat(chat.id)!.peer_read_seq, 1);
    a.client.close();
    b.client.close();
  } finally {
    closeClients();
    proxy.close();
    await server.stop();
  }
});

/** A counter of the server's `/metrics`. */
async function counter(server: TestServer, name: string): Promise<number> {
  const text = await (await fetch(`${server.url}/metrics`)).text();
  const line = text.split("\n").find((l) => l.startsWith(`${name} `));
  return Number(line?.split(" ")[1] ?? 0);
}

function fixed(access: string) {
  return { access: async () => access, refreshed: async () => access };
}
