//! A node and a Redis that stop talking without closing anything:
//! - a subscription that died without a word (Redis dropped the node's
//!   connection and the node never heard, as behind a partition or a proxy
//!   that forgot it): the node's heartbeat finds out, it subscribes again and
//!   its sockets catch up, so nothing published meanwhile is lost;
//! - a Redis that takes connections and never answers (hung, or a host gone
//!   behind a load balancer): the node gives up within seconds, reports the
//!   bus disconnected, and its sockets work on the node, rather than waiting
//!   out the kernel's retries; a user socket whose subscription was never
//!   answered gets `ready` all the same.

use crate::cluster::{bus_ready, bus_state, cluster, redis_url};
use crate::helpers::{mute_port, spawn_app_with};
use crate::relay::Relay;
use crate::ws_client::WsClient;
use std::time::Duration;

/// Where the test Redis listens (`TEST_REDIS_URL`'s host and port).
fn redis_address() -> String {
    let url = redis_url();
    let rest = url.split("://").nth(1).unwrap_or("127.0.0.1:6379/");
    let authority = rest.split('/').next().unwrap_or("127.0.0.1:6379");
    let address = authority.rsplit('@').next().unwrap_or(authority);
    address.to_owned()
}

#[tokio::test]
async fn a_subscription_that_died_silently_is_found_by_the_heartbeat_and_caught_up() {
    let relay = Relay::to(redis_address()).await;
    let nodes = cluster(2, &format!("redis://127.0.0.1:{}/", relay.port)).await;
    bus_ready(&[&nodes[0], &nodes[1]]).await;
    let (ann, bob, chat) = nodes[0].pair().await;
    let mut bobs = WsClient::connect(&nodes[1], chat, &bob.access, None).await;
    nodes[0].say(&ann, chat, "before").await;
    assert_eq!(bobs.message().await["content"], "before");
    // Redis forgets node 1's subscription; node 1 hears nothing of it. What
    // node 0 publishes now reaches no subscriber of node 1.
    relay.sever();
    tokio::time::sleep(Duration::from_millis(200)).await;
    nodes[0].say(&ann, chat, "while unheard").await;
    // Within a heartbeat (5 s; the socket waits 10), node 1 finds the
    // connection dead, subscribes again and catches bob's socket up.
    assert_eq!(bobs.message().await["content"], "while unheard");
    bus_ready(&[&nodes[0], &nodes[1]]).await;
    nodes[0].say(&ann, chat, "after").await;
    assert_eq!(bobs.message().await["content"], "after");
}

#[tokio::test]
async fn a_redis_that_never_answers_leaves_the_node_working_on_its_own() {
    let port = mute_port().await;
    let url = format!("redis://127.0.0.1:{port}/");
    let node = spawn_app_with(&[("REDIS_URL", url.as_str())]).await;
    let (ann, bob, chat) = node.pair().await;
    // `ready` comes (the socket's wait is 10 s), though Redis never answered.
    let mut bobs = WsClient::user_synced(&node, &bob.access, serde_json::json!({})).await;
    node.say(&ann, chat, "on this node").await;
    assert_eq!(bobs.message().await["content"], "on this node");
    let reply = bus_state(&node, "disconnected").await;
    assert_eq!(reply.body["bus"], "disconnected", "{}", reply.text);
}

#[tokio::test]
async fn a_user_socket_whose_subscription_goes_unanswered_still_gets_ready() {
    let relay = Relay::to(redis_address()).await;
    let nodes = cluster(1, &format!("redis://127.0.0.1:{}/", relay.port)).await;
    let node = &nodes[0];
    bus_ready(&[node]).await;
    let (ann, bob, chat) = node.pair().await;
    // Redis hangs: the subscription to bob (his first socket here) is never
    // answered. The node gives up on it within 5 s and bob's socket gets
    // `ready` (the socket's wait is 10 s), as while disconnected, rather
    // than waiting out the idle timeout; the node then serves it on its own.
    relay.freeze();
    let mut bobs = WsClient::user_synced(node, &bob.access, serde_json::json!({})).await;
    node.say(&ann, chat, "on this node").await;
    assert_eq!(bobs.message().await["content"], "on this node");
}
