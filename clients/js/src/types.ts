// The shapes the server speaks. REST shapes come from the generated OpenAPI
// types (schema.ts), so they cannot drift from the server; the WebSocket
// events are written here from the README's protocol tables.
import type { components } from "./schema.js";

type Schemas = components["schemas"];
type PathItems = components["pathItems"];

export type User = Schemas["User"];
export type Chat = Schemas["Chat"];
export type Message = Schemas["Message"];
export type Tokens = Schemas["Tokens"];
export type HistoryPage = Schemas["HistoryPage"];
export type RegisterRequest = Schemas["RegisterRequest"];
export type LoginRequest = Schemas["LoginRequest"];
export type SendRequest = Schemas["SendRequest"];
/** `?page=&page_size=` (page 1 is the newest) or `?after_seq=&limit=` / `?before_seq=&limit=`. */
export type HistoryQuery = NonNullable<PathItems["Messages"]["get"]["parameters"]["query"]>;

/** An `error` event: a refused client event; the socket stays open. */
export interface ServerError {
  type: "error";
  code: string;
  detail: string;
  chat: number | null;
  client_msg_id?: string | null;
  fields?: Record<string, string[]>;
}

/** A participant moved their read marker. */
export interface ReadEvent {
  type: "read";
  chat: number;
  user_id: number;
  seq: number;
}

/** The other participant is typing. */
export interface TypingEvent {
  type: "typing";
  chat: number;
  user_id: number;
}

/** Everything the user socket sends. */
export type ServerEvent =
  | { type: "ready"; user_id: number }
  | { type: "message"; data: Message }
  | { type: "chat"; data: Chat }
  | ReadEvent
  | TypingEvent
  | { type: "pong" }
  | ServerError;
