//! The `chat-server` binary: parses the command line and runs the library.

use chat_server::app::{open_store, StartError};
use chat_server::auth::password::PasswordHasher;
use chat_server::metrics::Metrics;
use chat_server::store::NewUser;
use chat_server::{telemetry, Application, Config};
use clap::{Parser, Subcommand};
use std::sync::Arc;

#[global_allocator]
static ALLOCATOR: chat_server::allocator::Mimalloc = chat_server::allocator::Mimalloc;

/// Where the environment variables are documented, shown by `--help`.
const ENVIRONMENT: &str = "\
Environment (all optional; see README.md for the full list):
  DATABASE_URL / POSTGRES_*   PostgreSQL; without them an embedded SQLite store in DATA_DIR
  DATA_DIR                    embedded store and generated secret (default ./data)
  REDIS_URL, REDIS_PASSWORD   Redis between nodes; without it, one node, in-process
  SECRET_KEY                  JWT signing key (required when DEBUG=0)
  DEBUG                       1 (default) or 0 for production
  BIND                        listen address (default 0.0.0.0:8000)
  ALLOWED_HOSTS, CORS_ALLOWED_ORIGINS, LOG_FORMAT=json, RUST_LOG
  limits and tuning: MAX_BODY_BYTES, MAX_CONTENT_CHARS, PAGE_SIZE, WS_*, WRITER_*, ...";

/// A fast, drop-in replacement for the Django + Channels chat backend.
#[derive(Parser)]
#[command(version, about, after_help = ENVIRONMENT)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the API and WebSockets (the default).
    Serve,
    /// Apply pending database migrations and exit.
    Migrate,
    /// Import a Django backend's database into the configured store (again to
    /// bring in what is new), print a summary and exit.
    ImportDjango {
        /// PostgreSQL URL of the Django database.
        #[arg(long)]
        source: String,
        /// Report what would be imported and what cannot be, writing nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Create a user (for example an operator account) and exit.
    CreateUser {
        #[arg(long)]
        email: String,
        #[arg(long, env = "CHAT_USER_PASSWORD", hide_env_values = true)]
        password: String,
        #[arg(long)]
        full_name: String,
        #[arg(long)]
        nickname: Option<String>,
    },
}

fn main() -> std::process::ExitCode {
    chat_server::net::socket_options::decline_huge_pages();
    chat_server::net::socket_options::raise_open_files_limit();
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
            Command::ImportDjango { source, dry_run } => {
                import_django(config, source, dry_run).await
            }
            Command::CreateUser {
                email,
                password,
                full_name,
                nickname,
            } => create_user(config, email, password, full_name, nickname).await,
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

async fn serve(config: Config) -> Result<(), StartError> {
    let debug_mode = config.debug;
    let app = Application::build(config).await?;
    let (store, bus) = app.describe();
    tracing::info!(addr = %app.local_addr(), debug_mode, %store, bus, "chat-server listening");
    app.run_until_stopped().await;
    Ok(())
}

async fn migrate(config: Config) -> Result<(), StartError> {
    let store = open_store(&config, &Arc::new(Metrics::new())).await?;
    tracing::info!(store = %store.describe(), "migrations are up to date");
    Ok(())
}

async fn import_django(config: Config, source: String, dry_run: bool) -> Result<(), StartError> {
    match chat_server::django::run(&config, &source, dry_run).await {
        Ok(outcome) => {
            print!("{}", chat_server::django::summary(&outcome));
            Ok(())
        }
        Err((error, problems)) => {
            if let Some(problems) = problems {
                print!("{}", chat_server::django::problems_report(&problems));
            }
            Err(StartError::Invalid(error.to_string()))
        }
    }
}

async fn create_user(
    config: Config,
    email: String,
    password: String,
    full_name: String,
    nickname: Option<String>,
) -> Result<(), StartError> {
    if !chat_server::input::fields::is_valid_email(&email) {
        return Err(StartError::Invalid(format!(
            "{email:?} is not a valid email address"
        )));
    }
    if password.chars().count() < config.limits.password_min_length {
        let min = config.limits.password_min_length;
        return Err(StartError::Invalid(format!(
            "the password needs at least {min} characters"
        )));
    }
    let store = open_store(&config, &Arc::new(Metrics::new())).await?;
    let auth = &config.auth;
    let hasher = PasswordHasher::new(auth.argon2_memory_kib, auth.argon2_iterations, 1)?;
    let user = store
        .create_user(NewUser {
            email,
            password_hash: hasher.hash(password).await?,
            full_name,
            nickname,
            other_info: "{}".into(),
        })
        .await?;
    println!("created user {} <{}>", user.id, user.email);
    Ok(())
}
