//! A message as a client submits it, over REST or WebSocket, read and validated by
//! one set of rules: `content` trimmed, non-blank and bounded; `metadata` any JSON
//! but null (default `{}`), bounded in size and depth; `client_msg_id` optional.

use crate::config::Limits;
use crate::input::fields::{Fields, Text};
use crate::model::User;
use crate::store::NewMessage;
use std::sync::Arc;

/// Longest accepted `client_msg_id`.
pub const MAX_CLIENT_MSG_ID_CHARS: usize = 100;

/// The validated parts of a message a client sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageInput {
    pub content: String,
    /// Compact JSON text.
    pub metadata: String,
    pub client_msg_id: Option<String>,
}

impl MessageInput {
    /// Reads the message's fields, recording problems in `fields`. `None` when any
    /// of them is invalid (then `fields.finish()` reports why).
    pub fn read(fields: &mut Fields<'_, '_>, limits: &Limits) -> Option<MessageInput> {
        let content = fields.text("content", Text::required(limits.max_content_chars));
        let metadata = fields.json(
            "metadata",
            "{}",
            limits.max_metadata_bytes,
            limits.max_metadata_depth,
        );
        let client_msg_id = fields
            .text("client_msg_id", Text::optional(MAX_CLIENT_MSG_ID_CHARS))
            .filter(|id| !id.is_empty());
        Some(MessageInput {
            content: content?,
            metadata: metadata?,
            client_msg_id,
        })
    }

    /// The message to store.
    pub fn into_message(self, chat_id: i64, sender: Arc<User>) -> NewMessage {
        NewMessage {
            chat_id,
            sender,
            content: self.content,
            metadata: self.metadata,
            client_msg_id: self.client_msg_id,
        }
    }

    /// Just the client id of an event, when it has a usable one (for error replies).
    pub fn client_msg_id_of(fields: &Fields<'_, '_>) -> Option<String> {
        fields.peek_str("client_msg_id").map(str::to_owned)
    }
}
