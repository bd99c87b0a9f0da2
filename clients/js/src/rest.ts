// Typed calls for every REST route (the README's routes; the original's
// aliases answer the same). Each returns the parsed body or throws ApiError
// with the status and the server's error body (DRF's shapes).
import type {
  Chat,
  HistoryPage,
  HistoryQuery,
  LoginRequest,
  Message,
  RegisterRequest,
  SendRequest,
  Tokens,
  User,
} from "./types.js";

/** A refused request: `status` and the server's body (`{"detail"}` or field errors). */
export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly body: unknown,
    /** From `Retry-After` on 429 and 503, in milliseconds. */
    readonly retryAfterMs: number | null,
  ) {
    super(`${status}: ${describe(body)}`);
    this.name = "ApiError";
  }

  /** The server's `code` (`token_not_valid`, `user_inactive`, ...), when it gave one. */
  get code(): string | undefined {
    const code = (this.body as { code?: unknown } | null)?.code;
    return typeof code === "string" ? code : undefined;
  }
}

function describe(body: unknown): string {
  if (body && typeof body === "object") {
    const { detail } = body as { detail?: unknown };
    if (typeof detail === "string") return detail;
    return Object.entries(body)
      .map(([field, messages]) => `${field}: ${([] as unknown[]).concat(messages).join(" ")}`)
      .join("; ");
  }
  return String(body);
}

/** Where authorized calls get their access token. */
export interface AccessSource {
  /** A current access token. */
  access(): Promise<string>;
  /** A new access token after the server refused the current one (401). */
  refreshed(): Promise<string>;
}

export interface RestOptions {
  /** The server's base URL: `https://chat.example.com` (a path prefix is kept). */
  baseUrl: string;
  /** `fetch`; the global one by default. */
  fetch?: typeof fetch;
  /** Tokens for the routes that need them (set by ChatClient). */
  auth?: AccessSource;
}

export class Rest {
  readonly baseUrl: string;
  readonly #fetch: typeof fetch;
  auth: AccessSource | undefined;

  constructor(options: RestOptions) {
    this.baseUrl = options.baseUrl.replace(/\/+$/, "");
    this.#fetch = options.fetch ?? ((...args) => globalThis.fetch(...args));
    this.auth = options.auth;
  }

  /** `POST /auth/register/` → 201 User. */
  register(body: RegisterRequest): Promise<User> {
    return this.#call("POST", "/auth/register/", body, false);
  }

  /** `POST /auth/login/` → `{access, refresh}`. */
  login(body: LoginRequest): Promise<Tokens> {
    return this.#call("POST", "/auth/login/", body, false);
  }

  /** `POST /auth/refresh/` → a new access token. */
  async refresh(refresh: string): Promise<string> {
    const body = await this.#call<{ access: string }>("POST", "/auth/refresh/", { refresh }, false);
    return body.access;
  }

  /** `POST /auth/logout/`: the refresh token stops working. */
  async logout(refresh: string): Promise<void> {
    await this.#call("POST", "/auth/logout/", { refresh }, false);
  }

  /** `GET /api/users/?q=`: users whose email, full name or nickname contain `q`. */
  searchUsers(q: string): Promise<User[]> {
    return this.#call("GET", `/api/users/?q=${encodeURIComponent(q)}`);
  }

  /** `POST /api/chat/start/`: the chat with `userId`, created (201) or existing (200). */
  startChat(userId: number): Promise<Chat> {
    return this.#call("POST", "/api/chat/start/", { user_id: userId });
  }

  /** `GET /api/chat/chats/`: my chats, most recent activity first. */
  chats(): Promise<Chat[]> {
    return this.#call("GET", "/api/chat/chats/");
  }

  /** `GET /api/chat/chats/{id}/messages/`: a history page, or a cursor read. */
  history(chat: number, query: HistoryQuery = {}): Promise<HistoryPage> {
    const params = new URLSearchParams();
    for (const [key, value] of Object.entries(query)) {
      if (value !== undefined && value !== null) params.set(key, String(value));
    }
    const search = params.toString() ? `?${params}` : "";
    return this.#call("GET", `/api/chat/chats/${chat}/messages/${search}`);
  }

  /** Up to `limit` (at most 100) messages after `afterSeq`, oldest first. */
  async after(chat: number, afterSeq: number, limit = 100): Promise<Message[]> {
    return (await this.history(chat, { after_seq: afterSeq, limit })).results;
  }

  /** Up to `limit` (at most 100) messages before `beforeSeq`, oldest first. */
  async before(chat: number, beforeSeq: number, limit = 100): Promise<Message[]> {
    return (await this.history(chat, { before_seq: beforeSeq, limit })).results;
  }

  /** `POST /api/chat/chats/{id}/messages/` → 201 Message (200: a retry of `client_msg_id`). */
  send(chat: number, body: SendRequest): Promise<Message> {
    return this.#call("POST", `/api/chat/chats/${chat}/messages/`, body);
  }

  async #call<T>(method: string, path: string, body?: unknown, authorized = true): Promise<T> {
    const auth = authorized ? this.auth : undefined;
    let response = await this.#request(method, path, body, auth && (await auth.access()));
    if (response.status === 401 && auth) {
      response = await this.#request(method, path, body, await auth.refreshed());
    }
    const text = await response.text();
    let parsed: unknown = text;
    try {
      parsed = text ? JSON.parse(text) : null;
    } catch {
      // not JSON: keep the text
    }
    if (!response.ok) throw new ApiError(response.status, parsed, retryAfter(response));
    return parsed as T;
  }

  #request(method: string, path: string, body: unknown, access: string | undefined): Promise<Response> {
    const headers: Record<string, string> = {};
    if (body !== undefined) headers["Content-Type"] = "application/json";
    if (access) headers.Authorization = `Bearer ${access}`;
    return this.#fetch(this.baseUrl + path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
    });
  }
}

function retryAfter(response: Response): number | null {
  const seconds = Number(response.headers.get("Retry-After"));
  return Number.isFinite(seconds) && seconds > 0 ? seconds * 1000 : null;
}
