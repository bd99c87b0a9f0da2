// What the client tests share: users registered through the real API,
// clients on `ws` (Node's WebSocket for the package), a recorder of what a
// client told its app, and waiting for a condition with a deadline.
import assert from "node:assert/strict";
import WebSocket from "ws";
import { setTimeout as sleep } from "node:timers/promises";
import { ChatClient, Rest, type ChatClientOptions, type ClientEvents, type SocketFactory, type Tokens } from "../src/index.js";
import { TestServer } from "./server.js";

export const NodeWebSocket = WebSocket as unknown as SocketFactory;

export interface TestUser {
  id: number;
  email: string;
  password: string;
  tokens: Tokens;
}

export async function register(server: TestServer, name: string): Promise<TestUser> {
  const rest = new Rest({ baseUrl: server.url });
  const email = `${name}@example.com`;
  const password = "correct horse battery";
  const user = await rest.register({ email, password, full_name: name });
  return { id: user.id, email, password, tokens: await rest.login({ email, password }) };
}

/** Every client made and not yet closed by `closeClients`. */
const opened = new Set<ChatClient>();

export function clientOf(server: TestServer, user: TestUser, options: Partial<ChatClientOptions> = {}): ChatClient {
  const client = new ChatClient(
    { url: server.url, WebSocket: NodeWebSocket, backoff: { baseMs: 50, capMs: 400 }, ...options },
    user.tokens,
  );
  opened.add(client);
  return client;
}

/**
 * Closes every client a test made: a test that fails half-way leaves none
 * reconnecting to a stopped server, which would keep the process (and the
 * test command) running after the last test.
 */
export function closeClients(): void {
  for (const client of opened) client.close();
  opened.clear();
}

/** Everything a client told its app, in order. */
export class Recorder {
  readonly events: { [K in keyof ClientEvents]: ClientEvents[K][] } = {
    state: [], message: [], chat: [], read: [], typing: [], outbox: [], signedOut: [], tokens: [], error: [],
  };

  constructor(readonly client: ChatClient) {
    for (const name of Object.keys(this.events) as (keyof ClientEvents)[]) {
      client.on(name, (value) => (this.events[name] as unknown[]).push(value));
    }
  }

  /** The seqs of `chat` given to the app, in the order given. */
  seqs(chat: number): number[] {
    return this.events.message.filter((m) => m.chat === chat).map((m) => m.seq);
  }

  contents(chat: number): string[] {
    return this.events.message.filter((m) => m.chat === chat).map((m) => m.content);
  }
}

type Found<T> = T | undefined | null | false;

/** Waits until `check` returns (or resolves to) something truthy, or fails after `ms`. */
export async function until<T>(what: string, check: () => Found<T> | Promise<Found<T>>, ms = 15_000): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const value = await check();
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(20);
  }
}

/** 1, 2, ..., n */
export function oneTo(n: number): number[] {
  return Array.from({ length: n }, (_, i) => i + 1);
}

/** Runs `body` against a fresh server (and database), stopped afterwards. */
export async function withServer(body: (server: TestServer) => Promise<void>, env: Record<string, string> = {}): Promise<void> {
  const server = await TestServer.start(env);
  try {
    await body(server);
  } finally {
    closeClients();
    await server.stop();
  }
}

/** Connects each client and waits until all are live; returns their recorders. */
export async function live(...clients: ChatClient[]): Promise<Recorder[]> {
  const recorders = clients.map((client) => new Recorder(client));
  for (const client of clients) client.connect();
  await until("every client live", () => clients.every((client) => client.state === "live"));
  return recorders;
}

/** A fetch that notes every URL it is asked for. */
export function countingFetch(): { fetch: typeof fetch; urls: string[] } {
  const urls: string[] = [];
  return {
    urls,
    fetch: (input, init) => {
      urls.push(String(input));
      return fetch(input, init);
    },
  };
}

/** One `signedOut`, after one refresh; then no request, no reconnect, for a while. */
export async function signedOutForGood(recorder: Recorder, urls: string[], within: number): Promise<void> {
  await until("signed out", () => recorder.events.signedOut.length === 1, within);
  const seen = [urls.length, recorder.events.state.length];
  await sleep(2_000);
  assert.deepEqual([urls.length, recorder.events.state.length], seen, "no request and no reconnect after signing out");
  assert.equal(urls.filter((url) => url.endsWith("/auth/refresh/")).length, 1, "one refresh asked");
  assert.equal(recorder.events.signedOut.length, 1);
  assert.equal(recorder.client.state, "offline");
}
