//! A webhook receiver for the server tests: a small HTTP/1.1 server on a std `TcpListener` on
//! loopback that records every POST. Paths starting with `/flaky` answer 500 to the first two POSTs
//! of each alert (by the generic format's `dedupeKey`), then 200; every other path answers 200.

#![allow(dead_code)]

use serde_json::Value;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// One POST the receiver got.
#[derive(Clone, Debug)]
pub struct Hit {
    /// The request path.
    pub path: String,
    /// The JSON body (null if not JSON).
    pub body: Value,
    /// The status answered.
    pub status: u16,
}

/// A webhook receiver on loopback. Paths starting with `/flaky` answer 500 to the first two POSTs
/// of each alert (by the generic format's `dedupeKey`), then 200; every other path answers 200.
pub struct Receiver {
    hits: Arc<Mutex<Vec<Hit>>>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Receiver {
    /// Listens on `127.0.0.1:port` until dropped.
    pub fn start(port: u16) -> Receiver {
        let listener = TcpListener::bind(("127.0.0.1", port)).expect("bind the receiver");
        listener.set_nonblocking(true).unwrap();
        let hits: Arc<Mutex<Vec<Hit>>> = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        let (h, s) = (hits.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            while !s.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((stream, _)) => serve_one(stream, &h),
                    Err(_) => std::thread::sleep(Duration::from_millis(10)),
                }
            }
        });
        Receiver {
            hits,
            stop,
            thread: Some(thread),
        }
    }

    /// Every POST so far.
    pub fn hits(&self) -> Vec<Hit> {
        self.hits.lock().unwrap().clone()
    }

    /// The bodies answered 200 on `path`.
    pub fn delivered(&self, path: &str) -> Vec<Value> {
        self.hits()
            .into_iter()
            .filter(|h| h.path == path && h.status == 200)
            .map(|h| h.body)
            .collect()
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Reads one HTTP/1.1 request, records it and answers (then closes the connection).
fn serve_one(stream: TcpStream, hits: &Mutex<Vec<Hit>>) {
    stream.set_nonblocking(false).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut line = String::new();
    if reader.read_line(&mut line).is_err() {
        return;
    }
    let path = line.split_whitespace().nth(1).unwrap_or("").to_string();
    let mut length = 0usize;
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h).is_err() || h.trim().is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':')
            && k.eq_ignore_ascii_case("content-length")
        {
            length = v.trim().parse().unwrap_or(0);
        }
    }
    let mut body = vec![0; length];
    if reader.read_exact(&mut body).is_err() {
        return;
    }
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let mut hits = hits.lock().unwrap();
    let status = if path.starts_with("/flaky") {
        let before = hits
            .iter()
            .filter(|h| h.path == path && h.body["dedupeKey"] == body["dedupeKey"])
            .count();
        if before < 2 { 500 } else { 200 }
    } else {
        200
    };
    hits.push(Hit { path, body, status });
    drop(hits);
    let reason = if status == 200 {
        "OK"
    } else {
        "Internal Server Error"
    };
    let text = if status == 200 { "ok" } else { "boom" };
    let mut stream = stream;
    let _ = write!(
        stream,
        "HTTP/1.1 {status} {reason}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{text}",
        text.len()
    );
    let _ = stream.flush();
}
