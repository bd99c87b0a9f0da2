// The user's tokens: an access token kept fresh (refreshed shortly before it
// expires, and at once when the server refuses it), and the refresh token
// behind it. A refused refresh signs the user out exactly once; after that
// nothing is retried, so a client can never loop on a dead session.
import { ApiError } from "./rest.js";
import type { Tokens } from "./types.js";

/** The access token cannot be renewed: the user must log in again. */
export class SignedOut extends Error {
  constructor(readonly reason: string) {
    super(`signed out: ${reason}`);
    this.name = "SignedOut";
  }
}

export interface TokenKeeperOptions {
  /** Exchanges a refresh token for an access token (`Rest.refresh`). */
  refresh(refreshToken: string): Promise<string>;
  /** Called with the tokens after every change (to persist them). */
  changed(tokens: Tokens): void;
  /** Called once when the refresh token is refused. */
  signedOut(reason: string): void;
  /** Refresh this long before expiry (default: a tenth of the lifetime, at most 60 s). */
  marginMs?: number;
}

/** The claims the client reads from an access token. */
export function claimsOf(token: string): { user_id: number; exp: number; iat: number } {
  const part = token.split(".")[1] ?? "";
  const base64 = part.replace(/-/g, "+").replace(/_/g, "/").padEnd(Math.ceil(part.length / 4) * 4, "=");
  const claims = JSON.parse(atob(base64)) as { user_id: string | number; exp: number; iat: number };
  return { user_id: Number(claims.user_id), exp: claims.exp, iat: claims.iat };
}

export class TokenKeeper {
  #tokens: Tokens;
  #refreshing: Promise<string> | null = null;
  #timer: ReturnType<typeof setTimeout> | null = null;
  #signedOut: SignedOut | null = null;

  constructor(
    tokens: Tokens,
    private readonly options: TokenKeeperOptions,
  ) {
    this.#tokens = { ...tokens };
    this.#schedule();
  }

  get tokens(): Tokens {
    return { ...this.#tokens };
  }

  get userId(): number {
    return claimsOf(this.#tokens.access).user_id;
  }

  get isSignedOut(): boolean {
    return this.#signedOut !== null;
  }

  /** An access token valid for at least the margin, refreshed first if needed. */
  async access(): Promise<string> {
    if (this.#signedOut) throw this.#signedOut;
    return this.#msLeft() > this.#margin() ? this.#tokens.access : this.refreshed();
  }

  /** A new access token (one refresh in flight however many callers ask). */
  refreshed(): Promise<string> {
    if (this.#signedOut) return Promise.reject(this.#signedOut);
    this.#refreshing ??= this.#refresh().finally(() => (this.#refreshing = null));
    return this.#refreshing;
  }

  /** Stops the refresh timer (the client is closing). */
  stop(): void {
    if (this.#timer !== null) clearTimeout(this.#timer);
    this.#timer = null;
  }

  async #refresh(): Promise<string> {
    try {
      const access = await this.options.refresh(this.#tokens.refresh);
      this.#tokens = { ...this.#tokens, access };
      this.options.changed(this.tokens);
      this.#schedule();
      return access;
    } catch (error) {
      // 401 (expired, blacklisted, wrong kind) and 400 (malformed) are final;
      // anything else (network, 5xx, 429) is not a verdict on the session.
      if (error instanceof ApiError && (error.status === 401 || error.status === 400)) {
        this.signOut(`refresh refused (${error.status}: ${error.code ?? "no code"})`);
        throw this.#signedOut;
      }
      throw error;
    }
  }

  /** Ends the session for good (also on close 4003, the user deactivated). */
  signOut(reason: string): void {
    if (this.#signedOut) return;
    this.#signedOut = new SignedOut(reason);
    this.stop();
    this.options.signedOut(reason);
  }

  #schedule(): void {
    this.stop();
    const wait = Math.max(0, this.#msLeft() - this.#margin());
    this.#timer = setTimeout(() => {
      this.#timer = null;
      this.refreshed().catch(() => {
        // A network failure: access() will try again when a token is needed.
      });
    }, wait);
    (this.#timer as { unref?: () => void }).unref?.();
  }

  #msLeft(): number {
    return claimsOf(this.#tokens.access).exp * 1000 - Date.now();
  }

  #margin(): number {
    if (this.options.marginMs !== undefined) return this.options.marginMs;
    const { exp, iat } = claimsOf(this.#tokens.access);
    return Math.min(60_000, ((exp - iat) * 1000) / 10);
  }
}
