//! Fan-out: one committed message delivered through the room map to every local
//! socket of its chat's two participants (the same bytes queued on each
//! outbox), the sockets split between the two users.
//!
//! Run: `cargo bench --bench fanout`

use bytes::Bytes;
use chat_server::delivery::rooms::{
    Outbox, Outgoing, Published, Rooms, Subscriber, Taken, Watching,
};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::Mutex;

fn fanout(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let frame = Bytes::from(vec![b'x'; 300]);
    let mut group = c.benchmark_group("fan-out one message");
    for sockets in [2usize, 100, 1_000, 10_000] {
        let (rooms, receivers) = runtime.block_on(async {
            let rooms = Rooms::start(2, None, Default::default());
            let mut receivers = Vec::with_capacity(sockets);
            for conn in 0..sockets as u64 {
                let outbox = Outbox::new(16);
                let user_id = (conn % 2) as i64;
                let subscriber = Subscriber {
                    conn,
                    user_id,
                    watching: Watching::Chat(1),
                    outbox: outbox.clone(),
                };
                rooms.join(subscriber).await.keep();
                receivers.push(outbox);
            }
            (rooms, receivers)
        });
        group.throughput(Throughput::Elements(sockets as u64));
        let receivers = Arc::new(Mutex::new(receivers));
        group.bench_with_input(BenchmarkId::from_parameter(sockets), &sockets, |b, _| {
            b.to_async(&runtime).iter_custom(|iterations| {
                let (rooms, frame, receivers) = (rooms.clone(), frame.clone(), receivers.clone());
                async move {
                    let receivers = receivers.lock().await;
                    let started = Instant::now();
                    for _ in 0..iterations {
                        let message = Published {
                            chat: 1,
                            seq: 1,
                            audience: [0, 1],
                            frame: frame.clone(),
                        };
                        rooms.publish_all(&[message]).await;
                        for outbox in receivers.iter() {
                            let taken = outbox.take().await;
                            assert!(matches!(taken, Taken::Item(Outgoing::Message { .. })));
                        }
                    }
                    started.elapsed()
                }
            })
        });
    }
    group.finish();
}

criterion_group!(benches, fanout);
criterion_main!(benches);
