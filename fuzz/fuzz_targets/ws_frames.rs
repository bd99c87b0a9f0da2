//! WebSocket frames as a server reads them: the bytes a client sends, over a
//! real loopback TCP connection, through the session's message reader (frame
//! bounds, fastwebsockets' frame reader, reassembly under a size cap, UTF-8
//! checks). Never a panic nor a hang: every input ends in an error or the end
//! of the stream, after a bounded number of messages.
#![no_main]

use chat_server::ws::transport::{MessageReader, Socket};
use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};

/// The harness's runtime and listener, made once for the whole run.
struct Harness {
    runtime: tokio::runtime::Runtime,
    listener: TcpListener,
}

fn harness() -> &'static Harness {
    static HARNESS: OnceLock<Harness> = OnceLock::new();
    HARNESS.get_or_init(|| {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime");
        let listener = runtime
            .block_on(TcpListener::bind("127.0.0.1:0"))
            .expect("a loopback listener");
        Harness { runtime, listener }
    })
}

fuzz_target!(|data: &[u8]| {
    let harness = harness();
    harness.runtime.block_on(async {
        let addr = harness.listener.local_addr().unwrap();
        let (client, accepted) = tokio::join!(TcpStream::connect(addr), harness.listener.accept());
        let (mut client, (server, _)) = (client.unwrap(), accepted.unwrap());
        client.write_all(data).await.unwrap();
        client.shutdown().await.unwrap();
        let socket = Socket::new(server);
        let mut reader = MessageReader::new(&socket, bytes::Bytes::new(), 4096);
        let read_all = async {
            // Each message takes at least a 2-byte header from the input.
            for _ in 0..=data.len() / 2 {
                if reader.next().await.is_err() {
                    return;
                }
            }
            panic!("more messages than the input can hold");
        };
        tokio::time::timeout(Duration::from_secs(5), read_all)
            .await
            .expect("the reader reaches the end of the input");
        drop(client);
    });
});
