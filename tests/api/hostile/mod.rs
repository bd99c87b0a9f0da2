//! Hostile input and faults, round two: text the store cannot hold, clients
//! behind proxies, abandoned handshakes, floods of cheap events, slow bodies,
//! catch-up memory, forged bus events and exposed secrets. Each test fails
//! without the fix it covers.

mod bus;
mod catch_up;
mod exposure;
mod floods;
mod handshakes;
mod proxies;
mod text;

/// A value of the server's `/metrics` (0 when absent).
pub async fn metric(app: &crate::helpers::TestApp, name: &str) -> f64 {
    let text = app
        .client
        .get(app.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or(0.0)
}
