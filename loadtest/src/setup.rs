//! Preparing users, chats and tokens. With the server's `DATABASE_URL` and
//! `SECRET_KEY`, users and chats are inserted in bulk (one shared password hash)
//! and tokens minted locally: tens of thousands of users in seconds. Otherwise
//! (or against the Django backend) everything goes through the public API.

use crate::cli::{Routes, Target};
use crate::endpoint::Endpoint;
use crate::http::HttpClient;
use crate::Result;
use chat_server::auth::jwt::{TokenService, TokenType};
use serde_json::json;
use std::time::Duration;

pub const PASSWORD: &str = "loadtest-password";

/// A user the tool acts as.
#[derive(Debug, Clone)]
pub struct Account {
    pub id: i64,
    pub token: String,
}

/// Two users and their chat.
#[derive(Debug, Clone)]
pub struct Pair {
    pub chat: i64,
    pub a: Account,
    pub b: Account,
}

/// API paths for a route set.
pub struct Paths {
    pub register: &'static str,
    pub login: &'static str,
    pub start: &'static str,
    pub chats: &'static str,
}

impl Routes {
    pub fn paths(self) -> Paths {
        match self {
            Routes::Ours => Paths {
                register: "/auth/register/",
                login: "/auth/login/",
                start: "/api/chat/start/",
                chats: "/api/chat/chats/",
            },
            Routes::Django => Paths {
                register: "/api/users/register/",
                login: "/api/token/",
                start: "/api/chats/start/",
                chats: "/api/chats/chats/",
            },
        }
    }
}

/// `n` fresh pairs, by the fastest way the target allows.
pub async fn pairs(target: &Target, endpoint: &Endpoint, n: usize) -> Result<Vec<Pair>> {
    let run = chat_server::digest::random_hex(4);
    match (&target.database_url, &target.secret_key, target.routes) {
        (Some(url), Some(secret), Routes::Ours) => bulk_pairs(url, secret, &run, n).await,
        _ => {
            eprintln!("setup through the API (set DATABASE_URL and SECRET_KEY for bulk setup)");
            api_pairs(target.routes, endpoint, &run, n).await
        }
    }
}

async fn bulk_pairs(database_url: &str, secret: &str, run: &str, n: usize) -> Result<Vec<Pair>> {
    let (client, connection) = tokio_postgres::connect(database_url, tokio_postgres::NoTls).await?;
    tokio::spawn(connection);
    let ids = insert_users(&client, run, n * 2).await?;
    let (lows, highs): (Vec<i64>, Vec<i64>) = ids.chunks(2).map(|p| (p[0], p[1])).unzip();
    let rows = insert_chats(&client, &lows, &highs).await?;
    gather_statistics(&client).await?;
    let tokens = TokenService::new(
        secret,
        Duration::from_secs(86_400),
        Duration::from_secs(86_400),
    );
    let account = |id: i64| Account {
        id,
        token: tokens.issue(id, TokenType::Access),
    };
    Ok(rows
        .iter()
        .map(|row| Pair {
            chat: row.get(0),
            a: account(row.get(1)),
            b: account(row.get(2)),
        })
        .collect())
}

/// A user with chats: its account and, per chat, the chat and the other user.
#[derive(Debug, Clone)]
pub struct Inbox {
    pub account: Account,
    pub chats: Vec<(i64, i64)>,
}

/// `users` fresh users, each in `chats_per_user` chats (rounded down to even):
/// user `i` chats with users `i ± 1 ..= i ± chats_per_user / 2` (mod `users`).
/// Bulk only (the server's DATABASE_URL and SECRET_KEY): two statements per
/// 50,000 chats.
pub async fn inboxes(target: &Target, users: usize, chats_per_user: usize) -> Result<Vec<Inbox>> {
    let (Some(url), Some(secret), Routes::Ours) =
        (&target.database_url, &target.secret_key, target.routes)
    else {
        return Err("inboxes need the server's DATABASE_URL and SECRET_KEY (bulk setup)".into());
    };
    let half = chats_per_user / 2;
    if users < 2 * half + 1 {
        return Err(format!("{users} users cannot each have {chats_per_user} chats").into());
    }
    let run = chat_server::digest::random_hex(4);
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls).await?;
    tokio::spawn(connection);
    let ids = insert_users(&client, &run, users).await?;
    let pairs: Vec<(i64, i64)> = (0..users)
        .flat_map(|i| (1..=half).map(move |k| (i, (i + k) % users)))
        .map(|(i, j)| (ids[i].min(ids[j]), ids[i].max(ids[j])))
        .collect();
    let tokens = TokenService::new(
        secret,
        Duration::from_secs(86_400),
        Duration::from_secs(86_400),
    );
    let mut inboxes: Vec<Inbox> = ids
        .iter()
        .map(|&id| Inbox {
            account: Account {
                id,
                token: tokens.issue(id, TokenType::Access),
            },
            chats: Vec::with_capacity(2 * half),
        })
        .collect();
    let index_of: std::collections::HashMap<i64, usize> =
        ids.iter().enumerate().map(|(i, id)| (*id, i)).collect();
    for chunk in pairs.chunks(50_000) {
        let (lows, highs): (Vec<i64>, Vec<i64>) = chunk.iter().copied().unzip();
        for row in insert_chats(&client, &lows, &highs).await? {
            let (chat, low, high): (i64, i64, i64) = (row.get(0), row.get(1), row.get(2));
            inboxes[index_of[&low]].chats.push((chat, high));
            inboxes[index_of[&high]].chats.push((chat, low));
        }
    }
    gather_statistics(&client).await?;
    Ok(inboxes)
}

/// `ANALYZE` of the tables just loaded, as a deployment's autovacuum has
/// long done: without statistics PostgreSQL plans some reads as scans of a
/// whole table (a user socket's chat list took 21 ms, 0.4 ms with them).
async fn gather_statistics(client: &tokio_postgres::Client) -> Result<()> {
    client.batch_execute("ANALYZE users, chats").await?;
    Ok(())
}

/// `n` users sharing one password hash; their ids, ascending.
async fn insert_users(client: &tokio_postgres::Client, run: &str, n: usize) -> Result<Vec<i64>> {
    let hasher = chat_server::auth::password::PasswordHasher::new(19 * 1024, 2, 1)?;
    let hash = hasher.hash(PASSWORD.to_owned()).await?;
    let rows = client
        .query(
            "INSERT INTO users (email, password_hash, full_name)
             SELECT 'lt-' || $1 || '-' || g || '@load.test', $2, 'Load ' || g
             FROM generate_series(1, $3::int) g RETURNING id",
            &[&run, &hash, &(n as i32)],
        )
        .await?;
    let mut ids: Vec<i64> = rows.iter().map(|r| r.get(0)).collect();
    ids.sort_unstable();
    Ok(ids)
}

/// Chats of `lows[i]` and `highs[i]` with the server's pair keys; rows of
/// (id, user_low, user_high).
async fn insert_chats(
    client: &tokio_postgres::Client,
    lows: &[i64],
    highs: &[i64],
) -> Result<Vec<tokio_postgres::Row>> {
    Ok(client
        .query(
            "INSERT INTO chats (pair_key, user_low, user_high)
             SELECT encode(sha256(convert_to('pair:' || l || ':' || h, 'UTF8')), 'hex'), l, h
             FROM unnest($1::bigint[], $2::bigint[]) AS t(l, h)
             RETURNING id, user_low, user_high",
            &[&lows, &highs],
        )
        .await?)
}

/// Registers, logs in and starts chats through the API (slow: one argon2 hash
/// per user on the server), 16 at a time.
async fn api_pairs(routes: Routes, endpoint: &Endpoint, run: &str, n: usize) -> Result<Vec<Pair>> {
    let semaphore = std::sync::Arc::new(tokio::sync::Semaphore::new(16));
    let mut tasks = Vec::with_capacity(n);
    for i in 0..n {
        let (endpoint, run, semaphore) = (endpoint.clone(), run.to_owned(), semaphore.clone());
        tasks.push(tokio::spawn(async move {
            let _permit = semaphore.acquire().await?;
            api_pair(routes, &endpoint, &run, i).await
        }));
    }
    let mut pairs = Vec::with_capacity(n);
    for task in tasks {
        pairs.push(task.await??);
    }
    Ok(pairs)
}

async fn api_pair(routes: Routes, endpoint: &Endpoint, run: &str, i: usize) -> Result<Pair> {
    let paths = routes.paths();
    let mut http = HttpClient::connect(endpoint).await?;
    let mut accounts = Vec::with_capacity(2);
    for side in ["a", "b"] {
        let email = format!("lt-{run}-{i}{side}@load.test");
        let body =
            json!({"email": email, "password": PASSWORD, "full_name": format!("Load {i}{side}")});
        let user = http.post_json(paths.register, None, &body).await?;
        let tokens = http
            .post_json(
                paths.login,
                None,
                &json!({"email": email, "password": PASSWORD}),
            )
            .await?;
        accounts.push(Account {
            id: user["id"].as_i64().ok_or("register: no id")?,
            token: tokens["access"]
                .as_str()
                .ok_or("login: no access token")?
                .to_owned(),
        });
    }
    let b = accounts.pop().ok_or("missing account")?;
    let a = accounts.pop().ok_or("missing account")?;
    let chat = http
        .post_json(paths.start, Some(&a.token), &json!({"user_id": b.id}))
        .await?;
    Ok(Pair {
        chat: chat["id"].as_i64().ok_or("start: no chat id")?,
        a,
        b,
    })
}
