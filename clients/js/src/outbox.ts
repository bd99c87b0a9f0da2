// Sends that wait for their echo. Every send gets a client_msg_id and stays
// here, persisted, until the server's echo (or a final refusal) settles it,
// across reconnects and page reloads; a retry reuses the id, so the server
// never stores it twice. The app hears of each send's outcome in the order
// the user sent them: a settled send is announced only once every earlier
// one has been.
//
// Several pages (browser tabs) of one user may share the store. Each writes
// the stored list back as it read it, changing only the sends it knows: one
// it settled leaves, one it added joins, and one another page added (or
// settled) is left as that page wrote it. So a send written in one tab is
// never lost because another tab saved after it, and one that a tab settled
// does not come back from a tab that still holds it. Browsers do not make a
// read and a write of localStorage atomic against another tab, so two saves
// at the same moment can still drop one tab's newest send from storage (not
// from that tab, which sends it while open); the store's three methods offer
// nothing that would close that window.
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
  /** Every client id this page has held, settled ones included. */
  readonly #known = new Set<string>();

  constructor(store: KeyValueStore, key: string) {
    this.#persisted = new Persisted(store, key);
    this.#entries = this.#stored().map((stored) => ({ ...stored, status: "pending" as const }));
    for (const entry of this.#entries) this.#known.add(entry.client_msg_id);
  }

  /** Sends still waiting, oldest first. */
  pending(): OutboxEntry[] {
    return this.#entries.filter((entry) => entry.status === "pending");
  }

  add(chat: number, content: string, metadata: unknown, clientMsgId: string): OutboxEntry {
    const entry: OutboxEntry = { client_msg_id: clientMsgId, chat, content, metadata, status: "pending" };
    this.#entries.push(entry);
    this.#known.add(clientMsgId);
    this.#save(entry);
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

  /**
   * Writes the stored list back with this page's changes: its settled sends
   * leave, `added` joins at the end, and every send this page never held
   * stays. A send this page holds but the store no longer does was settled
   * by another page, and is not written again.
   */
  #save(added?: OutboxEntry): void {
    const pending = new Set(this.pending().map((entry) => entry.client_msg_id));
    const kept = this.#stored().filter(
      ({ client_msg_id }) => !this.#known.has(client_msg_id) || pending.has(client_msg_id),
    );
    if (added) {
      const { client_msg_id, chat, content, metadata } = added;
      kept.push({ client_msg_id, chat, content, metadata });
    }
    this.#persisted.save(kept);
  }

  /** The stored list; nothing when the store holds something else. */
  #stored(): Stored[] {
    const stored = this.#persisted.load([]);
    return Array.isArray(stored) ? stored : [];
  }
}
