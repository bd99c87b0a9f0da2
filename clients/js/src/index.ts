// @chat-server/client: the chat-server client for browsers and Node.js.
export { ChatClient, newClientMsgId } from "./client.js";
export type { ChatClientOptions, ClientEvents, ConnectionState, SocketFactory, SocketLike } from "./client.js";
export type { OutboxEntry, SendStatus } from "./outbox.js";
export { ApiError, Rest } from "./rest.js";
export type { AccessSource, RestOptions } from "./rest.js";
export { memoryStore } from "./storage.js";
export type { KeyValueStore } from "./storage.js";
export { SignedOut, claimsOf } from "./tokens.js";
export { backoffDelay, DEFAULT_BACKOFF } from "./backoff.js";
export type { Backoff } from "./backoff.js";
export type * from "./types.js";
export type { components, paths } from "./schema.js";
