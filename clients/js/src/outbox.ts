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
// at the same moment can drop one tab's newest send from storage. That tab
// writes it again on the other's `storage` event (`storageWritten`): each
// page names the sends it settled that another page added, in a second item
// (the last `SETTLED_KEPT`), so a send missing from the list was dropped,
// and is written again, unless another page settled it. Those names are
// written the same way and can be dropped too (or pushed out by later ones
// before this page heard): a send then comes back once, and the server
// answers its retry with the stored original (never a second message).
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

/** How many settled sends' ids the store keeps for other pages (see the module note). */
export const SETTLED_KEPT = 256;

export class Outbox {
  readonly #persisted: Persisted<Stored[] | null>;
  /** The ids of the sends pages settled last, oldest first. */
  readonly #settledIds: Persisted<string[] | null>;
  /** In the order the user sent them; settled ones leave from the front. */
  readonly #entries: OutboxEntry[];
  /** Every client id this page has held, settled ones included. */
  readonly #known = new Set<string>();
  /** Pending sends this page added, which it writes again when they go missing. */
  readonly #own = new Set<string>();

  constructor(store: KeyValueStore, key: string) {
    this.#persisted = new Persisted(store, key);
    this.#settledIds = new Persisted(store, `${key}:settled`);
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
    this.#own.add(clientMsgId);
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
    return this.#settle(entry);
  }

  /** A final refusal: returns the entries now announceable, in order. */
  fail(error: ServerError): OutboxEntry[] {
    const entry = error.client_msg_id == null ? undefined : this.#find(error.client_msg_id);
    if (!entry || entry.status !== "pending") return [];
    entry.status = "failed";
    entry.error = { code: error.code, detail: error.detail };
    return this.#settle(entry);
  }

  #find(clientMsgId: string): OutboxEntry | undefined {
    return this.#entries.find((entry) => entry.client_msg_id === clientMsgId);
  }

  /**
   * `entry` was settled: left out of the list, and named as settled when
   * another page may have added it (a send this page added is no other
   * page's own, so a page alone in its store writes no names).
   */
  #settle(entry: OutboxEntry): OutboxEntry[] {
    if (!this.#own.delete(entry.client_msg_id)) this.#recordSettled(entry.client_msg_id);
    const settled: OutboxEntry[] = [];
    while (this.#entries.length > 0 && this.#entries[0]!.status !== "pending") {
      settled.push(this.#entries.shift()!);
    }
    this.#save();
    return settled;
  }

  /**
   * Another page wrote `key` (null: it cleared the storage). When the stored
   * list lacks a send this page added and no page settled, the two pages saved
   * at the same moment: it is written again. A list removed (a logout) stays
   * removed.
   */
  storageWritten(key: string | null): void {
    if (key !== null && key !== this.#persisted.key) return;
    const stored = this.#persisted.load(null);
    if (!Array.isArray(stored)) return;
    const present = new Set(stored.map((entry) => entry.client_msg_id));
    if ([...this.#own].some((id) => !present.has(id))) this.#save();
  }

  /** Removes the stored list and the settled ids (a logout). */
  forget(): void {
    this.#persisted.clear();
    this.#settledIds.clear();
  }

  /**
   * Writes the stored list back with this page's changes: its settled sends
   * leave, `added` joins at the end, and every send this page never held
   * stays. A send this page holds but the store no longer does was settled by
   * another page and is not written again, unless this page added it and no
   * page says it settled it: then a save at the same moment dropped it, and it
   * joins at the end too. A list removed (a logout) gets only `added`.
   */
  #save(added?: OutboxEntry): void {
    const stored = this.#persisted.load(null);
    const pending = new Set(this.pending().map((entry) => entry.client_msg_id));
    const kept = (Array.isArray(stored) ? stored : []).filter(
      ({ client_msg_id }) => !this.#known.has(client_msg_id) || pending.has(client_msg_id),
    );
    const present = new Set(kept.map((entry) => entry.client_msg_id));
    // `added` is one of this page's sends missing from the list, the last.
    const joining = Array.isArray(stored) ? this.#droppedOwn(present) : added ? [added] : [];
    for (const { client_msg_id, chat, content, metadata } of joining) {
      kept.push({ client_msg_id, chat, content, metadata });
    }
    this.#persisted.save(kept);
  }

  /** Pending sends this page added that are not in `present` and that no page says it settled. */
  #droppedOwn(present: ReadonlySet<string>): OutboxEntry[] {
    const missing = this.pending().filter(({ client_msg_id: id }) => this.#own.has(id) && !present.has(id));
    if (missing.length === 0) return [];
    const settledElsewhere = new Set(this.#settledIdsStored());
    for (const { client_msg_id: id } of missing) if (settledElsewhere.has(id)) this.#own.delete(id);
    return missing.filter(({ client_msg_id: id }) => this.#own.has(id));
  }

  /** Adds `id` to the settled ids other pages read, keeping the last `SETTLED_KEPT`. */
  #recordSettled(id: string): void {
    this.#settledIds.save([...this.#settledIdsStored().slice(1 - SETTLED_KEPT), id]);
  }

  /** The settled ids; none when the store holds something else. */
  #settledIdsStored(): string[] {
    const stored = this.#settledIds.load(null);
    return Array.isArray(stored) ? stored : [];
  }

  /** The stored list; nothing when the store holds something else. */
  #stored(): Stored[] {
    const stored = this.#persisted.load(null);
    return Array.isArray(stored) ? stored : [];
  }
}
