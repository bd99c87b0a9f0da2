//! Fan-out: one committed message delivered through the room map to every local
//! socket watching the chat (the same bytes queued on each outbox).
//!
//! Run: `cargo bench --bench fanout`

use bytes::Bytes;
use chat_server::rooms::{Rooms, Subscriber};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::{mpsc, Mutex, Notify};

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
                let (outbox, rx) = mpsc::channel(16);
                let overflow = Arc::new(Notify::new());
                let user_id = (conn % 2) as i64;
                rooms
                    .join(
                        1,
                        Subscriber {
                            conn,
                            user_id,
                            outbox,
                            overflow,
                        },
                    )
                    .await;
                receivers.push(rx);
            }
            (rooms, receivers)
        });
        group.throughput(Throughput::Elements(sockets as u64));
        let receivers = Arc::new(Mutex::new(receivers));
        group.bench_with_input(BenchmarkId::from_parameter(sockets), &sockets, |b, _| {
            b.to_async(&runtime).iter_custom(|iterations| {
                let (rooms, frame, receivers) = (rooms.clone(), frame.clone(), receivers.clone());
                async move {
                    let mut receivers = receivers.lock().await;
                    let started = Instant::now();
                    for _ in 0..iterations {
                        rooms.publish(1, 1, frame.clone()).await;
                        for rx in receivers.iter_mut() {
                            rx.recv().await.unwrap();
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
