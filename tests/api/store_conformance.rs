//! One conformance suite for every store: the same test functions run against
//! PostgreSQL (a fresh database) and the embedded SQLite store (a fresh data
//! directory), through the `Store` interface the server uses.

use crate::helpers::{fresh_database, pg_base};
use chat_server::config::DatabaseConfig;
use chat_server::model::{pair_key, User};
use chat_server::store::postgres::PgStore;
use chat_server::store::sqlite::SqliteStore;
use chat_server::store::{
    outcomes, AppendOutcome, ChatAccess, ChatPosition, ChatStanding, History, HistoryRead,
    NewMessage, NewUser, PositionsRead, ReplayRead, SeqRun, SeqWindow, StandingsRead, Store,
    StoreError,
};
use std::sync::Arc;

async fn postgres() -> Arc<dyn Store> {
    let config = DatabaseConfig {
        url: format!("{} dbname={}", pg_base(), fresh_database()),
        pool_size: 8,
        retry_for: std::time::Duration::ZERO,
        read_urls: Vec::new(),
    };
    Arc::new(
        PgStore::connect(
            &config,
            std::sync::Arc::new(chat_server::metrics::Metrics::new()),
        )
        .await
        .expect("postgres store"),
    )
}

async fn sqlite() -> Arc<dyn Store> {
    let dir =
        std::env::temp_dir().join(format!("chat-store-{}", chat_server::digest::random_hex(6)));
    Arc::new(SqliteStore::open(&dir).expect("sqlite store"))
}

/// Runs each listed test function against both stores.
macro_rules! conformance {
    ($($test:ident),* $(,)?) => {
        mod on_postgres {
            $(#[tokio::test] async fn $test() { super::$test(super::postgres().await).await; })*
        }
        mod on_sqlite {
            $(#[tokio::test] async fn $test() { super::$test(super::sqlite().await).await; })*
        }
    };
}

conformance!(
    users_and_credentials,
    chats_are_unique_per_pair,
    seq_is_gap_free_under_concurrent_writers,
    retried_client_ids_store_nothing,
    a_batch_over_several_chats_numbers_each_in_batch_order,
    lookups_answer_many_pairs_in_order,
    ranges_serve_pages_and_cursors,
    catch_up_reads_answer_many_at_once,
    history_reads_the_chat_and_its_window_at_once,
    history_reads_answer_many_at_once,
    history_reads_may_leave_out_what_the_reader_holds,
    chats_are_ordered_by_latest_message,
    read_markers_only_move_forward,
    standings_answer_each_user_with_their_chats,
    positions_answer_few_and_many_named_chats_alike,
    blacklisted_tokens_are_remembered,
    failed_logins_are_counted_per_account_in_a_window,
);

async fn user(store: &Arc<dyn Store>, name: &str) -> User {
    store
        .create_user(NewUser {
            email: format!("{name}@example.com"),
            password_hash: "hash".into(),
            full_name: format!("{name} Example"),
            nickname: None,
            other_info: "{}".into(),
        })
        .await
        .unwrap()
}

fn message(chat: i64, sender: &User, content: &str, client_msg_id: Option<&str>) -> NewMessage {
    NewMessage {
        chat_id: chat,
        sender: std::sync::Arc::new(sender.clone()),
        content: content.into(),
        metadata: r#"{"k":1}"#.into(),
        client_msg_id: client_msg_id.map(str::to_owned),
    }
}

/// Page-number pagination's window: `size` messages, `skip` newest ones left out.
/// Appends a batch and joins what the store said with the batch's messages,
/// as the writer lanes do.
async fn append(store: &Arc<dyn Store>, batch: &[NewMessage]) -> Vec<AppendOutcome> {
    let said = store.append_messages(batch).await.unwrap();
    assert_eq!(said.len(), batch.len(), "one answer per message");
    outcomes(said, batch.to_vec())
}

fn page_window(size: i64, skip: i64) -> SeqWindow {
    SeqWindow {
        skip,
        size,
        cap: i64::MAX,
        floor: 1,
        oldest_page: false,
    }
}

async fn access_of(store: &Arc<dyn Store>, chat: i64) -> Option<ChatAccess> {
    store.user_and_chat(0, chat).await.unwrap().1
}

async fn chat_of(store: &Arc<dyn Store>) -> (User, User, i64) {
    let (a, b) = (user(store, "ann").await, user(store, "bob").await);
    let chat = store.start_chat(&a, &b).await.unwrap().chat.id;
    (a, b, chat)
}

async fn users_and_credentials(store: Arc<dyn Store>) {
    let ann = user(&store, "ann").await;
    assert!(matches!(
        store
            .create_user(NewUser {
                email: "ANN@example.com".into(),
                password_hash: "h".into(),
                full_name: "Again".into(),
                nickname: None,
                other_info: "{}".into(),
            })
            .await,
        Err(StoreError::EmailTaken)
    ));
    let found = store.credentials("Ann@Example.com").await.unwrap().unwrap();
    assert_eq!(
        (found.user.id, found.password_hash.as_str(), found.is_active),
        (ann.id, "hash", true)
    );
    assert!(store
        .credentials("nobody@example.com")
        .await
        .unwrap()
        .is_none());
    assert_eq!(store.user(ann.id).await.unwrap(), Some(ann.clone()));
    user(&store, "bob").await;
    let found: Vec<String> = store
        .search_users("EXAMPLE", ann.id, 10)
        .await
        .unwrap()
        .into_iter()
        .map(|u| u.email)
        .collect();
    assert_eq!(
        found,
        ["bob@example.com"],
        "search excludes the caller, ignores case"
    );
    assert!(
        store
            .search_users("%", ann.id, 10)
            .await
            .unwrap()
            .is_empty(),
        "wildcards are literal"
    );
}

async fn chats_are_unique_per_pair(store: Arc<dyn Store>) {
    let (a, b) = (user(&store, "ann").await, user(&store, "bob").await);
    assert!(store.chat_between(&a, &b).await.unwrap().is_none());
    let first = store.start_chat(&a, &b).await.unwrap();
    let found = store
        .chat_between(&b, &a)
        .await
        .unwrap()
        .expect("the pair's chat");
    assert_eq!(found.id, first.chat.id, "found from either side");
    assert_eq!(found.participants.map(|u| u.id), [a.id, b.id]);
    let again = store.start_chat(&b, &a).await.unwrap();
    assert!(first.created && !again.created);
    assert_eq!(first.chat.id, again.chat.id);
    assert_eq!(first.chat.participants.map(|u| u.id), [a.id, b.id]);
    let access = access_of(&store, first.chat.id).await.unwrap();
    assert!(access.includes(a.id) && access.includes(b.id) && !access.includes(a.id + b.id));
    assert_eq!(access.last_seq, 0);
    assert!(access_of(&store, first.chat.id + 100).await.is_none());
    assert_eq!(pair_key(a.id, b.id).len(), 64);
    let (user, chat) = store.user_and_chat(a.id, first.chat.id).await.unwrap();
    assert_eq!((user, chat), (Some(a.clone()), Some(access)));
    let missing = a.id + b.id + 1;
    let (user, chat) = store
        .user_and_chat(missing, first.chat.id + 100)
        .await
        .unwrap();
    assert_eq!((user, chat), (None, None));
    append(&store, &[message(first.chat.id, &a, "hi", None)]).await;
    let (by_b, by_a) = (
        store.chat_between(&b, &a).await.unwrap().unwrap(),
        store.chat_between(&a, &b).await.unwrap().unwrap(),
    );
    assert_eq!(
        (by_b.last_seq, by_b.read_seq, by_b.unread_count),
        (1, 0, 1),
        "as the one asking sees it"
    );
    assert_eq!(
        (by_a.read_seq, by_a.unread_count),
        (1, 0),
        "the sender read it"
    );
}

async fn seq_is_gap_free_under_concurrent_writers(store: Arc<dyn Store>) {
    let (a, b, chat) = chat_of(&store).await;
    let mut writers = Vec::new();
    for w in 0..8 {
        let (store, sender) = (
            store.clone(),
            if w % 2 == 0 { a.clone() } else { b.clone() },
        );
        writers.push(tokio::spawn(async move {
            let mut seqs = Vec::new();
            for i in 0..10 {
                let batch = [
                    message(chat, &sender, &format!("w{w} m{i}"), None),
                    message(chat, &sender, "pair", None),
                ];
                for outcome in append(&store, &batch).await {
                    let AppendOutcome::Created(m) = outcome else {
                        panic!("created")
                    };
                    seqs.push(m.seq);
                }
            }
            seqs
        }));
    }
    let mut all = Vec::new();
    for writer in writers {
        let seqs = writer.await.unwrap();
        assert!(
            seqs.windows(2).all(|w| w[0] < w[1]),
            "a writer's messages keep its order"
        );
        all.extend(seqs);
    }
    all.sort_unstable();
    assert_eq!(all, (1..=160).collect::<Vec<i64>>());
    assert_eq!(access_of(&store, chat).await.unwrap().last_seq, 160);
}

async fn a_batch_over_several_chats_numbers_each_in_batch_order(store: Arc<dyn Store>) {
    let (a, b, first) = chat_of(&store).await;
    let c = user(&store, "cat").await;
    let second = store.start_chat(&a, &c).await.unwrap().chat.id;
    let third = store.start_chat(&b, &c).await.unwrap().chat.id;
    store
        .append_messages(&[message(second, &c, "earlier", None)])
        .await
        .unwrap();
    let plan = [
        (second, &a, 2),
        (first, &b, 1),
        (second, &c, 3),
        (third, &c, 1),
        (first, &a, 2),
        (second, &a, 4),
    ];
    let batch: Vec<NewMessage> = plan
        .iter()
        .enumerate()
        .map(|(i, (chat, sender, _))| {
            message(*chat, sender, &format!("m{i}"), Some(&format!("k{i}")))
        })
        .collect();
    let outcomes = append(&store, &batch).await;
    for (i, ((chat, sender, seq), outcome)) in plan.iter().zip(&outcomes).enumerate() {
        let AppendOutcome::Created(m) = outcome else {
            panic!("created: {outcome:?}")
        };
        let wanted = (*chat, sender.id, *seq, format!("m{i}"));
        assert_eq!((m.chat, m.sender.id, m.seq, m.content.clone()), wanted);
        let stored = store
            .messages_between(*chat, *seq, *seq, usize::MAX)
            .await
            .unwrap();
        assert_eq!(
            (stored[0].id, stored[0].content.as_str()),
            (m.id, m.content.as_str()),
            "the outcome is the stored row"
        );
    }
    for (chat, last) in [(first, 2), (second, 4), (third, 1)] {
        assert_eq!(access_of(&store, chat).await.unwrap().last_seq, last);
    }
}

async fn lookups_answer_many_pairs_in_order(store: Arc<dyn Store>) {
    let (a, b, chat) = chat_of(&store).await;
    store
        .append_messages(&[message(chat, &a, "x", None)])
        .await
        .unwrap();
    let (no_user, no_chat) = (b.id.max(a.id) + 1_000, chat + 1_000);
    let pairs = [
        (a.id, chat),
        (no_user, chat),
        (b.id, no_chat),
        (a.id, chat),
        (no_user, no_chat),
        (b.id, chat),
    ];
    let found = store.users_and_chats(&pairs).await.unwrap();
    assert_eq!(found.len(), pairs.len());
    for (&(user_id, chat_id), (user, access)) in pairs.iter().zip(&found) {
        assert_eq!(
            user.as_ref().map(|u| u.id),
            (user_id != no_user).then_some(user_id)
        );
        assert_eq!(access.map(|c| c.last_seq), (chat_id == chat).then_some(1));
        let one = store.user_and_chat(user_id, chat_id).await.unwrap();
        assert_eq!((&one.0, one.1), (user, *access), "same as one at a time");
    }
    assert!(store.users_and_chats(&[]).await.unwrap().is_empty());
}

async fn retried_client_ids_store_nothing(store: Arc<dyn Store>) {
    let (a, b, chat) = chat_of(&store).await;
    let first = append(&store, &[message(chat, &a, "once", Some("c1"))]).await;
    let AppendOutcome::Created(original) = &first[0] else {
        panic!("created")
    };
    let batch = [
        message(chat, &a, "retry", Some("c1")),
        message(chat, &a, "new", Some("c2")),
        message(chat, &a, "repeat in batch", Some("c2")),
        message(chat, &b, "other sender, same id", Some("c1")),
    ];
    let outcomes = append(&store, &batch).await;
    let AppendOutcome::Duplicate(again) = &outcomes[0] else {
        panic!("duplicate: {outcomes:?}")
    };
    assert_eq!(
        (again.id, again.seq, again.content.as_str()),
        (original.id, 1, "once")
    );
    let AppendOutcome::Created(new) = &outcomes[1] else {
        panic!("created")
    };
    assert_eq!(new.seq, 2, "a refused first attempt leaves no gap in seq");
    let AppendOutcome::Duplicate(repeat) = &outcomes[2] else {
        panic!("repeat")
    };
    assert_eq!(repeat.id, new.id);
    assert!(
        matches!(outcomes[3], AppendOutcome::Created(_)),
        "client ids are per sender"
    );
    let c = user(&store, "cat").await;
    let other_chat = store.start_chat(&a, &c).await.unwrap().chat.id;
    // Client ids are per chat: the same id in another chat is another
    // message, and a retry there is answered from there.
    let elsewhere = append(&store, &[message(other_chat, &a, "x", Some("c1"))]).await;
    let AppendOutcome::Created(there) = &elsewhere[0] else {
        panic!("created: {elsewhere:?}")
    };
    let retried = append(&store, &[message(other_chat, &a, "x again", Some("c1"))]).await;
    assert!(
        matches!(&retried[0], AppendOutcome::Duplicate(m) if m.id == there.id && m.content == "x")
    );
    assert_eq!(access_of(&store, chat).await.unwrap().last_seq, 3);
    assert_eq!(access_of(&store, other_chat).await.unwrap().last_seq, 1);
}

async fn ranges_serve_pages_and_cursors(store: Arc<dyn Store>) {
    let (a, _b, chat) = chat_of(&store).await;
    let batch: Vec<NewMessage> = (1..=30)
        .map(|i| message(chat, &a, &format!("m{i}"), None))
        .collect();
    store.append_messages(&batch).await.unwrap();
    let page = store
        .messages_between(chat, 26, 30, usize::MAX)
        .await
        .unwrap();
    let seqs: Vec<i64> = page.iter().map(|m| m.seq).collect();
    assert_eq!(seqs, [26, 27, 28, 29, 30]);
    assert_eq!(page[0].content, "m26");
    let metadata: serde_json::Value = serde_json::from_str(page[0].metadata.get()).unwrap();
    assert_eq!(metadata, serde_json::json!({"k": 1}));
    assert_eq!(page[0].sender.id, a.id);
    assert!(store
        .messages_between(chat, 31, 40, usize::MAX)
        .await
        .unwrap()
        .is_empty());
    assert_eq!(
        store
            .messages_between(chat, 1, 3, usize::MAX)
            .await
            .unwrap()
            .len(),
        3
    );
    // A byte budget: at least one message, then up to the one that reaches it
    // (each of these holds 10-11 bytes of content and metadata).
    let bounded = |max_bytes| store.messages_between(chat, 26, 30, max_bytes);
    assert_eq!(bounded(1).await.unwrap().len(), 1);
    let two: Vec<i64> = bounded(12).await.unwrap().iter().map(|m| m.seq).collect();
    assert_eq!(two, [26, 27]);
}

/// Catch-up reads of many chats at once, answered in order: each read's
/// messages as `messages_between` gives them with the same byte budget, or,
/// where a store answers reads together, a prefix of them that holds at
/// least the first (its caller reads on from there).
async fn catch_up_reads_answer_many_at_once(store: Arc<dyn Store>) {
    let (a, _, chat) = chat_of(&store).await;
    let carol = user(&store, "carol").await;
    let other = store.start_chat(&carol, &a).await.unwrap().chat.id;
    let batch: Vec<NewMessage> = (1..=30)
        .map(|i| message(chat, &a, &format!("m{i}"), None))
        .chain((1..=5).map(|i| message(other, &carol, &format!("o{i}"), None)))
        .collect();
    store.append_messages(&batch).await.unwrap();
    let read = |chat, from_seq, to_seq| ReplayRead {
        chat,
        from_seq,
        to_seq,
    };
    let reads = [
        read(chat, 26, 30),
        read(other, 1, 5),
        read(chat, 31, 40),
        read(chat, 1, 3),
    ];
    let seqs = |answer: &[chat_server::model::Message]| -> Vec<i64> {
        answer.iter().map(|m| m.seq).collect()
    };
    let whole = store
        .messages_between_many(&reads, usize::MAX)
        .await
        .unwrap();
    let whole_seqs: Vec<Vec<i64>> = whole.iter().map(|answer| seqs(answer)).collect();
    assert_eq!(
        whole_seqs,
        [
            vec![26, 27, 28, 29, 30],
            vec![1, 2, 3, 4, 5],
            vec![],
            vec![1, 2, 3]
        ]
    );
    assert_eq!(
        (
            whole[1][0].content.as_str(),
            whole[1][0].chat,
            whole[1][0].sender.id
        ),
        ("o1", other, carol.id)
    );
    // Each message holds 10-11 bytes of content and metadata: with 12, the
    // first read gets two, as alone; every read gets at least its first.
    let tight = store.messages_between_many(&reads, 12).await.unwrap();
    assert_eq!(seqs(&tight[0]), [26, 27]);
    for (answer, full) in tight.iter().zip(&whole) {
        assert_eq!(seqs(answer), seqs(&full[..answer.len()]), "a prefix");
        assert_eq!(answer.is_empty(), full.is_empty(), "at least the first");
        assert!(answer.len() <= 2, "within the read's budget");
    }
}

async fn history_reads_the_chat_and_its_window_at_once(store: Arc<dyn Store>) {
    let (a, b, chat) = chat_of(&store).await;
    let batch: Vec<NewMessage> = (1..=30)
        .map(|i| {
            let sender = if i % 3 == 0 { &b } else { &a };
            message(chat, sender, &format!("m{i}"), None)
        })
        .collect();
    store.append_messages(&batch).await.unwrap();
    let newest = page_window(25, 0);
    let seqs = |messages: &[chat_server::model::Message]| -> Vec<i64> {
        messages.iter().map(|m| m.seq).collect()
    };
    let page = store.history(chat, b.id, newest).await.unwrap().unwrap();
    assert_eq!(page.access.last_seq, 30);
    assert!(page.access.includes(a.id) && page.access.includes(b.id));
    assert_eq!(seqs(&page.messages), (6..=30).collect::<Vec<_>>());
    assert_eq!(page.messages[0].content, "m6");
    assert_eq!(*page.messages[0].sender, b, "seq 6 was sent by b");
    assert_eq!(*page.messages[1].sender, a);
    let metadata: serde_json::Value =
        serde_json::from_str(page.messages[0].metadata.get()).unwrap();
    assert_eq!(metadata, serde_json::json!({"k": 1}));

    let oldest = SeqWindow {
        oldest_page: true,
        ..newest
    };
    let page = store.history(chat, a.id, oldest).await.unwrap().unwrap();
    assert_eq!(seqs(&page.messages), [1, 2, 3, 4, 5]);
    let after = SeqWindow {
        cap: 28 + 5,
        floor: 29,
        size: 5,
        ..newest
    };
    let page = store.history(chat, a.id, after).await.unwrap().unwrap();
    assert_eq!(seqs(&page.messages), [29, 30]);
    let second = SeqWindow { skip: 25, ..newest };
    let page = store.history(chat, a.id, second).await.unwrap().unwrap();
    assert_eq!(seqs(&page.messages), [1, 2, 3, 4, 5]);

    let outsider = user(&store, "outsider").await;
    let page = store
        .history(chat, outsider.id, newest)
        .await
        .unwrap()
        .unwrap();
    assert!(!page.access.includes(outsider.id));
    assert!(page.messages.is_empty(), "an outsider reads no messages");
    assert!(store
        .history(chat + 100, a.id, newest)
        .await
        .unwrap()
        .is_none());
}

/// What a history read found, comparably: access, seqs and contents.
type PageSummary = Option<(ChatAccess, Vec<i64>, Vec<String>)>;

fn summary(history: &Option<History>) -> PageSummary {
    history.as_ref().map(|h| {
        let seqs = h.messages.iter().map(|m| m.seq).collect();
        let contents = h.messages.iter().map(|m| m.content.clone()).collect();
        (h.access, seqs, contents)
    })
}

async fn history_reads_answer_many_at_once(store: Arc<dyn Store>) {
    let (a, b, chat) = chat_of(&store).await;
    let c = user(&store, "cat").await;
    let other = store.start_chat(&a, &c).await.unwrap().chat.id;
    let batch: Vec<NewMessage> = (0..30)
        .map(|i| {
            let to = if i % 3 == 0 { other } else { chat };
            message(to, &a, &format!("m{i}"), None)
        })
        .collect();
    store.append_messages(&batch).await.unwrap();
    let newest = |size| page_window(size, 0);
    let read = |chat_id, reader, window| HistoryRead {
        chat_id,
        reader,
        window,
        held: SeqRun::EMPTY,
    };
    let reads = [
        read(chat, a.id, newest(5)),
        read(other, c.id, newest(25)),
        read(chat, c.id, newest(5)),
        read(chat + 1_000, a.id, newest(5)),
        read(
            chat,
            b.id,
            SeqWindow {
                oldest_page: true,
                ..newest(6)
            },
        ),
    ];
    let together = store.histories(&reads).await.unwrap();
    assert_eq!(together.len(), reads.len());
    for (read, got) in reads.iter().zip(&together) {
        let alone = store.history(read.chat_id, read.reader, read.window).await;
        assert_eq!(summary(got), summary(&alone.unwrap()), "{read:?}");
    }
    let seqs = |page: &PageSummary| page.as_ref().map(|(_, seqs, _)| seqs.clone());
    assert_eq!(seqs(&summary(&together[0])), Some((16..=20).collect()));
    assert_eq!(seqs(&summary(&together[1])), Some((1..=10).collect()));
    assert_eq!(
        seqs(&summary(&together[2])),
        Some(vec![]),
        "an outsider sees no messages"
    );
    assert_eq!(summary(&together[3]), None, "no such chat");
    assert_eq!(seqs(&summary(&together[4])), Some(vec![1, 2]));
    assert!(store.histories(&[]).await.unwrap().is_empty());
}

/// A read naming the messages its node holds gets either the whole window or
/// the window from `unheld_from`, alone and batched, and never anything else.
async fn history_reads_may_leave_out_what_the_reader_holds(store: Arc<dyn Store>) {
    let (a, _b, chat) = chat_of(&store).await;
    let batch: Vec<NewMessage> = (1..=30)
        .map(|i| message(chat, &a, &format!("m{i}"), None))
        .collect();
    store.append_messages(&batch).await.unwrap();
    let newest = page_window;
    let run = |first, last| SeqRun { first, last };
    let cases = [
        (newest(25, 0), run(1, 30)),
        (newest(25, 0), run(6, 27)),
        (newest(25, 0), run(10, 30)),
        (newest(10, 5), run(1, 18)),
        (newest(5, 0), SeqRun::EMPTY),
        (newest(5, 0), run(40, 50)),
        (
            SeqWindow {
                oldest_page: true,
                ..newest(7, 0)
            },
            run(1, 1),
        ),
    ];
    let reads: Vec<HistoryRead> = cases
        .iter()
        .map(|&(window, held)| HistoryRead {
            chat_id: chat,
            reader: a.id,
            window,
            held,
        })
        .collect();
    for reads in [&reads[..1], &reads[1..2], &reads[..]] {
        let got = store.histories(reads).await.unwrap();
        for (read, history) in reads.iter().zip(got) {
            let history = history.expect("the chat exists");
            assert_eq!(history.access.last_seq, 30);
            let range = read.window.range(30);
            let seqs: Vec<i64> = history.messages.iter().map(|m| m.seq).collect();
            let whole: Vec<i64> = range.clone().collect();
            let lean: Vec<i64> = (read.unheld_from(&range)..=*range.end()).collect();
            assert!(seqs == whole || seqs == lean, "{read:?}: got {seqs:?}");
            for message in &history.messages {
                assert_eq!(message.content, format!("m{}", message.seq));
            }
        }
    }
}

async fn chats_are_ordered_by_latest_message(store: Arc<dyn Store>) {
    let (me, bob, cat) = (
        user(&store, "me").await,
        user(&store, "bob").await,
        user(&store, "cat").await,
    );
    let with_bob = store.start_chat(&me, &bob).await.unwrap().chat.id;
    let with_cat = store.start_chat(&me, &cat).await.unwrap().chat.id;
    store
        .append_messages(&[message(with_bob, &bob, "hi", None)])
        .await
        .unwrap();
    let chats = store.chats_of(me.id).await.unwrap();
    assert_eq!(
        chats.iter().map(|c| c.id).collect::<Vec<_>>(),
        [with_bob, with_cat]
    );
    assert_eq!(chats[0].last_message.as_ref().unwrap().content, "hi");
    assert!(chats[0].updated_at >= chats[0].created_at);
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    store
        .append_messages(&[message(with_cat, &me, "later", None)])
        .await
        .unwrap();
    let chats = store.chats_of(me.id).await.unwrap();
    assert_eq!(chats[0].id, with_cat);
    assert_eq!(store.chats_of(bob.id).await.unwrap().len(), 1);
}

async fn read_markers_only_move_forward(store: Arc<dyn Store>) {
    let (a, b, chat) = chat_of(&store).await;
    let batch: Vec<NewMessage> = (0..5)
        .map(|i| message(chat, &a, &format!("{i}"), None))
        .collect();
    store.append_messages(&batch).await.unwrap();
    assert_eq!(store.mark_read(chat, b.id, 3).await.unwrap(), 3);
    assert_eq!(
        store.mark_read(chat, b.id, 1).await.unwrap(),
        3,
        "never back"
    );
    // The chat's access carries both markers, in its participants' order:
    // the sender's moved with its messages.
    let access = access_of(&store, chat).await.unwrap();
    let marker_of = |user: &User| {
        let at = access.participants.iter().position(|&p| p == user.id);
        access.read_seqs[at.unwrap()]
    };
    assert_eq!((marker_of(&a), marker_of(&b)), (5, 3));
    let page = store.history(chat, b.id, page_window(25, 0)).await.unwrap();
    assert_eq!(page.unwrap().access, access, "a history read has them too");
    // Whether each marker names its owner's own message: a's (moved by
    // sending message 5) does; b's (read through a's message 3) does not.
    let progress = store.chats_progress(&[chat + 100, chat]).await.unwrap();
    assert_eq!(progress[0], None, "no such chat");
    let progress = progress[1].unwrap();
    assert_eq!(progress.access, access);
    let own = |user: &User| {
        let at = access.participants.iter().position(|&p| p == user.id);
        progress.marker_at_own_message[at.unwrap()]
    };
    assert_eq!((own(&a), own(&b)), (true, false));
    assert_eq!(
        store.mark_read(chat, b.id, 99).await.unwrap(),
        5,
        "never past the end"
    );
}

/// A resync's standings, many users in one call, each answered in order:
/// every chat that holds messages (with both markers, seen from the user,
/// and the last sender when a marker is at the last message), and an empty
/// chat only when created at or after the read's `created_since`.
async fn standings_answer_each_user_with_their_chats(store: Arc<dyn Store>) {
    let (a, b, chat) = chat_of(&store).await;
    let c = user(&store, "cat").await;
    let empty = store.start_chat(&c, &a).await.unwrap().chat;
    let users = [a.id, b.id, c.id, 0];
    let none_yet = store.users_with_messages(&users).await.unwrap();
    assert_eq!(none_yet, [false; 4], "every chat empty");
    let batch: Vec<NewMessage> = (0..3)
        .map(|i| message(chat, &a, &format!("{i}"), None))
        .collect();
    store.append_messages(&batch).await.unwrap();
    store.mark_read(chat, b.id, 2).await.unwrap();
    let messaged = store.users_with_messages(&users).await.unwrap();
    assert_eq!(messaged, [true, true, false, false], "cat's chat is empty");
    let reads = |created_since| {
        [a.id, b.id, c.id, 0].map(|user| StandingsRead {
            user,
            created_since,
            most: 10,
        })
    };
    let before = empty.created_at.unix_micros();
    let found = store.chat_standings(&reads(before)).await.unwrap();
    let seen_with = |peer: &User, read_seq, peer_read_seq| ChatStanding {
        chat,
        peer: peer.id,
        last_seq: 3,
        read_seq,
        peer_read_seq,
        last_sender: a.id,
    };
    let mut as_a = found[0].clone();
    as_a.sort_by_key(|s| s.chat);
    assert_eq!(as_a.len(), 2, "{as_a:?}");
    assert_eq!(as_a[0], seen_with(&b, 3, 2));
    assert_eq!(
        (as_a[1].chat, as_a[1].peer, as_a[1].last_seq),
        (empty.id, c.id, 0)
    );
    assert_eq!(as_a[1].last_sender, 0, "no message");
    assert_eq!(found[1], vec![seen_with(&a, 2, 3)]);
    assert_eq!(found[2].len(), 1, "cat's empty chat, created since");
    assert!(found[3].is_empty(), "no such user");
    let later = store.chat_standings(&reads(before + 1)).await.unwrap();
    assert_eq!(
        later[0],
        vec![seen_with(&b, 3, 2)],
        "the older empty chat left out"
    );
    assert!(later[2].is_empty());
    // A reader that can use fewer chats than the user has gets one more than
    // it can use, and no more, whichever chats those are; readers that could
    // use thousands (a store may answer them in statements of their own)
    // are each answered in their place.
    let capped = |user: &User, most| StandingsRead {
        user: user.id,
        created_since: before,
        most,
    };
    let reads = [
        capped(&a, 0),
        capped(&a, 1),
        capped(&b, 5000),
        capped(&a, 5000),
        capped(&c, 2),
    ];
    let found = store.chat_standings(&reads).await.unwrap();
    let counts: Vec<usize> = found.iter().map(Vec::len).collect();
    assert_eq!(counts, [1, 2, 1, 2, 1], "ann has two chats to tell of");
    assert_eq!(found[2], vec![seen_with(&a, 2, 3)], "bob's, in its place");
}

/// A `sync`'s positions: of the chats named, those the user is in, each
/// once (a name given twice, another pair's chat and a chat that does not
/// exist are left out), whether the sync names a few chats or many (a store
/// may read those differently).
async fn positions_answer_few_and_many_named_chats_alike(store: Arc<dyn Store>) {
    let ann = user(&store, "ann").await;
    let mut mine = Vec::new();
    for i in 0..20 {
        let peer = user(&store, &format!("peer{i}")).await;
        let chat = store.start_chat(&ann, &peer).await.unwrap().chat.id;
        mine.push(ChatPosition {
            chat,
            peer: peer.id,
            last_seq: 0,
        });
    }
    store
        .append_messages(&[message(mine[3].chat, &ann, "hi", None)])
        .await
        .unwrap();
    mine[3].last_seq = 1;
    let (cat, dan) = (user(&store, "cat").await, user(&store, "dan").await);
    let others = store.start_chat(&cat, &dan).await.unwrap().chat.id;
    for count in [2, 20] {
        let mut named: Vec<i64> = mine[..count].iter().map(|p| p.chat).collect();
        named.extend([mine[0].chat, others, others + 1_000]);
        let mut found = store.chat_positions(ann.id, &named).await.unwrap();
        found.sort_by_key(|p| p.chat);
        assert_eq!(found, mine[..count], "{count} named");
    }
    // Many reads at once, few and many named chats mixed: each answered as
    // alone, a chat named twice once.
    let all: Vec<i64> = mine.iter().map(|p| p.chat).chain([others]).collect();
    let reads = [
        PositionsRead {
            user: ann.id,
            chats: all,
        },
        PositionsRead {
            user: cat.id,
            chats: vec![others, mine[0].chat],
        },
        PositionsRead {
            user: ann.id,
            chats: vec![mine[3].chat, others, mine[3].chat],
        },
        PositionsRead {
            user: dan.id,
            chats: Vec::new(),
        },
    ];
    let mut answers = store.positions_of_many(&reads).await.unwrap();
    assert_eq!(answers.len(), 4);
    answers[0].sort_by_key(|p| p.chat);
    assert_eq!(answers[0], mine);
    let cats = ChatPosition {
        chat: others,
        peer: dan.id,
        last_seq: 0,
    };
    assert_eq!(answers[1], [cats]);
    assert_eq!(answers[2], [mine[3]]);
    assert!(answers[3].is_empty());
}

async fn blacklisted_tokens_are_remembered(store: Arc<dyn Store>) {
    assert!(!store.is_token_blacklisted("jti-1").await.unwrap());
    store.blacklist_token("jti-1", 4_000_000_000).await.unwrap();
    store.blacklist_token("jti-1", 4_000_000_000).await.unwrap();
    assert!(store.is_token_blacklisted("jti-1").await.unwrap());
    store.ping().await.unwrap();
}

async fn failed_logins_are_counted_per_account_in_a_window(store: Arc<dyn Store>) {
    let ann = "ann@example.com";
    assert_eq!(store.failed_logins(ann).await.unwrap(), None);
    let window = std::time::Duration::from_millis(800);
    for expected in 1..=3 {
        let counted = store.count_failed_login(ann, window).await.unwrap();
        assert_eq!(counted.count, expected);
        assert!(
            counted.window_left > std::time::Duration::ZERO && counted.window_left <= window,
            "{counted:?}: the first failure opened the window"
        );
    }
    let open = store
        .failed_logins(ann)
        .await
        .unwrap()
        .expect("a window is open");
    assert_eq!(open.count, 3);
    assert_eq!(store.failed_logins("bob@example.com").await.unwrap(), None);
    tokio::time::sleep(window).await;
    assert_eq!(store.failed_logins(ann).await.unwrap(), None, "it closed");
    let reopened = store.count_failed_login(ann, window).await.unwrap();
    assert_eq!(reopened.count, 1, "a failure after it opens a new one");
}
