// What the client tests share: users registered through the real API,
// clients on `ws` (Node's WebSocket for the package), a recorder of what a
// client told its app, and waiting for a condition with a deadline.
import WebSocket from "ws";
import { setTimeout as sleep } from "node:timers/promises";
import { ChatClient, Rest, type ChatClientOptions, type ClientEvents, type SocketFactory, type Tokens } from "../src/index.js";
import type { TestServer } from "./server.js";

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

export function clientOf(server: TestServer, user: TestUser, options: Partial<ChatClientOptions> = {}): ChatClient {
  return new ChatClient(
    { url: server.url, WebSocket: NodeWebSocket, backoff: { baseMs: 50, capMs: 400 }, ...options },
    user.tokens,
  );
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

/** Waits until `check` returns something truthy, or fails after `ms`. */
export async function until<T>(what: string, check: () => T | undefined | null | false, ms = 15_000): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const value = check();
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(20);
  }
}

/** 1, 2, ..., n */
export function oneTo(n: number): number[] {
  return Array.from({ length: n }, (_, i) => i + 1);
}
