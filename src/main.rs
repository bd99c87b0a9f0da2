//! The `chat-server` binary: parses the command line and runs the library.

use chat_server::{telemetry, Application, Config};
use clap::{Parser, Subcommand};

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// A fast, drop-in replacement for the Django + Channels chat backend.
///
/// Configuration comes from environment variables; see the README
/// (DATABASE_URL or POSTGRES_*, SECRET_KEY, DEBUG, BIND, ...).
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the API (the default).
    Serve,
    /// Apply pending database migrations and exit.
    Migrate,
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let config = match Config::from_env() {
        Ok(config) => config,
        Err(error) => {
            eprintln!("configuration error: {error}");
            return std::process::ExitCode::from(2);
        }
    };
    telemetry::init(config.json_logs);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("cannot start the async runtime: {error}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async move {
        match cli.command.unwrap_or(Command::Serve) {
            Command::Serve => serve(config).await,
            Command::Migrate => migrate(config).await,
        }
    });
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!(%error, "chat-server stopped");
            eprintln!("error: {error}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn serve(config: Config) -> Result<(), chat_server::state::StartError> {
    let debug_mode = config.debug;
    let app = Application::build(config).await?;
    tracing::info!(addr = %app.local_addr(), debug_mode, store = "postgres", "chat-server listening");
    app.run_until_stopped().await;
    Ok(())
}

async fn migrate(config: Config) -> Result<(), chat_server::state::StartError> {
    let database = config
        .database
        .as_ref()
        .ok_or(chat_server::state::StartError::NoDatabase)?;
    chat_server::store::postgres::PgStore::connect(database).await?;
    tracing::info!("migrations are up to date");
    Ok(())
}
