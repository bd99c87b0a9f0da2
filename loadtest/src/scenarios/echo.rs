//! `echo`: the transport ceiling. A minimal fastwebsockets echo server started
//! here, driven by the same sender code as `chat`: what one machine can move
//! through WebSockets with no storage and no fan-out.

use super::client::{self, Pace};
use crate::cli::EchoArgs;
use crate::endpoint::Endpoint;
use crate::procfs::{self, Consumer, CpuSnapshot};
use crate::progress::Progress;
use crate::report::{self, EchoFigures, Report};
use crate::stats::{self, Recorder};
use crate::ws;
use crate::Result;
use fastwebsockets::{upgrade, Frame, OpCode, Payload};
use http_body_util::Empty;
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub async fn run(args: EchoArgs) -> Result<Report<EchoFigures>> {
    let endpoint = start_server().await?;
    let mut sockets = Vec::with_capacity(args.connections);
    for _ in 0..args.connections {
        sockets.push(ws::connect(&endpoint, "/", None).await?);
    }
    let live = Arc::new(AtomicU64::new(0));
    let duration = Duration::from_secs(args.output.duration);
    let cpu_before = CpuSnapshot::take(&[]);
    let start = Instant::now();
    let progress = Progress::start("echo", duration, live.clone());
    let pace = Pace {
        window: args.window,
        rate: None,
        size: args.size,
    };
    let mut tasks = Vec::new();
    let senders = sockets.len();
    for (index, socket) in sockets.into_iter().enumerate() {
        let phase = pace.phase(index, senders);
        let recorder = Arc::new(Mutex::new(Recorder::new(start, live.clone())));
        let seen = recorder.clone();
        let is_ack = move |bytes: &[u8]| {
            if let Some(stamp) = std::str::from_utf8(bytes).ok().and_then(client::stamp_of) {
                if let Ok(mut r) = seen.lock() {
                    r.record(stats::since(start, stamp));
                }
            }
            true
        };
        let frame_for = move |n: u64| {
            Frame::text(Payload::Owned(
                client::content(start, n, pace.size).into_bytes(),
            ))
        };
        tasks.push(tokio::spawn(async move {
            let done = client::send_loop(
                socket,
                pace,
                phase,
                start + duration,
                Duration::from_secs(5),
                frame_for,
                is_ack,
            )
            .await;
            (done, recorder)
        }));
    }
    let mut merged = Recorder::new(start, live.clone());
    let mut errors = 0;
    for task in tasks {
        let (done, recorder) = task.await?;
        errors += done.errors;
        let guard = recorder.lock();
        if let Ok(r) = guard {
            merged.merge(&r);
        };
    }
    drop(progress);
    let cpu_after = CpuSnapshot::take(&[]);
    let mut report = Report::measured("echo", duration.as_secs_f64(), &merged);
    report.errors = errors;
    // Server and clients both run here: the whole transport's CPU per message.
    let tool = cpu_after.spent_since(&cpu_before, Consumer::Tool);
    report.figures = EchoFigures {
        tool_cpu_per_message_us: report::cpu_per(tool, report.delivered),
        cores: Some(procfs::cores()),
        connections: args.connections as u64,
        window: args.window as u64,
    };
    Ok(report)
}

/// Starts the minimal echo server on a free loopback port, listening as the
/// chat server does (a deep accept queue, so connect storms measure the
/// handshake and not listen overflows; connections handed over with their
/// first bytes; `TCP_NODELAY` from the listener).
async fn start_server() -> Result<Endpoint> {
    let listener = listen()?;
    let endpoint = Endpoint::resolve(&format!("http://{}", listener.local_addr()?)).await?;
    tokio::spawn(serve(listener));
    Ok(endpoint)
}

fn listen() -> Result<tokio::net::TcpListener> {
    let defer_accept = std::time::Duration::from_secs(10);
    Ok(chat_server::net::listen(
        "127.0.0.1:0".parse()?,
        defer_accept,
    )?)
}

/// The `echo-server` subcommand: the echo server in this process, its URL on
/// the first line of standard output, until standard input closes (so it never
/// outlives the tool that started it).
pub async fn serve_until_stdin_closes() -> Result<()> {
    let listener = listen()?;
    println!("http://{}", listener.local_addr()?);
    tokio::spawn(serve(listener));
    tokio::io::copy(&mut tokio::io::stdin(), &mut tokio::io::sink()).await?;
    Ok(())
}

/// The echo server as a process of its own (`loadtest echo-server`): a server
/// holding many sockets then has its own file limit and its own RSS to read.
/// It ends when this handle drops.
pub struct EchoProcess {
    child: tokio::process::Child,
    pub endpoint: Endpoint,
}

impl EchoProcess {
    pub async fn start() -> Result<Self> {
        use std::process::Stdio;
        use tokio::io::AsyncBufReadExt;
        let mut child = tokio::process::Command::new(std::env::current_exe()?)
            .arg("echo-server")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()?;
        let stdout = child.stdout.take().ok_or("echo-server: no stdout")?;
        let url = tokio::io::BufReader::new(stdout)
            .lines()
            .next_line()
            .await?
            .ok_or("echo-server: ended before printing its URL")?;
        let endpoint = Endpoint::resolve(url.trim()).await?;
        Ok(EchoProcess { child, endpoint })
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }
}

async fn serve(listener: tokio::net::TcpListener) {
    while let Ok((stream, _)) = listener.accept().await {
        chat_server::net::socket_options::set_nodelay_unless_inherited(&stream);
        tokio::spawn(async move {
            let service = hyper::service::service_fn(upgrade_and_echo);
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .with_upgrades()
                .await;
        });
    }
}

async fn upgrade_and_echo(mut request: Request<Incoming>) -> Result<Response<Empty<Bytes>>> {
    let (response, fut) = upgrade::upgrade(&mut request)?;
    tokio::spawn(async move {
        let Ok(ws) = fut.await else { return };
        let mut ws = fastwebsockets::FragmentCollector::new(ws);
        while let Ok(frame) = ws.read_frame().await {
            let echo = matches!(frame.opcode, OpCode::Text | OpCode::Binary);
            if frame.opcode == OpCode::Close || (echo && ws.write_frame(frame).await.is_err()) {
                return;
            }
        }
    });
    Ok(response)
}
