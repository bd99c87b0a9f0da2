//! One run's reports, each read back as its scenario's type; a missing file
//! is a scenario that did not run.

use crate::report::{
    ChatFigures, ConnectFigures, EchoFigures, Figures, InboxFigures, Report, RestFigures,
    StoreFigures,
};
use crate::Result;
use std::path::Path;

/// One run's reports (`<scenario>.json`).
#[derive(Default)]
pub struct Reports {
    pub echo: Option<Report<EchoFigures>>,
    pub store_ceiling: Option<Report<StoreFigures>>,
    pub chat: Option<Report<ChatFigures>>,
    pub chat_rate: Option<Report<ChatFigures>>,
    pub rest: Option<Report<RestFigures>>,
    pub connect: Option<Report<ConnectFigures>>,
    pub connect_ceiling: Option<Report<ConnectFigures>>,
    pub inbox: Option<Report<InboxFigures>>,
    pub connect_user: Option<Report<ConnectFigures>>,
    /// User sockets whose first `sync` names every chat, as our client's does.
    pub connect_user_sync: Option<Report<ConnectFigures>>,
}

impl Reports {
    /// Reads every scenario's report from `dir`.
    pub fn load(dir: &Path) -> Result<Self> {
        Ok(Reports {
            echo: read(dir, "echo")?,
            store_ceiling: read(dir, "store-ceiling")?,
            chat: read(dir, "chat")?,
            chat_rate: read(dir, "chat-rate")?,
            rest: read(dir, "rest")?,
            connect: read(dir, "connect")?,
            connect_ceiling: read(dir, "connect-ceiling")?,
            inbox: read(dir, "inbox")?,
            connect_user: read(dir, "connect-user")?,
            connect_user_sync: read(dir, "connect-user-sync")?,
        })
    }
}

/// `dir/<scenario>.json`, or `None` when there is no such file.
fn read<F: Figures>(dir: &Path, scenario: &str) -> Result<Option<Report<F>>> {
    Report::read_json(&dir.join(format!("{scenario}.json")))
}
