//! `backstop chaos serve`: an OpenAI- and Anthropic-compatible endpoint on a local
//! address that answers with the fault model's faults, so any client can be tried
//! against them. HTTP/1.1 through hyper on tokio; it runs until SIGINT or SIGTERM.

use std::io::Write;
use std::os::fd::AsFd;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::dealer::Dealer;
use super::exchange::{Shared, Socket, exchange};
use super::model::Faults;
use super::upstream::Upstream;
use crate::error::UserError;
use crate::exit_code::SUCCESS;

/// Connections served at once; more wait to be accepted.
pub const MAX_CONNECTIONS: usize = 256;

/// How long a client may take to send a request's head.
const HEAD_TIMEOUT: Duration = Duration::from_secs(30);

pub struct ServeOptions {
    pub faults: Faults,
    /// `host:port`; port 0 picks a free one.
    pub listen: String,
    pub upstream: Option<String>,
    pub seed: u64,
    pub json: bool,
    pub quiet: bool,
}

/// Serves until SIGINT or SIGTERM, then returns 0.
pub fn serve(opts: ServeOptions) -> Result<u8> {
    let upstream = match &opts.upstream {
        Some(url) => Some(Upstream::new(url).map_err(UserError::Usage)?),
        None => None,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the server's runtime")?;
    let shared = Arc::new(Shared {
        dealer: Mutex::new(Dealer::new(opts.faults, opts.seed)),
        started: Instant::now(),
        upstream,
        quiet: opts.quiet,
    });
    let result = runtime.block_on(run(&opts.listen, opts.json, shared));
    // Stalled replies hold their connections for minutes: they are dropped, not waited for.
    runtime.shutdown_timeout(Duration::from_millis(200));
    result
}

async fn run(listen: &str, json: bool, shared: Arc<Shared>) -> Result<u8> {
    // Before the address is printed: a script that reads it may signal at once.
    let mut term = signal(SignalKind::terminate()).context("cannot handle SIGTERM")?;
    let mut int = signal(SignalKind::interrupt()).context("cannot handle SIGINT")?;
    let listener = TcpListener::bind(listen).await.map_err(|e| {
        UserError::Usage(format!(
            "cannot listen on {listen}: {}",
            crate::error::io_message(&e)
        ))
    })?;
    let bound = listener
        .local_addr()
        .context("cannot read the bound address")?;
    announce(bound, json)?;
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let accepted = tokio::select! {
            _ = term.recv() => break,
            _ = int.recv() => break,
            a = accept(&listener, &slots) => a,
        };
        let (stream, slot) = accepted;
        tokio::spawn(connection(stream, Arc::clone(&shared), slot));
    }
    if !shared.quiet {
        let served = shared.dealer.lock().map_or(0, |d| d.dealt());
        eprintln!("chaos: stopped; {served} model request(s) served");
    }
    Ok(SUCCESS)
}

/// The address on stdout, one line, flushed: scripts read it to find the server.
fn announce(bound: std::net::SocketAddr, json: bool) -> Result<()> {
    let url = format!("http://{bound}");
    let mut out = std::io::stdout().lock();
    if json {
        let doc = serde_json::json!({ "url": url, "address": bound.to_string() });
        writeln!(out, "{doc}")?;
    } else {
        writeln!(out, "listening on {url}")?;
    }
    out.flush()?;
    Ok(())
}

/// The next connection, once a slot is free. An accept that fails (no file
/// descriptors left, a connection reset before it was accepted) is tried again.
async fn accept(
    listener: &TcpListener,
    slots: &Arc<Semaphore>,
) -> (TcpStream, OwnedSemaphorePermit) {
    loop {
        let Ok(slot) = Arc::clone(slots).acquire_owned().await else {
            std::future::pending::<()>().await;
            continue;
        };
        match listener.accept().await {
            Ok((stream, _)) => return (stream, slot),
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}

async fn connection(stream: TcpStream, shared: Arc<Shared>, _slot: OwnedSemaphorePermit) {
    let _ = stream.set_nodelay(true);
    let socket = Arc::new(Socket(Mutex::new(stream.as_fd().try_clone_to_owned().ok())));
    let service = service_fn(move |req| exchange(req, Arc::clone(&shared), Arc::clone(&socket)));
    let _ = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(HEAD_TIMEOUT)
        .serve_connection(TokioIo::new(stream), service)
        .await;
}
