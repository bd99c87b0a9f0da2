// Sends that wait for their echo. Every send gets a client_msg_id and stays
// here, persisted, until the server's echo (or a final refusal) settles it,
// across reconnects and page reloads; a retry reuses the id, so the server
// never stores it twice. The app hears of each send's outcome in the order
// the user sent them: a settled send is announced only once every earlier
// one has been.
import { Persisted, type KeyValueStore } from "./storage.js";
import type { Message, ServerError } from "./types.js";

export type SendStatus = "pending" | "sent" | "failed";

/** One send as the app sees it. */
export interface OutboxEntry {
  client_msg_id: string;
  chat: number;
  content: string;
  metadata: unknown;
  status: SendStatus;
  /** The stored message, once `sent`. */
  message?: Message;
  /** The server's refusal, once `failed`. */
  error?: { code: string; detail: string };
}

type Stored = Pick<OutboxEntry, "client_msg_id" | "chat" | "content" | "metadata">;

export class Outbox {
  readonly #persisted: Persisted<Stored[]>;
  /** In the order the user sent them; settled ones leave from the front. */
  readonly #entries: OutboxEntry[];

  constructor(store: KeyValueStore, key: string) {
    this.#persisted = new Persisted(store, key);
    this.#entries = this.#persisted
      .load([])
      .map((stored) => ({ ...stored, status: "pending" as const }));
  }

  /** Sends still waiting, oldest first. */
  pending(): OutboxEntry[] {
    return this.#entries.filter((entry) => entry.status === "pending");
  }

  add(chat: number, content: string, metadata: unknown, clientMsgId: string): OutboxEntry {
    const entry: OutboxEntry = { client_msg_id: clientMsgId, chat, content, metadata, status: "pending" };
    this.#entries.push(entry);
    this.#save();
    return entry;
  }

  has(clientMsgId: string | null | undefined): boolean {
    return clientMsgId != null && this.#find(clientMsgId)?.status === "pending";
  }

  /** The echo arrived: returns the entries now announceable, in order. */
  acknowledge(message: Message): OutboxEntry[] {
    const entry = message.client_msg_id == null ? undefined : this.#find(message.client_msg_id);
    if (!entry || entry.status !== "pending") return [];
    entry.status = "sent";
    entry.message = message;
    return this.#settle();
  }

  /** A final refusal: returns the entries now announceable, in order. */
  fail(error: ServerError): OutboxEntry[] {
    const entry = error.client_msg_id == null ? undefined : this.#find(error.client_msg_id);
    if (!entry || entry.status !== "pending") return [];
    entry.status = "failed";
    entry.error = { code: error.code, detail: error.detail };
    return this.#settle();
  }

  #find(clientMsgId: string): OutboxEntry | undefined {
    return this.#entries.find((entry) => entry.client_msg_id === clientMsgId);
  }

  #settle(): OutboxEntry[] {
    const settled: OutboxEntry[] = [];
    while (this.#entries.length > 0 && this.#entries[0]!.status !== "pending") {
      settled.push(this.#entries.shift()!);
    }
    this.#save();
    return settled;
  }

  #save(): void {
    const left = this.#entries.filter((entry) => entry.status === "pending");
    this.#persisted.save(
      left.map(({ client_msg_id, chat, content, metadata }) => ({ client_msg_id, chat, content, metadata })),
    );
  }
}
