//! `loadtest`: the bundled load tester. Real clients only (an HTTP/1.1 client and
//! a fastwebsockets client over real sockets) speaking the public API, so the same
//! tool measures this server and, with `--routes django`, the original backend.
//!
//! Scenarios: `chat`, `connect`, `rest`, `verify`, `echo` (transport ceiling) and
//! `store-ceiling` (storage ceiling). Each prints a summary and can write a JSON
//! report (`--json`) and an SVG plot (`--plot`). `targets` checks one run's
//! reports against the throughput targets.

mod cli;
mod endpoint;
mod http;
mod plot;
mod procfs;
mod progress;
mod report;
mod scenarios;
mod setup;
mod stats;
mod targets;
mod ws;

use clap::Parser;

#[global_allocator]
static ALLOCATOR: chat_server::allocator::Mimalloc = chat_server::allocator::Mimalloc;

/// Errors at the edge of the tool are reported, not branched on.
pub type Error = Box<dyn std::error::Error + Send + Sync>;
pub type Result<T> = std::result::Result<T, Error>;

fn main() -> std::process::ExitCode {
    let cli = cli::Cli::parse();
    // Each socket the tool opens is a descriptor: take what the hard limit
    // allows, as the server does (many systems start at a soft 1,024).
    chat_server::net::socket_options::raise_open_files_limit();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    match runtime.block_on(scenarios::run(cli)) {
        Ok(None) => std::process::ExitCode::SUCCESS,
        Ok(Some(faults)) => {
            if faults.any() {
                std::process::ExitCode::from(1)
            } else {
                std::process::ExitCode::SUCCESS
            }
        }
        Err(error) => {
            eprintln!("loadtest: {error}");
            std::process::ExitCode::from(2)
        }
    }
}
