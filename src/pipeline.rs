//! The send path shared by REST (and, later, WebSocket) sends. Today a send is a
//! one-message batch written straight to the store; the group-commit writer takes
//! this over without changing its callers, which already speak in batches' terms
//! (one [`NewMessage`] in, one [`AppendOutcome`] out, acknowledged after commit).

use crate::store::{AppendOutcome, NewMessage, Store, StoreError};
use std::sync::Arc;

/// Accepts messages and answers once they are durable.
#[derive(Clone)]
pub struct MessagePipeline {
    store: Arc<dyn Store>,
}

impl MessagePipeline {
    pub fn new(store: Arc<dyn Store>) -> Self {
        MessagePipeline { store }
    }

    /// Stores the message; returns once it is committed.
    pub async fn send(&self, message: NewMessage) -> Result<AppendOutcome, StoreError> {
        let mut outcomes = self
            .store
            .append_messages(std::slice::from_ref(&message))
            .await?;
        outcomes.pop().ok_or(StoreError::Inconsistent(
            "a one-message batch had no outcome",
        ))
    }
}
