// ChatClient: one user socket for all of a user's chats, kept alive and
// resumed so the app sees every message once, in order, per chat.
//
// - Connection: `connecting` → `live` (after `ready`, the chat list and
//   `sync`) → `offline` on a drop, then a new attempt after an exponential
//   backoff with full jitter. A connection that stops answering `ping` is
//   abandoned and replaced.
// - Resume: a cursor per chat (the last seq the app was given), persisted.
//   On `ready` the client reads the chat list, reads any gap longer than a page
//   through REST history, then sends `sync` with its cursors: the server
//   replays the rest and goes live with no gap and no duplicate at the seam.
//   Messages are passed on only in seq order and once (`seq <= cursor` is a
//   duplicate; a gap is held back and filled from REST).
// - Outbox: see outbox.ts. Sends go out when the socket is live, again after
//   every reconnect until acknowledged; the client_msg_id makes that safe.
// - Tokens: see tokens.ts. Close 4001 refreshes and reconnects at once;
//   close 4003 or a refused refresh signs out.
import { backoffDelay, DEFAULT_BACKOFF, type Backoff } from "./backoff.js";
import { Emitter } from "./emitter.js";
import { Outbox, type OutboxEntry } from "./outbox.js";
import { Rest } from "./rest.js";
import { furthestCursors, memoryStore, Persisted, type KeyValueStore } from "./storage.js";
import { SignedOut, TokenKeeper } from "./tokens.js";
import type { Chat, LoginRequest, Message, ReadEvent, ServerError, ServerEvent, Tokens, TypingEvent } from "./types.js";

export type ConnectionState = "connecting" | "live" | "offline";

/** What the client tells the app. */
export interface ClientEvents {
  /** The connection's state changed. */
  state: ConnectionState;
  /** A message, in seq order and exactly once per chat. */
  message: Message;
  /** A chat was learned of or changed (last message, unread count, read marker). */
  chat: Chat;
  /** A participant moved a read marker (the user's own from another device included). */
  read: ReadEvent;
  /** The other participant is typing. */
  typing: TypingEvent;
  /** A send changed state: `pending`, then `sent` or `failed`, in the order sent. */
  outbox: OutboxEntry;
  /** The session is over (refresh refused, or the user deactivated); nothing is retried. */
  signedOut: { reason: string };
  /** New tokens (after a refresh), for the app to keep if it keeps them itself. */
  tokens: Tokens;
  /** A refused event not tied to a send, or a failed background request. */
  error: ServerError | Error;
}

/** The part of the WebSocket API the client uses (the browser's, or `ws` in Node). */
export interface SocketLike {
  readonly readyState: number;
  send(data: string): void;
  close(code?: number, reason?: string): void;
  onmessage: ((event: { data: unknown }) => void) | null;
  onclose: ((event: { code: number }) => void) | null;
  onerror: ((event: unknown) => void) | null;
}

export type SocketFactory = new (url: string) => SocketLike;

export interface ChatClientOptions {
  /** The server: `https://chat.example.com`. */
  url: string;
  /** The WebSocket constructor: the global one in browsers; pass `ws`'s in Node. */
  WebSocket?: SocketFactory;
  /** `fetch`; the global one by default. */
  fetch?: typeof fetch;
  /** Where cursors, the outbox and the tokens live: `localStorage`, or `memoryStore()` (default). */
  storage?: KeyValueStore;
  /** The prefix of every storage key (default `chat-server`). */
  storageKey?: string;
  /** Reconnect waits (default 500 ms doubling up to 30 s, full jitter). */
  backoff?: Backoff;
  /** Ping a silent live connection after this long; abandon it after twice this (default 15 s). */
  heartbeatMs?: number;
  /** A connection not live within this long is abandoned (default 15 s). */
  connectTimeoutMs?: number;
  /** A gap longer than this many messages is read through REST before `sync` (default 100). */
  pageSize?: number;
  /** At most one `typing` per chat this often (default 3 s). */
  typingIntervalMs?: number;
  /**
   * Where other pages' writes to `storage` are announced (`storage` events, whose
   * `key` names the item): the global object when `storage` is its `localStorage`,
   * else none. On one that touches the cursors or the outbox, this page saves
   * its own again if the stored cursors fell behind them or a send it added is
   * missing (two pages that saved at the same moment).
   */
  storageEvents?: EventTarget | null;
}

const OPEN = 1;
const SYNC_MAX_CHATS = 1000;
const RETRYABLE = new Set(["rate_limited", "unavailable"]);

interface Saved {
  cursors: Record<string, number>;
}

export class ChatClient extends Emitter<ClientEvents> {
  readonly rest: Rest;
  readonly userId: number;
  readonly #options: Required<Omit<ChatClientOptions, "fetch" | "storageEvents">>;
  readonly #tokens: TokenKeeper;
  readonly #outbox: Outbox;
  readonly #saved: Persisted<Saved | null>;
  readonly #savedTokens: Persisted<Tokens | null>;
  /** The last seq passed to the app, per chat. */
  readonly #cursors = new Map<number, number>();
  /** Chats whose cursor this page moved back (see `#forgetPastEnd`); the next save writes them as they are. */
  readonly #lowered = new Set<number>();
  /** Other pages' storage writes, and this page's answer to them (see `storageEvents`). */
  readonly #storageEvents: EventTarget | null;
  readonly #onStorage = (event: Event): void => this.#storageWritten((event as { key?: string | null }).key ?? null);
  #cursorsDirty = false;
  /** Synced before: a chat it has no cursor for is new, and starts at 0. */
  #resumed: boolean;
  readonly #chats = new Map<number, Chat>();
  /** Messages past a gap, per chat, by seq, until the gap is filled. */
  readonly #heldBack = new Map<number, Map<number, Message>>();
  readonly #filling = new Set<number>();
  readonly #inFlight = new Set<string>();
  /**
   * A send was refused for now (`rate_limited`, `unavailable`): nothing more
   * is sent until its wait has passed and every send still in flight has its
   * answer, then the outbox goes out in order. The server refuses later sends
   * on the socket until the refused one comes back, so those in flight are
   * refused too; resending before their refusals arrive would let a send
   * written after the resend be stored ahead of them.
   */
  #sendsHeld = false;
  /** The held refusal's wait has passed. */
  #waitedOut = false;
  readonly #readsToSend = new Map<number, number>();
  readonly #typedAt = new Map<number, number>();
  #socket: SocketLike | null = null;
  #state: ConnectionState | null = null;
  #live = false;
  #closed = false;
  #attempt = 0;
  /** Sockets in a row that closed before `ready` (a refused handshake looks like that). */
  #unready = 0;
  #heardAt = 0;
  #pinged = false;
  /** `ping`s written on this socket whose `pong` has not come back. */
  #pingsOut = 0;
  /** This socket's later syncs not yet served, in order (see `#nextSync`). */
  #syncsToSend: Record<string, number>[] = [];
  /** While a later sync is in flight: the pongs due before the one that follows it; else -1. */
  #pongsBeforeSync = -1;
  /** The sync in flight was refused for the rate: its wait, in ms. */
  #syncRefusedFor: number | null = null;
  #timers = new Set<ReturnType<typeof setTimeout>>();
  #heartbeat: ReturnType<typeof setInterval> | null = null;
  /** The backoff wait before the next attempt, while there is one. */
  #retry: ReturnType<typeof setTimeout> | null = null;
  #listing: Promise<void> | null = null;

  /** Logs in and returns a client (not yet connected: call `connect()`). */
  static async login(options: ChatClientOptions, credentials: LoginRequest): Promise<ChatClient> {
    const rest = new Rest({ baseUrl: options.url, fetch: options.fetch });
    return new ChatClient(options, await rest.login(credentials));
  }

  /** The client of the tokens kept in `options.storage` by an earlier page, or null. */
  static restore(options: ChatClientOptions): ChatClient | null {
    const storage = options.storage ?? memoryStore();
    const tokens = new Persisted<Tokens | null>(storage, `${options.storageKey ?? "chat-server"}:tokens`).load(null);
    return tokens ? new ChatClient({ ...options, storage }, tokens) : null;
  }

  constructor(options: ChatClientOptions, tokens: Tokens) {
    super();
    const WebSocket = options.WebSocket ?? (globalThis as { WebSocket?: SocketFactory }).WebSocket;
    if (!WebSocket) throw new TypeError("No WebSocket: pass options.WebSocket (in Node, `ws`'s WebSocket).");
    this.#options = {
      url: options.url,
      WebSocket,
      storage: options.storage ?? memoryStore(),
      storageKey: options.storageKey ?? "chat-server",
      backoff: options.backoff ?? DEFAULT_BACKOFF,
      heartbeatMs: options.heartbeatMs ?? 15_000,
      connectTimeoutMs: options.connectTimeoutMs ?? 15_000,
      pageSize: options.pageSize ?? 100,
      typingIntervalMs: options.typingIntervalMs ?? 3_000,
    };
    this.rest = new Rest({ baseUrl: options.url, fetch: options.fetch });
    const { storage, storageKey } = this.#options;
    this.#savedTokens = new Persisted(storage, `${storageKey}:tokens`);
    this.#savedTokens.save(tokens);
    this.#tokens = new TokenKeeper(tokens, {
      refresh: (refresh) => this.rest.refresh(refresh),
      changed: (fresh) => {
        this.#savedTokens.save(fresh);
        this.emit("tokens", fresh);
      },
      signedOut: (reason) => this.#signedOut(reason),
    });
    this.rest.auth = { access: () => this.#tokens.access(), refreshed: () => this.#tokens.refreshed() };
    this.userId = this.#tokens.userId;
    this.#outbox = new Outbox(storage, `${storageKey}:${this.userId}:outbox`);
    this.#saved = new Persisted(storage, `${storageKey}:${this.userId}:cursors`);
    const saved = this.#saved.load(null);
    this.#resumed = saved !== null;
    for (const [chat, seq] of Object.entries(saved?.cursors ?? {})) this.#cursors.set(Number(chat), seq);
    this.#storageEvents = options.storageEvents === undefined ? storageEventsOf(storage) : options.storageEvents;
    this.#storageEvents?.addEventListener("storage", this.#onStorage);
  }

  /** The connection's state (null before `connect()`). */
  get state(): ConnectionState | null {
    return this.#state;
  }

  get tokens(): Tokens {
    return this.#tokens.tokens;
  }

  /** The chats learned so far, most recent activity first. */
  chats(): Chat[] {
    return [...this.#chats.values()].sort((a, b) => (a.updated_at < b.updated_at ? 1 : a.updated_at > b.updated_at ? -1 : b.id - a.id));
  }

  chat(id: number): Chat | undefined {
    return this.#chats.get(id);
  }

  /** The last seq of `chat` the app was given (0: none). */
  cursor(chat: number): number {
    return this.#cursors.get(chat) ?? 0;
  }

  /** Sends not yet acknowledged, oldest first (after a reload too). */
  pending(): OutboxEntry[] {
    return this.#outbox.pending().map((entry) => ({ ...entry }));
  }

  /** Opens the user socket, and keeps one open until `close()`. */
  connect(): void {
    if (this.#closed || this.#socket || this.#state === "connecting") return;
    void this.#open();
  }

  /**
   * Tries to connect now rather than at the end of the backoff wait: for when
   * the app knows the network is back (a browser's `online` event).
   */
  retryNow(): void {
    if (this.#closed || this.#socket || this.#retry === null) return;
    clearTimeout(this.#retry);
    this.#timers.delete(this.#retry);
    this.#retry = null;
    void this.#open();
  }

  /** Closes the socket for good; the outbox and cursors stay in storage. */
  close(): void {
    this.#closed = true;
    this.#storageEvents?.removeEventListener("storage", this.#onStorage);
    this.#tokens.stop();
    for (const timer of this.#timers) clearTimeout(timer);
    this.#timers.clear();
    this.#abandon(1000);
    if (this.#state !== null) this.#setState("offline");
  }

  /** Revokes the refresh token, closes, and forgets this user's stored state. */
  async logout(): Promise<void> {
    const { refresh } = this.#tokens.tokens;
    this.close();
    this.#saved.clear();
    this.#savedTokens.clear();
    this.#outbox.forget();
    await this.rest.logout(refresh);
  }

  /**
   * Queues a message: `pending` at once, then `sent` with the stored message
   * (or `failed` with the server's error), announced through `outbox`.
   */
  send(chat: number, content: string, metadata: unknown = {}): OutboxEntry {
    const entry = this.#outbox.add(chat, content, metadata, newClientMsgId());
    this.emit("outbox", { ...entry });
    this.#flushOutbox();
    return { ...entry };
  }

  /** Moves the user's read marker in `chat` to `seq` (default: its last message). */
  markRead(chat: number, seq?: number): void {
    const known = this.#chats.get(chat);
    const target = seq ?? known?.last_seq ?? 0;
    if (target < 1 || (known && target <= known.read_seq)) return;
    if (known) {
      known.read_seq = target;
      known.unread_count = Math.max(0, known.last_seq - target);
      this.emit("chat", { ...known });
    }
    this.#readsToSend.set(chat, Math.max(target, this.#readsToSend.get(chat) ?? 0));
    this.#flushReads();
  }

  /** Tells the other participant the user is typing (at most once per interval). */
  typing(chat: number): void {
    const now = Date.now();
    if (!this.#live || now - (this.#typedAt.get(chat) ?? -Infinity) < this.#options.typingIntervalMs) return;
    this.#typedAt.set(chat, now);
    this.#write({ type: "typing", chat });
  }

  // ---- the connection ----

  async #open(): Promise<void> {
    if (this.#closed) return;
    this.#setState("connecting");
    let access: string;
    try {
      // A browser cannot see why a handshake failed. After two sockets in a
      // row closed before `ready`, the token may be what the server refuses:
      // a refresh tells (a refused one signs out instead of looping).
      access = this.#unready >= 2 ? await this.#tokens.refreshed() : await this.#tokens.access();
    } catch (error) {
      if (!(error instanceof SignedOut)) this.#retryLater();
      return;
    }
    if (this.#closed) return;
    const url = new URL(`ws/?token=${encodeURIComponent(access)}`, this.rest.baseUrl.replace(/^http/, "ws") + "/");
    const socket = new this.#options.WebSocket(url.toString());
    this.#socket = socket;
    this.#heardAt = Date.now();
    this.#pinged = false;
    const tooLate = this.#after(this.#options.connectTimeoutMs, () => {
      if (this.#socket === socket && !this.#live) this.#abandon(4000);
    });
    socket.onmessage = (event) => {
      if (this.#socket !== socket) return;
      this.#heardAt = Date.now();
      this.#pinged = false;
      ready = true;
      let parsed: ServerEvent;
      try {
        parsed = JSON.parse(String(event.data)) as ServerEvent;
      } catch {
        return;
      }
      this.#onEvent(socket, parsed);
    };
    let ready = false;
    socket.onclose = (event) => {
      clearTimeout(tooLate);
      this.#timers.delete(tooLate);
      if (!ready) this.#unready++;
      if (this.#socket === socket) this.#dropped(event.code);
    };
    socket.onerror = () => {
      // the close event follows and decides
    };
  }

  #onEvent(socket: SocketLike, event: ServerEvent): void {
    switch (event.type) {
      case "ready":
        this.#unready = 0;
        this.#resume(socket).catch((error: unknown) => {
          if (this.#socket !== socket) return;
          this.emit("error", error instanceof Error ? error : new Error(String(error)));
          this.#abandon(4000);
        });
        break;
      case "message":
        this.#accept(event.data);
        break;
      case "chat":
        this.#learn(event.data, 0);
        break;
      case "read":
        this.#onRead(event);
        break;
      case "typing":
        this.emit("typing", event);
        break;
      case "error":
        this.#onRefused(event);
        break;
      case "pong":
        this.#onPong(socket);
        break;
    }
  }

  /** After `ready`: the list, long gaps through REST, then `sync`; then live. */
  async #resume(socket: SocketLike): Promise<void> {
    const list = await this.rest.chats();
    if (this.#socket !== socket) return;
    for (const chat of list) {
      this.#forgetPastEnd(chat);
      this.#learn(chat, this.#resumed ? 0 : chat.last_seq);
    }
    for (const chat of list) {
      if (chat.last_seq - this.cursor(chat.id) > this.#options.pageSize) await this.#readThrough(chat.id, chat.last_seq);
      if (this.#socket !== socket) return;
    }
    const [first, ...later] = syncsOf(list.map((chat) => [chat.id, this.cursor(chat.id)]));
    socket.send(JSON.stringify({ type: "sync", chats: first }));
    this.#resumed = true;
    this.#saveCursors();
    this.#live = true;
    this.#sendsHeld = false;
    this.#attempt = 0;
    this.#setState("live");
    this.#startHeartbeat(socket);
    this.#flushOutbox();
    this.#flushReads();
    this.#syncsToSend = later;
    this.#nextSync(socket);
  }

  /**
   * Sends the next later sync, then a `ping`: the server acts on a socket's
   * events in order, so the `pong` comes after the sync's refusal, if any.
   * A sync refused for the rate (a user's later syncs share one limit) goes
   * out again after its wait, so every chat gets its place.
   */
  #nextSync(socket: SocketLike): void {
    const chats = this.#syncsToSend[0];
    if (this.#socket !== socket || this.#pongsBeforeSync >= 0 || !chats) return;
    this.#syncRefusedFor = null;
    this.#pongsBeforeSync = this.#pingsOut;
    this.#write({ type: "sync", chats });
    this.#ping();
  }

  #ping(): void {
    if (this.#write({ type: "ping" })) this.#pingsOut++;
  }

  #onPong(socket: SocketLike): void {
    this.#pingsOut = Math.max(0, this.#pingsOut - 1);
    if (this.#pongsBeforeSync !== 0) {
      if (this.#pongsBeforeSync > 0) this.#pongsBeforeSync--;
      return;
    }
    this.#pongsBeforeSync = -1;
    const wait = this.#syncRefusedFor;
    if (wait === null) {
      this.#syncsToSend.shift();
      this.#nextSync(socket);
    } else {
      this.#after(wait, () => this.#nextSync(socket));
    }
  }

  #dropped(code: number): void {
    this.#socket = null;
    this.#goneQuiet();
    if (this.#closed) {
      this.#setState("offline");
      return;
    }
    if (code === 4003) {
      this.#tokens.signOut("the user was deactivated (close 4003)");
      return;
    }
    if (code === 4001 && this.#attempt === 0) {
      // The access token expired: a new one and straight back, no backoff.
      this.#attempt = 1;
      this.#tokens.refreshed().then(
        () => void this.#open(),
        (error: unknown) => {
          if (!(error instanceof SignedOut)) this.#retryLater();
        },
      );
      return;
    }
    this.#setState("offline");
    this.#retryLater();
  }

  /** Gives up on the current socket (closed, or silent) and starts again. */
  #abandon(code: number): void {
    const socket = this.#socket;
    if (!socket) return;
    this.#socket = null;
    try {
      socket.close(code === 1000 ? 1000 : 4000);
    } catch {
      // already closing
    }
    this.#dropped(code);
  }

  #goneQuiet(): void {
    this.#live = false;
    this.#pingsOut = 0;
    this.#syncsToSend = [];
    this.#pongsBeforeSync = -1;
    this.#inFlight.clear();
    if (this.#heartbeat !== null) clearInterval(this.#heartbeat);
    this.#heartbeat = null;
  }

  #retryLater(): void {
    if (this.#closed || this.#tokens.isSignedOut) return;
    this.#retry = this.#after(backoffDelay(this.#attempt++, this.#options.backoff), () => {
      this.#retry = null;
      void this.#open();
    });
  }

  #startHeartbeat(socket: SocketLike): void {
    this.#heartbeat = setInterval(() => {
      if (this.#socket !== socket) return;
      if (Date.now() - this.#heardAt < this.#options.heartbeatMs) return;
      if (this.#pinged) {
        this.#abandon(4000); // asked a whole interval ago, and not a frame since
        return;
      }
      this.#pinged = true;
      this.#ping();
    }, this.#options.heartbeatMs);
  }

  #setState(state: ConnectionState): void {
    if (this.#state === state) return;
    this.#state = state;
    this.emit("state", state);
  }

  #signedOut(reason: string): void {
    this.close();
    this.#savedTokens.clear();
    this.emit("signedOut", { reason });
  }

  #after(ms: number, run: () => void): ReturnType<typeof setTimeout> {
    const timer = setTimeout(() => {
      this.#timers.delete(timer);
      run();
    }, ms);
    this.#timers.add(timer);
    return timer;
  }

  #write(event: object): boolean {
    const socket = this.#socket;
    if (!this.#live || !socket || socket.readyState !== OPEN) return false;
    socket.send(JSON.stringify(event));
    return true;
  }

  // ---- chats and messages ----

  /** A chat from the list or a `chat` event; a chat without a cursor starts at `startAt`. */
  #learn(chat: Chat, startAt: number): void {
    const known = this.#chats.get(chat.id);
    const merged = known
      ? {
          ...chat,
          last_seq: Math.max(chat.last_seq, known.last_seq),
          peer_read_seq: Math.max(chat.peer_read_seq, known.peer_read_seq),
        }
      : { ...chat };
    if (known && known.last_seq > chat.last_seq) {
      merged.last_message = known.last_message;
      merged.updated_at = known.updated_at;
    }
    merged.unread_count = Math.max(0, merged.last_seq - merged.read_seq);
    this.#chats.set(chat.id, merged);
    if (!this.#cursors.has(chat.id)) this.#cursors.set(chat.id, startAt);
    this.emit("chat", { ...merged });
  }

  /**
   * A cursor past the end of its chat in a list read after every message
   * this client was given had been stored: the database lost messages the
   * client had (restored from a backup, or an asynchronous standby promoted).
   * The chat's next messages take those seqs again, so the cursor moves back
   * to the chat's end, or they would be dropped as ones already given.
   */
  #forgetPastEnd(chat: Chat): void {
    if (this.cursor(chat.id) <= chat.last_seq) return;
    this.#cursors.set(chat.id, chat.last_seq);
    this.#lowered.add(chat.id);
    this.#heldBack.delete(chat.id);
    this.#chats.delete(chat.id); // its last message and last_seq were the lost ones'
  }

  /** One message from the socket or REST: passed on in seq order, once. */
  #accept(message: Message): void {
    if (message.sender.id === this.userId) this.#announce(this.#outbox.acknowledge(message));
    const chat = message.chat;
    if (!this.#chats.has(chat)) this.#relist();
    const cursor = this.cursor(chat);
    if (message.seq <= cursor) return;
    if (message.seq > cursor + 1) {
      let held = this.#heldBack.get(chat);
      if (!held) this.#heldBack.set(chat, (held = new Map()));
      held.set(message.seq, message);
      void this.#fillGap(chat);
      return;
    }
    this.#deliver(message);
    const held = this.#heldBack.get(chat);
    let next: Message | undefined;
    while (held && (next = held.get(this.cursor(chat) + 1))) {
      held.delete(next.seq);
      this.#deliver(next);
    }
    if (held?.size === 0) this.#heldBack.delete(chat);
  }

  #deliver(message: Message): void {
    this.#cursors.set(message.chat, message.seq);
    this.#saveCursorsSoon();
    const chat = this.#chats.get(message.chat);
    if (chat) {
      if (message.seq >= chat.last_seq) {
        chat.last_seq = message.seq;
        chat.last_message = message;
        chat.updated_at = message.created_at;
      }
      // Sending moves the sender's own read marker (the server's rule, kept here).
      if (message.sender.id === this.userId) chat.read_seq = Math.max(chat.read_seq, message.seq);
      else chat.peer_read_seq = Math.max(chat.peer_read_seq, message.seq);
      chat.unread_count = Math.max(0, chat.last_seq - chat.read_seq);
    }
    // The chat first: a listener that marks the message read sees the count it clears.
    if (chat) this.emit("chat", { ...chat });
    this.emit("message", message);
  }

  /** Reads `chat` through REST from its cursor up to `upTo`. */
  async #readThrough(chat: number, upTo: number): Promise<void> {
    while (this.cursor(chat) < upTo) {
      const page = await this.rest.after(chat, this.cursor(chat), this.#options.pageSize);
      if (page.length === 0) return;
      for (const message of page) this.#accept(message);
    }
  }

  /** Messages arrived past a gap: read the gap through REST. */
  async #fillGap(chat: number): Promise<void> {
    if (this.#filling.has(chat)) return;
    this.#filling.add(chat);
    try {
      for (;;) {
        const held = this.#heldBack.get(chat);
        if (!held || held.size === 0) return;
        const before = this.cursor(chat);
        await this.#readThrough(chat, Math.min(...held.keys()) - 1);
        if (this.cursor(chat) === before) return; // REST had nothing: leave it to sync
      }
    } catch (error) {
      this.emit("error", error instanceof Error ? error : new Error(String(error)));
    } finally {
      this.#filling.delete(chat);
    }
  }

  /** A message of a chat not in the list: read the list again (once at a time). */
  #relist(): void {
    this.#listing ??= this.rest
      .chats()
      .then((list) => {
        for (const chat of list) if (!this.#chats.has(chat.id)) this.#learn(chat, 0);
      })
      .catch((error: unknown) => this.emit("error", error instanceof Error ? error : new Error(String(error))))
      .finally(() => (this.#listing = null));
  }

  /**
   * A marker the app did not know yet: passed on. One it knew is not (the
   * server tells markers again after catching a socket up, and markers never
   * move back).
   */
  #onRead(event: ReadEvent): void {
    const chat = this.#chats.get(event.chat);
    if (chat && event.user_id === this.userId) {
      if (event.seq <= chat.read_seq) return;
      chat.read_seq = event.seq;
      chat.unread_count = Math.max(0, chat.last_seq - chat.read_seq);
      this.emit("chat", { ...chat });
    } else if (chat) {
      if (event.seq <= chat.peer_read_seq) return;
      chat.peer_read_seq = event.seq;
      this.emit("chat", { ...chat });
    }
    this.emit("read", event);
  }

  /** Writes the cursors, none behind the stored ones but those this page lowered (see `furthestCursors`). */
  #saveCursors(): void {
    this.#cursorsDirty = false;
    const stored = this.#saved.load(null)?.cursors ?? {};
    this.#saved.save({ cursors: furthestCursors(stored, this.#cursors, this.#lowered) });
    this.#lowered.clear();
  }

  /** Another page wrote `key` (null: it cleared the storage); `close()` stops these. */
  #storageWritten(key: string | null): void {
    this.#cursorsWritten(key);
    this.#outbox.storageWritten(key);
  }

  /**
   * Another page wrote `key`. A browser does not make one page's read and write
   * of `localStorage` atomic against another's, so a page that saved at the same
   * moment as this one may have written cursors behind this page's: saved
   * again, the furthest of both stand. Only a stored cursor behind this page's
   * causes a save, so two pages answering each other stop at once; cursors
   * removed (a logout in another page) stay removed.
   */
  #cursorsWritten(key: string | null): void {
    if (key !== null && key !== this.#saved.key) return;
    const saved = this.#saved.load(null);
    if (saved === null) return;
    const stored = saved.cursors ?? {};
    for (const [chat, seq] of this.#cursors) {
      if (seq > (stored[chat] ?? 0)) return this.#saveCursorsSoon();
    }
  }

  /**
   * Saves the cursors once per burst rather than once per message (the whole
   * map is written each time). The microtask runs before the event loop moves
   * on, so a reload cannot fall between a message handed to the app and its
   * cursor being saved.
   */
  #saveCursorsSoon(): void {
    if (this.#cursorsDirty) return;
    this.#cursorsDirty = true;
    queueMicrotask(() => {
      if (this.#cursorsDirty) this.#saveCursors();
    });
  }

  // ---- the outbox ----

  #flushOutbox(): void {
    if (this.#sendsHeld) return;
    for (const entry of this.#outbox.pending()) {
      if (this.#inFlight.has(entry.client_msg_id)) continue;
      const { chat, content, metadata, client_msg_id } = entry;
      if (!this.#write({ type: "message.send", chat, content, metadata, client_msg_id })) return;
      this.#inFlight.add(client_msg_id);
    }
  }

  #flushReads(): void {
    for (const [chat, seq] of this.#readsToSend) {
      if (!this.#write({ type: "read", chat, seq })) return;
      this.#readsToSend.delete(chat);
    }
  }

  #onRefused(error: ServerError): void {
    // Only a later `sync` of `#resume` can be refused so: its chat went live
    // (from `ready`) before the sync was read, and a gap behind its first
    // live message is filled through REST like any other.
    if (error.code === "already_live") return;
    if (error.code === "rate_limited" && !error.client_msg_id && this.#pongsBeforeSync >= 0) {
      this.#syncRefusedFor = retryWait(error);
      return;
    }
    if (!this.#outbox.has(error.client_msg_id)) {
      this.emit("error", error);
      return;
    }
    if (RETRYABLE.has(error.code)) {
      this.#inFlight.delete(error.client_msg_id!);
      if (this.#sendsHeld) {
        this.#resumeSends();
        return;
      }
      this.#sendsHeld = true;
      this.#waitedOut = false;
      const wait = retryWait(error);
      this.#after(wait, () => {
        this.#waitedOut = true;
        this.#resumeSends();
      });
      return;
    }
    this.#announce(this.#outbox.fail(error));
  }

  #announce(settled: OutboxEntry[]): void {
    for (const entry of settled) {
      this.#inFlight.delete(entry.client_msg_id);
      this.emit("outbox", { ...entry });
    }
    if (this.#sendsHeld) this.#resumeSends();
  }

  /** Sends the outbox again once a held refusal's wait has passed and nothing is in flight. */
  #resumeSends(): void {
    if (!this.#sendsHeld || !this.#waitedOut || this.#inFlight.size > 0) return;
    this.#sendsHeld = false;
    this.#flushOutbox();
  }
}

/** The wait a refusal for the rate names ("retry in N ms"); 1 s when it names none. */
function retryWait(error: ServerError): number {
  return Number(/retry in (\d+) ms/.exec(error.detail)?.[1] ?? 1000);
}

/**
 * The `sync` events that name every chat of `cursors` (most recent first):
 * the server takes at most 1,000 per event, so a longer list goes out as
 * several, the most recent chats in the first. A chat the first one does not
 * name is live from `ready` until a later one places it; naming every chat
 * lets the server catch the socket up in place after its bus missed events,
 * where a chat with messages and no place would have it close (4009).
 * At least one event, `{}` when there is nothing to resume.
 */
export function syncsOf(cursors: [number, number][]): Record<string, number>[] {
  const syncs: Record<string, number>[] = [];
  for (let start = 0; start === 0 || start < cursors.length; start += SYNC_MAX_CHATS) {
    syncs.push(Object.fromEntries(cursors.slice(start, start + SYNC_MAX_CHATS)));
  }
  return syncs;
}

/** A random UUID (v4); `crypto.randomUUID` needs a secure context, this does not. */
export function newClientMsgId(): string {
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  bytes[6] = (bytes[6]! & 0x0f) | 0x40;
  bytes[8] = (bytes[8]! & 0x3f) | 0x80;
  const hex = [...bytes].map((byte) => byte.toString(16).padStart(2, "0")).join("");
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}

/** The global object when `storage` is its `localStorage` (whose writes it announces to other pages), else null. */
function storageEventsOf(storage: KeyValueStore): EventTarget | null {
  const global = globalThis as { localStorage?: unknown; addEventListener?: unknown };
  try {
    if (global.localStorage === storage && typeof global.addEventListener === "function") {
      return globalThis as unknown as EventTarget;
    }
  } catch {
    // Reading `localStorage` throws where storage is disabled: no events then.
  }
  return null;
}
