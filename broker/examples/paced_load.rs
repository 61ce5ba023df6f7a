//! A paced load generator for `scripts/bench.sh`: POSTs one fixed body at a fixed rate over
//! keep-alive HTTP/1.1 connections and reports the latency distribution. Unlike `wrk`, which
//! sends the next request as soon as the last answer arrives, it keeps to a schedule set
//! before the run: request `i` is due at `start + i / rate`, and its latency is counted from
//! that due time, so a stalled broker shows in the figures instead of slowing the client
//! down (what wrk2 calls coordinated omission). One thread, as `wrk -t1`.
//!
//!     cargo run --release -p tessera-broker --example paced_load -- \
//!         ADDR PATH BODY_FILE RATE SECONDS [CONNECTIONS]
//!
//! Prints `paced <field> <value>` lines: the rate asked and reached, the answers that were
//! not 200, and p50/p90/p99/p99.9/max latency in milliseconds.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)] // bench code

use std::time::Duration;

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;
use tokio::time::Instant;

/// What one connection saw: the latency of each answer in microseconds, and how many were
/// not `200 OK`.
#[derive(Default)]
struct Seen {
    latencies_us: Vec<u64>,
    not_ok: u64,
}

/// Read one HTTP/1.1 response with a `Content-Length` body from `stream`; returns its
/// status. `buf` keeps bytes of the next response, if any arrived with this one.
async fn read_response(stream: &mut TcpStream, buf: &mut Vec<u8>) -> std::io::Result<u16> {
    let mut chunk = [0u8; 8192];
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = std::str::from_utf8(&buf[..end]).map_err(std::io::Error::other)?;
            let status = head.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
            let length: usize = head
                .lines()
                .filter_map(|l| l.split_once(':'))
                .find(|(name, _)| name.eq_ignore_ascii_case("content-length"))
                .and_then(|(_, v)| v.trim().parse().ok())
                .unwrap_or(0);
            let total = end + 4 + length;
            while buf.len() < total {
                let n = stream.read(&mut chunk).await?;
                if n == 0 {
                    return Err(std::io::ErrorKind::UnexpectedEof.into());
                }
                buf.extend_from_slice(&chunk[..n]);
            }
            buf.drain(..total);
            return Ok(status);
        }
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// Connection `index` of `connections` sends requests `index`, `index + connections`, …
/// each at its due time (or at once, if it is already late), until `end`.
async fn connection(
    addr: String,
    request: std::sync::Arc<Vec<u8>>,
    start: Instant,
    interval: Duration,
    index: u32,
    connections: u32,
    end: Instant,
) -> Seen {
    let mut stream = TcpStream::connect(&addr).await.expect("connect");
    stream.set_nodelay(true).unwrap();
    let mut seen = Seen::default();
    let mut buf = Vec::new();
    let mut i = index;
    loop {
        let due = start + interval * i;
        if due >= end {
            return seen;
        }
        tokio::time::sleep_until(due).await;
        stream.write_all(&request).await.expect("send");
        let status = read_response(&mut stream, &mut buf).await.expect("answer");
        seen.latencies_us.push(due.elapsed().as_micros() as u64);
        seen.not_ok += u64::from(status != 200);
        i += connections;
    }
}

fn percentile(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1] as f64 / 1000.0
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.len() < 5 {
        eprintln!("usage: paced_load ADDR PATH BODY_FILE RATE SECONDS [CONNECTIONS]");
        std::process::exit(2);
    }
    let (addr, path) = (args[0].clone(), &args[1]);
    let body = std::fs::read(&args[2]).expect("body file");
    let rate: f64 = args[3].parse().expect("rate");
    let seconds: f64 = args[4].parse().expect("seconds");
    let connections: u32 = args.get(5).map_or(32, |c| c.parse().expect("connections"));
    let mut request = format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/x-www-form-urlencoded\r\n\
         Content-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    request.extend_from_slice(&body);
    let request = std::sync::Arc::new(request);

    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let (seen, elapsed) = runtime.block_on(async {
        let interval = Duration::from_secs_f64(1.0 / rate);
        // Connections open first; the schedule starts once they are all up.
        let start = Instant::now() + Duration::from_millis(200);
        let end = start + Duration::from_secs_f64(seconds);
        let tasks: Vec<_> = (0..connections)
            .map(|c| {
                let task = connection(addr.clone(), request.clone(), start, interval, c, connections, end);
                tokio::spawn(task)
            })
            .collect();
        let mut all = Seen::default();
        for task in tasks {
            let seen = task.await.unwrap();
            all.latencies_us.extend(seen.latencies_us);
            all.not_ok += seen.not_ok;
        }
        (all, start.elapsed().as_secs_f64())
    });
    let mut latencies = seen.latencies_us;
    latencies.sort_unstable();
    println!("paced rate_asked {rate:.0}");
    println!("paced rate_reached {:.0}", latencies.len() as f64 / elapsed);
    println!("paced requests {}", latencies.len());
    println!("paced not_ok {}", seen.not_ok);
    for (name, p) in
        [("p50_ms", 50.0), ("p90_ms", 90.0), ("p99_ms", 99.0), ("p999_ms", 99.9), ("max_ms", 100.0)]
    {
        println!("paced {name} {:.2}", percentile(&latencies, p));
    }
}
