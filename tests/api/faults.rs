//! Faults: the server killed with -9 in the middle of a send storm loses no
//! acknowledged message, and the chat's sequence stays gap-free.

use crate::helpers::{fresh_database, spawn_process_on};
use crate::ws_client::{Received, WsClient};
use serde_json::json;
use std::collections::HashSet;

#[tokio::test]
async fn kill_9_during_a_send_storm_loses_nothing_acknowledged() {
    let database = fresh_database();
    let mut app = spawn_process_on(&database, &[]).await;
    let (ann, _bob, chat) = app.pair().await;
    let mut socket = WsClient::connect(&app, chat, &ann.access, None).await;
    const STORM: usize = 2_000;
    for i in 0..STORM {
        let event = json!({"type": "message.send", "content": format!("m{i}"), "client_msg_id": format!("c{i}")});
        socket.send_json(&event).await;
    }
    // Collect acknowledgements (echoes) until a few hundred are in, then kill -9.
    let mut acknowledged = HashSet::new();
    while acknowledged.len() < 300 {
        match socket.recv().await {
            Received::Json(event) if event["type"] == "message" => {
                acknowledged.insert(event["data"]["client_msg_id"].as_str().unwrap().to_owned());
            }
            Received::Json(_) => {}
            Received::Close(code) => panic!("closed early: {code}"),
        }
    }
    let process = app.process.as_mut().unwrap();
    process.start_kill().unwrap();
    process.wait().await.unwrap();
    // Whatever else arrived before the socket died was acknowledged too.
    while let Received::Json(event) = socket.recv().await {
        if let Some(id) = event["data"]["client_msg_id"].as_str() {
            acknowledged.insert(id.to_owned());
        }
    }

    let app = spawn_process_on(&database, &[]).await;
    let path = format!("/api/chat/chats/{chat}/messages/?after_seq=0&limit=100");
    let mut stored = Vec::new();
    let mut next = Some(app.url(&path));
    while let Some(url) = next {
        let page: serde_json::Value = app
            .client
            .get(&url)
            .bearer_auth(&ann.access)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        for message in page["results"].as_array().unwrap() {
            stored.push((
                message["seq"].as_i64().unwrap(),
                message["client_msg_id"].as_str().unwrap().to_owned(),
            ));
        }
        next = page["previous"].as_str().map(str::to_owned);
    }
    let seqs: Vec<i64> = stored.iter().map(|(seq, _)| *seq).collect();
    assert_eq!(
        seqs,
        (1..=stored.len() as i64).collect::<Vec<_>>(),
        "gap-free after the crash"
    );
    println!(
        "{} acknowledged before the kill, {} stored of {STORM} sent",
        acknowledged.len(),
        stored.len()
    );
    let stored_ids: HashSet<String> = stored.into_iter().map(|(_, id)| id).collect();
    let lost: Vec<&String> = acknowledged
        .iter()
        .filter(|id| !stored_ids.contains(*id))
        .collect();
    assert!(
        lost.is_empty(),
        "{} acknowledged messages lost: {lost:?}",
        lost.len()
    );
    assert!(acknowledged.len() >= 300);
}
