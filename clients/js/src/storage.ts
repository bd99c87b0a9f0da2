// Where the client keeps what must outlive a connection or a page: each
// chat's cursor (the last seq the app was given) and the outbox of sends not
// yet acknowledged. Any object with localStorage's three methods will do:
// `localStorage` itself, `memoryStore()`, or the caller's own.

/** The part of the Web Storage API the client uses. */
export interface KeyValueStore {
  getItem(key: string): string | null;
  setItem(key: string, value: string): void;
  removeItem(key: string): void;
}

/** A store that lives as long as the process (or page). */
export function memoryStore(): KeyValueStore {
  const items = new Map<string, string>();
  return {
    getItem: (key) => items.get(key) ?? null,
    setItem: (key, value) => void items.set(key, value),
    removeItem: (key) => void items.delete(key),
  };
}

/** One JSON value under one key of a store. */
export class Persisted<T> {
  constructor(
    private readonly store: KeyValueStore,
    readonly key: string,
  ) {}

  load(fallback: T): T {
    const text = this.store.getItem(this.key);
    if (text === null) return fallback;
    try {
      return JSON.parse(text) as T;
    } catch {
      return fallback;
    }
  }

  save(value: T): void {
    this.store.setItem(this.key, JSON.stringify(value));
  }

  clear(): void {
    this.store.removeItem(this.key);
  }
}

/**
 * The cursors to store: each chat at the furthest of this page's cursor and
 * the stored one. Pages of one user share the storage, and one that lags (a
 * background tab catching up) must not move a stored cursor back: the page
 * loaded next would be handed again what another page was given. The
 * exception is a chat in `lowered`: this page found the stored cursor past
 * the chat's end (the database lost those messages), and its own one stands.
 * Two pages saving at the same moment can still leave a cursor behind (a
 * browser does not make one page's read and write of localStorage atomic
 * against another's); the page that had it saves it again on the other's
 * `storage` event (see `ChatClient`'s `storageEvents`), and only if it closed
 * first is the next page handed those messages again, never fewer.
 */
export function furthestCursors(
  stored: Record<string, number>,
  mine: ReadonlyMap<number, number>,
  lowered: ReadonlySet<number> = new Set(),
): Record<string, number> {
  const merged: Record<string, number> = {};
  for (const [chat, seq] of Object.entries(stored)) {
    if (Number.isSafeInteger(seq)) merged[chat] = seq;
  }
  for (const [chat, seq] of mine) merged[chat] = lowered.has(chat) ? seq : Math.max(seq, merged[chat] ?? 0);
  return merged;
}
