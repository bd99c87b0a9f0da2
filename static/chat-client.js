// @chat-server/client, bundled from clients/js by `npm run build`: do not edit.
// The demo page (static/index.html) imports it; a test fails when it is out of date.

// src/backoff.ts
var DEFAULT_BACKOFF = { baseMs: 500, capMs: 3e4 };
function backoffDelay(attempt, backoff, random = Math.random) {
  const ceiling = Math.min(backoff.capMs, backoff.baseMs * 2 ** Math.min(attempt, 30));
  return Math.floor(random() * ceiling);
}

// src/emitter.ts
var Emitter = class {
  #listeners = /* @__PURE__ */ new Map();
  /** Calls `listener` on every `event`; returns a function that stops it. */
  on(event, listener) {
    let set = this.#listeners.get(event);
    if (!set) this.#listeners.set(event, set = /* @__PURE__ */ new Set());
    set.add(listener);
    return () => set.delete(listener);
  }
  emit(event, value) {
    for (const listener of this.#listeners.get(event) ?? []) {
      try {
        listener(value);
      } catch (error) {
        console.error(`chat-server client: a "${String(event)}" listener threw`, error);
      }
    }
  }
};

// src/storage.ts
function memoryStore() {
  const items = /* @__PURE__ */ new Map();
  return {
    getItem: (key) => items.get(key) ?? null,
    setItem: (key, value) => void items.set(key, value),
    removeItem: (key) => void items.delete(key)
  };
}
var Persisted = class {
  constructor(store, key) {
    this.store = store;
    this.key = key;
  }
  load(fallback) {
    const text = this.store.getItem(this.key);
    if (text === null) return fallback;
    try {
      return JSON.parse(text);
    } catch {
      return fallback;
    }
  }
  save(value) {
    this.store.setItem(this.key, JSON.stringify(value));
  }
  clear() {
    this.store.removeItem(this.key);
  }
};
function furthestCursors(stored, mine, lowered = /* @__PURE__ */ new Set()) {
  const merged = {};
  for (const [chat, seq] of Object.entries(stored)) {
    if (Number.isSafeInteger(seq)) merged[chat] = seq;
  }
  for (const [chat, seq] of mine) merged[chat] = lowered.has(chat) ? seq : Math.max(seq, merged[chat] ?? 0);
  return merged;
}

// src/outbox.ts
var SETTLED_KEPT = 256;
var Outbox = class {
  #persisted;
  /** The ids of the sends pages settled last, oldest first. */
  #settledIds;
  /** In the order the user sent them; settled ones leave from the front. */
  #entries;
  /** Every client id this page has held, settled ones included. */
  #known = /* @__PURE__ */ new Set();
  /** Pending sends this page added, which it writes again when they go missing. */
  #own = /* @__PURE__ */ new Set();
  constructor(store, key) {
    this.#persisted = new Persisted(store, key);
    this.#settledIds = new Persisted(store, `${key}:settled`);
    this.#entries = this.#stored().map((stored) => ({ ...stored, status: "pending" }));
    for (const entry of this.#entries) this.#known.add(entry.client_msg_id);
  }
  /** Sends still waiting, oldest first. */
  pending() {
    return this.#entries.filter((entry) => entry.status === "pending");
  }
  add(chat, content, metadata, clientMsgId) {
    const entry = { client_msg_id: clientMsgId, chat, content, metadata, status: "pending" };
    this.#entries.push(entry);
    this.#known.add(clientMsgId);
    this.#own.add(clientMsgId);
    this.#save(entry);
    return entry;
  }
  has(clientMsgId) {
    return clientMsgId != null && this.#find(clientMsgId)?.status === "pending";
  }
  /** The echo arrived: returns the entries now announceable, in order. */
  acknowledge(message) {
    const entry = message.client_msg_id == null ? void 0 : this.#find(message.client_msg_id);
    if (!entry || entry.status !== "pending") return [];
    entry.status = "sent";
    entry.message = message;
    return this.#settle(entry);
  }
  /** A final refusal: returns the entries now announceable, in order. */
  fail(error) {
    const entry = error.client_msg_id == null ? void 0 : this.#find(error.client_msg_id);
    if (!entry || entry.status !== "pending") return [];
    entry.status = "failed";
    entry.error = { code: error.code, detail: error.detail };
    return this.#settle(entry);
  }
  #find(clientMsgId) {
    return this.#entries.find((entry) => entry.client_msg_id === clientMsgId);
  }
  /**
   * `entry` was settled: left out of the list, and named as settled when
   * another page may have added it (a send this page added is no other
   * page's own, so a page alone in its store writes no names).
   */
  #settle(entry) {
    if (!this.#own.delete(entry.client_msg_id)) this.#recordSettled(entry.client_msg_id);
    const settled = [];
    while (this.#entries.length > 0 && this.#entries[0].status !== "pending") {
      settled.push(this.#entries.shift());
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
  storageWritten(key) {
    if (key !== null && key !== this.#persisted.key) return;
    const stored = this.#persisted.load(null);
    if (!Array.isArray(stored)) return;
    const present = new Set(stored.map((entry) => entry.client_msg_id));
    if ([...this.#own].some((id) => !present.has(id))) this.#save();
  }
  /** Removes the stored list and the settled ids (a logout). */
  forget() {
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
  #save(added) {
    const stored = this.#persisted.load(null);
    const pending = new Set(this.pending().map((entry) => entry.client_msg_id));
    const kept = (Array.isArray(stored) ? stored : []).filter(
      ({ client_msg_id }) => !this.#known.has(client_msg_id) || pending.has(client_msg_id)
    );
    const present = new Set(kept.map((entry) => entry.client_msg_id));
    const joining = Array.isArray(stored) ? this.#droppedOwn(present) : added ? [added] : [];
    for (const { client_msg_id, chat, content, metadata } of joining) {
      kept.push({ client_msg_id, chat, content, metadata });
    }
    this.#persisted.save(kept);
  }
  /** Pending sends this page added that are not in `present` and that no page says it settled. */
  #droppedOwn(present) {
    const missing = this.pending().filter(({ client_msg_id: id }) => this.#own.has(id) && !present.has(id));
    if (missing.length === 0) return [];
    const settledElsewhere = new Set(this.#settledIdsStored());
    for (const { client_msg_id: id } of missing) if (settledElsewhere.has(id)) this.#own.delete(id);
    return missing.filter(({ client_msg_id: id }) => this.#own.has(id));
  }
  /** Adds `id` to the settled ids other pages read, keeping the last `SETTLED_KEPT`. */
  #recordSettled(id) {
    this.#settledIds.save([...this.#settledIdsStored().slice(1 - SETTLED_KEPT), id]);
  }
  /** The settled ids; none when the store holds something else. */
  #settledIdsStored() {
    const stored = this.#settledIds.load(null);
    return Array.isArray(stored) ? stored : [];
  }
  /** The stored list; nothing when the store holds something else. */
  #stored() {
    const stored = this.#persisted.load(null);
    return Array.isArray(stored) ? stored : [];
  }
};

// src/rest.ts
var ApiError = class extends Error {
  constructor(status, body, retryAfterMs) {
    super(`${status}: ${describe(body)}`);
    this.status = status;
    this.body = body;
    this.retryAfterMs = retryAfterMs;
    this.name = "ApiError";
  }
  /** The server's `code` (`token_not_valid`, `user_inactive`, ...), when it gave one. */
  get code() {
    const code = this.body?.code;
    return typeof code === "string" ? code : void 0;
  }
};
function describe(body) {
  if (body && typeof body === "object") {
    const { detail } = body;
    if (typeof detail === "string") return detail;
    return Object.entries(body).map(([field, messages]) => `${field}: ${[].concat(messages).join(" ")}`).join("; ");
  }
  return String(body);
}
var Rest = class {
  baseUrl;
  #fetch;
  auth;
  constructor(options) {
    this.baseUrl = options.baseUrl.replace(/\/+$/, "");
    this.#fetch = options.fetch ?? ((...args) => globalThis.fetch(...args));
    this.auth = options.auth;
  }
  /** `POST /auth/register/` → 201 User. */
  register(body) {
    return this.#call("POST", "/auth/register/", body, false);
  }
  /** `POST /auth/login/` → `{access, refresh}`. */
  login(body) {
    return this.#call("POST", "/auth/login/", body, false);
  }
  /** `POST /auth/refresh/` → a new access token. */
  async refresh(refresh) {
    const body = await this.#call("POST", "/auth/refresh/", { refresh }, false);
    return body.access;
  }
  /** `POST /auth/logout/`: the refresh token stops working. */
  async logout(refresh) {
    await this.#call("POST", "/auth/logout/", { refresh }, false);
  }
  /** `GET /api/users/?q=`: users whose email, full name or nickname contain `q`. */
  searchUsers(q) {
    return this.#call("GET", `/api/users/?q=${encodeURIComponent(q)}`);
  }
  /** `POST /api/chat/start/`: the chat with `userId`, created (201) or existing (200). */
  startChat(userId) {
    return this.#call("POST", "/api/chat/start/", { user_id: userId });
  }
  /** `GET /api/chat/chats/`: my chats, most recent activity first. */
  chats() {
    return this.#call("GET", "/api/chat/chats/");
  }
  /** `GET /api/chat/chats/{id}/messages/`: a history page, or a cursor read. */
  history(chat, query = {}) {
    const params = new URLSearchParams();
    for (const [key, value] of Object.entries(query)) {
      if (value !== void 0 && value !== null) params.set(key, String(value));
    }
    const search = params.toString() ? `?${params}` : "";
    return this.#call("GET", `/api/chat/chats/${chat}/messages/${search}`);
  }
  /** Up to `limit` (at most 100) messages after `afterSeq`, oldest first. */
  async after(chat, afterSeq, limit = 100) {
    return (await this.history(chat, { after_seq: afterSeq, limit })).results;
  }
  /** Up to `limit` (at most 100) messages before `beforeSeq`, oldest first. */
  async before(chat, beforeSeq, limit = 100) {
    return (await this.history(chat, { before_seq: beforeSeq, limit })).results;
  }
  /** `POST /api/chat/chats/{id}/messages/` → 201 Message (200: a retry of `client_msg_id`). */
  send(chat, body) {
    return this.#call("POST", `/api/chat/chats/${chat}/messages/`, body);
  }
  async #call(method, path, body, authorized = true) {
    const auth = authorized ? this.auth : void 0;
    let response = await this.#request(method, path, body, auth && await auth.access());
    if (response.status === 401 && auth) {
      response = await this.#request(method, path, body, await auth.refreshed());
    }
    const text = await response.text();
    let parsed = text;
    try {
      parsed = text ? JSON.parse(text) : null;
    } catch {
    }
    if (!response.ok) throw new ApiError(response.status, parsed, retryAfter(response));
    return parsed;
  }
  #request(method, path, body, access) {
    const headers = {};
    if (body !== void 0) headers["Content-Type"] = "application/json";
    if (access) headers.Authorization = `Bearer ${access}`;
    return this.#fetch(this.baseUrl + path, {
      method,
      headers,
      body: body === void 0 ? void 0 : JSON.stringify(body)
    });
  }
};
function retryAfter(response) {
  const seconds = Number(response.headers.get("Retry-After"));
  return Number.isFinite(seconds) && seconds > 0 ? seconds * 1e3 : null;
}

// src/tokens.ts
var SignedOut = class extends Error {
  constructor(reason) {
    super(`signed out: ${reason}`);
    this.reason = reason;
    this.name = "SignedOut";
  }
};
function claimsOf(token) {
  const part = token.split(".")[1] ?? "";
  const base64 = part.replace(/-/g, "+").replace(/_/g, "/").padEnd(Math.ceil(part.length / 4) * 4, "=");
  const claims = JSON.parse(atob(base64));
  return { user_id: Number(claims.user_id), exp: claims.exp, iat: claims.iat };
}
var TokenKeeper = class {
  constructor(tokens, options) {
    this.options = options;
    this.#tokens = { ...tokens };
    this.#schedule();
  }
  #tokens;
  #refreshing = null;
  #timer = null;
  #signedOut = null;
  get tokens() {
    return { ...this.#tokens };
  }
  get userId() {
    return claimsOf(this.#tokens.access).user_id;
  }
  get isSignedOut() {
    return this.#signedOut !== null;
  }
  /** An access token valid for at least the margin, refreshed first if needed. */
  async access() {
    if (this.#signedOut) throw this.#signedOut;
    return this.#msLeft() > this.#margin() ? this.#tokens.access : this.refreshed();
  }
  /** A new access token (one refresh in flight however many callers ask). */
  refreshed() {
    if (this.#signedOut) return Promise.reject(this.#signedOut);
    this.#refreshing ??= this.#refresh().finally(() => this.#refreshing = null);
    return this.#refreshing;
  }
  /** Stops the refresh timer (the client is closing). */
  stop() {
    if (this.#timer !== null) clearTimeout(this.#timer);
    this.#timer = null;
  }
  async #refresh() {
    try {
      const access = await this.options.refresh(this.#tokens.refresh);
      this.#tokens = { ...this.#tokens, access };
      this.options.changed(this.tokens);
      this.#schedule();
      return access;
    } catch (error) {
      if (error instanceof ApiError && (error.status === 401 || error.status === 400)) {
        this.signOut(`refresh refused (${error.status}: ${error.code ?? "no code"})`);
        throw this.#signedOut;
      }
      throw error;
    }
  }
  /** Ends the session for good (also on close 4003, the user deactivated). */
  signOut(reason) {
    if (this.#signedOut) return;
    this.#signedOut = new SignedOut(reason);
    this.stop();
    this.options.signedOut(reason);
  }
  #schedule() {
    this.stop();
    const wait = Math.max(0, this.#msLeft() - this.#margin());
    this.#timer = setTimeout(() => {
      this.#timer = null;
      this.refreshed().catch(() => {
      });
    }, wait);
    this.#timer.unref?.();
  }
  #msLeft() {
    return claimsOf(this.#tokens.access).exp * 1e3 - Date.now();
  }
  #margin() {
    if (this.options.marginMs !== void 0) return this.options.marginMs;
    const { exp, iat } = claimsOf(this.#tokens.access);
    return Math.min(6e4, (exp - iat) * 1e3 / 10);
  }
};

// src/client.ts
var OPEN = 1;
var SYNC_MAX_CHATS = 1e3;
var RETRYABLE = /* @__PURE__ */ new Set(["rate_limited", "unavailable"]);
var ChatClient = class _ChatClient extends Emitter {
  rest;
  userId;
  #options;
  #tokens;
  #outbox;
  #saved;
  #savedTokens;
  /** The last seq passed to the app, per chat. */
  #cursors = /* @__PURE__ */ new Map();
  /** Chats whose cursor this page moved back (see `#forgetPastEnd`); the next save writes them as they are. */
  #lowered = /* @__PURE__ */ new Set();
  /** Other pages' storage writes, and this page's answer to them (see `storageEvents`). */
  #storageEvents;
  #onStorage = (event) => this.#storageWritten(event.key ?? null);
  #cursorsDirty = false;
  /** Synced before: a chat it has no cursor for is new, and starts at 0. */
  #resumed;
  #chats = /* @__PURE__ */ new Map();
  /** Messages past a gap, per chat, by seq, until the gap is filled. */
  #heldBack = /* @__PURE__ */ new Map();
  #filling = /* @__PURE__ */ new Set();
  #inFlight = /* @__PURE__ */ new Set();
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
  #readsToSend = /* @__PURE__ */ new Map();
  #typedAt = /* @__PURE__ */ new Map();
  #socket = null;
  #state = null;
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
  #syncsToSend = [];
  /** While a later sync is in flight: the pongs due before the one that follows it; else -1. */
  #pongsBeforeSync = -1;
  /** The sync in flight was refused for the rate: its wait, in ms. */
  #syncRefusedFor = null;
  #timers = /* @__PURE__ */ new Set();
  #heartbeat = null;
  /** The backoff wait before the next attempt, while there is one. */
  #retry = null;
  #listing = null;
  /** Logs in and returns a client (not yet connected: call `connect()`). */
  static async login(options, credentials) {
    const rest = new Rest({ baseUrl: options.url, fetch: options.fetch });
    return new _ChatClient(options, await rest.login(credentials));
  }
  /** The client of the tokens kept in `options.storage` by an earlier page, or null. */
  static restore(options) {
    const storage = options.storage ?? memoryStore();
    const tokens = new Persisted(storage, `${options.storageKey ?? "chat-server"}:tokens`).load(null);
    return tokens ? new _ChatClient({ ...options, storage }, tokens) : null;
  }
  constructor(options, tokens) {
    super();
    const WebSocket = options.WebSocket ?? globalThis.WebSocket;
    if (!WebSocket) throw new TypeError("No WebSocket: pass options.WebSocket (in Node, `ws`'s WebSocket).");
    this.#options = {
      url: options.url,
      WebSocket,
      storage: options.storage ?? memoryStore(),
      storageKey: options.storageKey ?? "chat-server",
      backoff: options.backoff ?? DEFAULT_BACKOFF,
      heartbeatMs: options.heartbeatMs ?? 15e3,
      connectTimeoutMs: options.connectTimeoutMs ?? 15e3,
      pageSize: options.pageSize ?? 100,
      typingIntervalMs: options.typingIntervalMs ?? 3e3
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
      signedOut: (reason) => this.#signedOut(reason)
    });
    this.rest.auth = { access: () => this.#tokens.access(), refreshed: () => this.#tokens.refreshed() };
    this.userId = this.#tokens.userId;
    this.#outbox = new Outbox(storage, `${storageKey}:${this.userId}:outbox`);
    this.#saved = new Persisted(storage, `${storageKey}:${this.userId}:cursors`);
    const saved = this.#saved.load(null);
    this.#resumed = saved !== null;
    for (const [chat, seq] of Object.entries(saved?.cursors ?? {})) this.#cursors.set(Number(chat), seq);
    this.#storageEvents = options.storageEvents === void 0 ? storageEventsOf(storage) : options.storageEvents;
    this.#storageEvents?.addEventListener("storage", this.#onStorage);
  }
  /** The connection's state (null before `connect()`). */
  get state() {
    return this.#state;
  }
  get tokens() {
    return this.#tokens.tokens;
  }
  /** The chats learned so far, most recent activity first. */
  chats() {
    return [...this.#chats.values()].sort((a, b) => a.updated_at < b.updated_at ? 1 : a.updated_at > b.updated_at ? -1 : b.id - a.id);
  }
  chat(id) {
    return this.#chats.get(id);
  }
  /** The last seq of `chat` the app was given (0: none). */
  cursor(chat) {
    return this.#cursors.get(chat) ?? 0;
  }
  /** Sends not yet acknowledged, oldest first (after a reload too). */
  pending() {
    return this.#outbox.pending().map((entry) => ({ ...entry }));
  }
  /** Opens the user socket, and keeps one open until `close()`. */
  connect() {
    if (this.#closed || this.#socket || this.#state === "connecting") return;
    void this.#open();
  }
  /**
   * Tries to connect now rather than at the end of the backoff wait: for when
   * the app knows the network is back (a browser's `online` event).
   */
  retryNow() {
    if (this.#closed || this.#socket || this.#retry === null) return;
    clearTimeout(this.#retry);
    this.#timers.delete(this.#retry);
    this.#retry = null;
    void this.#open();
  }
  /** Closes the socket for good; the outbox and cursors stay in storage. */
  close() {
    this.#closed = true;
    this.#storageEvents?.removeEventListener("storage", this.#onStorage);
    this.#tokens.stop();
    for (const timer of this.#timers) clearTimeout(timer);
    this.#timers.clear();
    this.#abandon(1e3);
    if (this.#state !== null) this.#setState("offline");
  }
  /** Revokes the refresh token, closes, and forgets this user's stored state. */
  async logout() {
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
  send(chat, content, metadata = {}) {
    const entry = this.#outbox.add(chat, content, metadata, newClientMsgId());
    this.emit("outbox", { ...entry });
    this.#flushOutbox();
    return { ...entry };
  }
  /** Moves the user's read marker in `chat` to `seq` (default: its last message). */
  markRead(chat, seq) {
    const known = this.#chats.get(chat);
    const target = seq ?? known?.last_seq ?? 0;
    if (target < 1 || known && target <= known.read_seq) return;
    if (known) {
      known.read_seq = target;
      known.unread_count = Math.max(0, known.last_seq - target);
      this.emit("chat", { ...known });
    }
    this.#readsToSend.set(chat, Math.max(target, this.#readsToSend.get(chat) ?? 0));
    this.#flushReads();
  }
  /** Tells the other participant the user is typing (at most once per interval). */
  typing(chat) {
    const now = Date.now();
    if (!this.#live || now - (this.#typedAt.get(chat) ?? -Infinity) < this.#options.typingIntervalMs) return;
    this.#typedAt.set(chat, now);
    this.#write({ type: "typing", chat });
  }
  // ---- the connection ----
  async #open() {
    if (this.#closed) return;
    this.#setState("connecting");
    let access;
    try {
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
      if (this.#socket === socket && !this.#live) this.#abandon(4e3);
    });
    socket.onmessage = (event) => {
      if (this.#socket !== socket) return;
      this.#heardAt = Date.now();
      this.#pinged = false;
      ready = true;
      let parsed;
      try {
        parsed = JSON.parse(String(event.data));
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
    };
  }
  #onEvent(socket, event) {
    switch (event.type) {
      case "ready":
        this.#unready = 0;
        this.#resume(socket).catch((error) => {
          if (this.#socket !== socket) return;
          this.emit("error", error instanceof Error ? error : new Error(String(error)));
          this.#abandon(4e3);
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
  async #resume(socket) {
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
  #nextSync(socket) {
    const chats = this.#syncsToSend[0];
    if (this.#socket !== socket || this.#pongsBeforeSync >= 0 || !chats) return;
    this.#syncRefusedFor = null;
    this.#pongsBeforeSync = this.#pingsOut;
    this.#write({ type: "sync", chats });
    this.#ping();
  }
  #ping() {
    if (this.#write({ type: "ping" })) this.#pingsOut++;
  }
  #onPong(socket) {
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
  #dropped(code) {
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
      this.#attempt = 1;
      this.#tokens.refreshed().then(
        () => void this.#open(),
        (error) => {
          if (!(error instanceof SignedOut)) this.#retryLater();
        }
      );
      return;
    }
    this.#setState("offline");
    this.#retryLater();
  }
  /** Gives up on the current socket (closed, or silent) and starts again. */
  #abandon(code) {
    const socket = this.#socket;
    if (!socket) return;
    this.#socket = null;
    try {
      socket.close(code === 1e3 ? 1e3 : 4e3);
    } catch {
    }
    this.#dropped(code);
  }
  #goneQuiet() {
    this.#live = false;
    this.#pingsOut = 0;
    this.#syncsToSend = [];
    this.#pongsBeforeSync = -1;
    this.#inFlight.clear();
    if (this.#heartbeat !== null) clearInterval(this.#heartbeat);
    this.#heartbeat = null;
  }
  #retryLater() {
    if (this.#closed || this.#tokens.isSignedOut) return;
    this.#retry = this.#after(backoffDelay(this.#attempt++, this.#options.backoff), () => {
      this.#retry = null;
      void this.#open();
    });
  }
  #startHeartbeat(socket) {
    this.#heartbeat = setInterval(() => {
      if (this.#socket !== socket) return;
      if (Date.now() - this.#heardAt < this.#options.heartbeatMs) return;
      if (this.#pinged) {
        this.#abandon(4e3);
        return;
      }
      this.#pinged = true;
      this.#ping();
    }, this.#options.heartbeatMs);
  }
  #setState(state) {
    if (this.#state === state) return;
    this.#state = state;
    this.emit("state", state);
  }
  #signedOut(reason) {
    this.close();
    this.#savedTokens.clear();
    this.emit("signedOut", { reason });
  }
  #after(ms, run) {
    const timer = setTimeout(() => {
      this.#timers.delete(timer);
      run();
    }, ms);
    this.#timers.add(timer);
    return timer;
  }
  #write(event) {
    const socket = this.#socket;
    if (!this.#live || !socket || socket.readyState !== OPEN) return false;
    socket.send(JSON.stringify(event));
    return true;
  }
  // ---- chats and messages ----
  /** A chat from the list or a `chat` event; a chat without a cursor starts at `startAt`. */
  #learn(chat, startAt) {
    const known = this.#chats.get(chat.id);
    const merged = known ? {
      ...chat,
      last_seq: Math.max(chat.last_seq, known.last_seq),
      peer_read_seq: Math.max(chat.peer_read_seq, known.peer_read_seq)
    } : { ...chat };
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
  #forgetPastEnd(chat) {
    if (this.cursor(chat.id) <= chat.last_seq) return;
    this.#cursors.set(chat.id, chat.last_seq);
    this.#lowered.add(chat.id);
    this.#heldBack.delete(chat.id);
    this.#chats.delete(chat.id);
  }
  /** One message from the socket or REST: passed on in seq order, once. */
  #accept(message) {
    if (message.sender.id === this.userId) this.#announce(this.#outbox.acknowledge(message));
    const chat = message.chat;
    if (!this.#chats.has(chat)) this.#relist();
    const cursor = this.cursor(chat);
    if (message.seq <= cursor) return;
    if (message.seq > cursor + 1) {
      let held2 = this.#heldBack.get(chat);
      if (!held2) this.#heldBack.set(chat, held2 = /* @__PURE__ */ new Map());
      held2.set(message.seq, message);
      void this.#fillGap(chat);
      return;
    }
    this.#deliver(message);
    const held = this.#heldBack.get(chat);
    let next;
    while (held && (next = held.get(this.cursor(chat) + 1))) {
      held.delete(next.seq);
      this.#deliver(next);
    }
    if (held?.size === 0) this.#heldBack.delete(chat);
  }
  #deliver(message) {
    this.#cursors.set(message.chat, message.seq);
    this.#saveCursorsSoon();
    const chat = this.#chats.get(message.chat);
    if (chat) {
      if (message.seq >= chat.last_seq) {
        chat.last_seq = message.seq;
        chat.last_message = message;
        chat.updated_at = message.created_at;
      }
      if (message.sender.id === this.userId) chat.read_seq = Math.max(chat.read_seq, message.seq);
      else chat.peer_read_seq = Math.max(chat.peer_read_seq, message.seq);
      chat.unread_count = Math.max(0, chat.last_seq - chat.read_seq);
    }
    if (chat) this.emit("chat", { ...chat });
    this.emit("message", message);
  }
  /** Reads `chat` through REST from its cursor up to `upTo`. */
  async #readThrough(chat, upTo) {
    while (this.cursor(chat) < upTo) {
      const page = await this.rest.after(chat, this.cursor(chat), this.#options.pageSize);
      if (page.length === 0) return;
      for (const message of page) this.#accept(message);
    }
  }
  /** Messages arrived past a gap: read the gap through REST. */
  async #fillGap(chat) {
    if (this.#filling.has(chat)) return;
    this.#filling.add(chat);
    try {
      for (; ; ) {
        const held = this.#heldBack.get(chat);
        if (!held || held.size === 0) return;
        const before = this.cursor(chat);
        await this.#readThrough(chat, Math.min(...held.keys()) - 1);
        if (this.cursor(chat) === before) return;
      }
    } catch (error) {
      this.emit("error", error instanceof Error ? error : new Error(String(error)));
    } finally {
      this.#filling.delete(chat);
    }
  }
  /** A message of a chat not in the list: read the list again (once at a time). */
  #relist() {
    this.#listing ??= this.rest.chats().then((list) => {
      for (const chat of list) if (!this.#chats.has(chat.id)) this.#learn(chat, 0);
    }).catch((error) => this.emit("error", error instanceof Error ? error : new Error(String(error)))).finally(() => this.#listing = null);
  }
  /**
   * A marker the app did not know yet: passed on. One it knew is not (the
   * server tells markers again after catching a socket up, and markers never
   * move back).
   */
  #onRead(event) {
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
  #saveCursors() {
    this.#cursorsDirty = false;
    const stored = this.#saved.load(null)?.cursors ?? {};
    this.#saved.save({ cursors: furthestCursors(stored, this.#cursors, this.#lowered) });
    this.#lowered.clear();
  }
  /** Another page wrote `key` (null: it cleared the storage); `close()` stops these. */
  #storageWritten(key) {
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
  #cursorsWritten(key) {
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
  #saveCursorsSoon() {
    if (this.#cursorsDirty) return;
    this.#cursorsDirty = true;
    queueMicrotask(() => {
      if (this.#cursorsDirty) this.#saveCursors();
    });
  }
  // ---- the outbox ----
  #flushOutbox() {
    if (this.#sendsHeld) return;
    for (const entry of this.#outbox.pending()) {
      if (this.#inFlight.has(entry.client_msg_id)) continue;
      const { chat, content, metadata, client_msg_id } = entry;
      if (!this.#write({ type: "message.send", chat, content, metadata, client_msg_id })) return;
      this.#inFlight.add(client_msg_id);
    }
  }
  #flushReads() {
    for (const [chat, seq] of this.#readsToSend) {
      if (!this.#write({ type: "read", chat, seq })) return;
      this.#readsToSend.delete(chat);
    }
  }
  #onRefused(error) {
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
      this.#inFlight.delete(error.client_msg_id);
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
  #announce(settled) {
    for (const entry of settled) {
      this.#inFlight.delete(entry.client_msg_id);
      this.emit("outbox", { ...entry });
    }
    if (this.#sendsHeld) this.#resumeSends();
  }
  /** Sends the outbox again once a held refusal's wait has passed and nothing is in flight. */
  #resumeSends() {
    if (!this.#sendsHeld || !this.#waitedOut || this.#inFlight.size > 0) return;
    this.#sendsHeld = false;
    this.#flushOutbox();
  }
};
function retryWait(error) {
  return Number(/retry in (\d+) ms/.exec(error.detail)?.[1] ?? 1e3);
}
function syncsOf(cursors) {
  const syncs = [];
  for (let start = 0; start === 0 || start < cursors.length; start += SYNC_MAX_CHATS) {
    syncs.push(Object.fromEntries(cursors.slice(start, start + SYNC_MAX_CHATS)));
  }
  return syncs;
}
function newClientMsgId() {
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  bytes[6] = bytes[6] & 15 | 64;
  bytes[8] = bytes[8] & 63 | 128;
  const hex = [...bytes].map((byte) => byte.toString(16).padStart(2, "0")).join("");
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}
function storageEventsOf(storage) {
  const global = globalThis;
  try {
    if (global.localStorage === storage && typeof global.addEventListener === "function") {
      return globalThis;
    }
  } catch {
  }
  return null;
}
export {
  ApiError,
  ChatClient,
  DEFAULT_BACKOFF,
  Rest,
  SignedOut,
  backoffDelay,
  claimsOf,
  memoryStore,
  newClientMsgId
};
