//! What the protocol fakes ([`google`](crate::google), [`entra`](crate::entra)) share as
//! test servers: an actix server on loopback that stops when dropped (the
//! [`TestIssuer`](crate::TestIssuer) and the [`sts`](crate::sts) proxy run on it too); per
//! endpoint, a log of calls (counted
//! on arrival), answered requests and failures a test queued; the [`Faults`] a test sets
//! (delays, outages); one way of answering a request through all of these; and refusals
//! carrying the description the real service gives.

use std::collections::{BTreeMap, VecDeque};
use std::net::TcpListener;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix_web::dev::ServerHandle;
use actix_web::{App, HttpResponse, HttpServer, web};
use serde_json::Value;

/// Why a fake refused a request, with the description the real service gives.
#[derive(Debug)]
pub struct Refused<R> {
    pub reason: R,
    pub description: String,
}

pub fn refuse<T, R>(reason: R, description: impl Into<String>) -> Result<T, Refused<R>> {
    Err(Refused { reason, description: description.into() })
}

/// A fake's reasons for refusing, which include the failures a test injects.
pub trait Refusal: Clone {
    /// A failure with `status` the test queued, or an outage (503).
    fn injected(status: u16) -> Self;
}

/// A request as a fake logs it, once answered.
pub trait Logged<R> {
    fn answered(&mut self, status: u16, refusal: Option<R>);
}

/// A running fake: an actix server on `http://127.0.0.1:<port>`, stopped when dropped.
#[derive(Debug)]
pub struct FakeServer {
    url: String,
    handle: ServerHandle,
}

impl FakeServer {
    /// Serve `routes` with the state `state` makes from the server's URL, on one worker, with
    /// no signal handling. Call from within a Tokio runtime.
    pub fn start<S: Send + Sync + 'static>(
        state: impl FnOnce(String) -> S,
        routes: fn(&mut web::ServiceConfig),
    ) -> (Arc<S>, Self) {
        Self::start_on(1, state, routes)
    }

    /// As [`start`](Self::start), on `workers` worker threads.
    pub fn start_on<S: Send + Sync + 'static>(
        workers: usize,
        state: impl FnOnce(String) -> S,
        routes: fn(&mut web::ServiceConfig),
    ) -> (Arc<S>, Self) {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind loopback");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        let state = Arc::new(state(url.clone()));
        let shared = Arc::clone(&state);
        let server = HttpServer::new(move || {
            App::new().app_data(web::Data::from(Arc::clone(&shared))).configure(routes)
        })
        .workers(workers)
        .disable_signals()
        .listen(listener)
        .expect("listen")
        .run();
        let handle = server.handle();
        tokio::spawn(server);
        (state, Self { url, handle })
    }

    pub fn url(&self) -> &str {
        &self.url
    }
}

impl Drop for FakeServer {
    fn drop(&mut self) {
        // Stop without waiting: the runtime may be shutting down too.
        drop(self.handle.stop(false));
    }
}

/// The HTTP client a fake fetches an issuer's keys with.
pub fn http_client() -> reqwest::Client {
    reqwest::Client::builder().timeout(Duration::from_secs(5)).build().expect("HTTP client")
}

/// One endpoint's log: calls counted on arrival, the requests answered, in order, and the
/// failures a test queued for the next calls.
#[derive(Debug)]
pub struct Endpoint<Q> {
    calls: AtomicUsize,
    requests: Mutex<Vec<Q>>,
    fail: Mutex<VecDeque<u16>>,
}

impl<Q> Default for Endpoint<Q> {
    fn default() -> Self {
        Self { calls: AtomicUsize::new(0), requests: Mutex::default(), fail: Mutex::default() }
    }
}

impl<Q: Clone> Endpoint<Q> {
    /// Requests that reached the endpoint, refused and failed ones included.
    pub fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }

    /// Every answered request, in order.
    pub fn requests(&self) -> Vec<Q> {
        self.requests.lock().expect("lock").clone()
    }

    pub fn last(&self) -> Option<Q> {
        self.requests.lock().expect("lock").last().cloned()
    }

    /// Answer the next `times` requests with `status`.
    pub fn fail_next(&self, times: usize, status: u16) {
        self.fail.lock().expect("lock").extend(std::iter::repeat_n(status, times));
    }

    /// Answer one request: count it, hold it as `faults` say, then fail it as queued (with
    /// `unavailable` as the description) or answer what `run` makes of it, 200 with its
    /// JSON. A refusal is added to `refusals` and answered by `refused`. The request is
    /// logged with its answer.
    pub async fn answer<R: Refusal>(
        &self,
        faults: &Faults,
        refusals: &Mutex<Vec<R>>,
        mut request: Q,
        unavailable: &str,
        run: impl AsyncFnOnce(&mut Q) -> Result<Value, Refused<R>>,
        refused: impl FnOnce(&Refused<R>) -> HttpResponse,
    ) -> HttpResponse
    where
        Q: Logged<R>,
    {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let _flight = faults.enter();
        let result = match faults.hold(&self.fail).await {
            Some(status) => refuse(R::injected(status), unavailable),
            None => run(&mut request).await,
        };
        let (response, refusal) = match result {
            Ok(answer) => (HttpResponse::Ok().json(answer), None),
            Err(reason) => {
                refusals.lock().expect("lock").push(reason.reason.clone());
                (refused(&reason), Some(reason.reason))
            }
        };
        request.answered(response.status().as_u16(), refusal);
        self.requests.lock().expect("lock").push(request);
        response
    }
}

/// A form as a map: each parameter at most once (RFC 6749 §3.1), and each one of `known`;
/// else the refusal `unknown` or `repeated` makes of the parameter's name.
pub fn form_parameters<R>(
    form: &[(String, String)],
    known: &[&str],
    unknown: impl FnOnce(&str) -> Refused<R>,
    repeated: impl FnOnce(&str) -> Refused<R>,
) -> Result<BTreeMap<String, String>, Refused<R>> {
    let mut map = BTreeMap::new();
    for (name, value) in form {
        if !known.contains(&name.as_str()) {
            return Err(unknown(name));
        }
        if map.insert(name.clone(), value.clone()).is_some() {
            return Err(repeated(name));
        }
    }
    Ok(map)
}

/// What a test can do to a fake service: hold each request for a while, take it down
/// (every request answered 503), and see how many requests it answers at once.
#[derive(Debug, Default)]
pub struct Faults {
    down: AtomicBool,
    delay: Mutex<Duration>,
    in_flight: AtomicUsize,
    max_in_flight: AtomicUsize,
}

/// A request being answered; counted in [`Faults::in_flight`] until dropped.
#[derive(Debug)]
pub struct InFlight<'a>(&'a Faults);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Faults {
    /// Count a request as being answered until the guard drops.
    pub fn enter(&self) -> InFlight<'_> {
        let now = self.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        self.max_in_flight.fetch_max(now, Ordering::SeqCst);
        InFlight(self)
    }

    /// Wait the delay; then the status to fail with: 503 while down, else the next
    /// status a test injected into `injected`, if any.
    pub async fn hold(&self, injected: &Mutex<VecDeque<u16>>) -> Option<u16> {
        let delay = *self.delay.lock().expect("lock");
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        if self.down.load(Ordering::SeqCst) {
            return Some(503);
        }
        injected.lock().expect("lock").pop_front()
    }

    /// Answer every request with 503 (`true`) or serve again (`false`).
    pub fn set_down(&self, down: bool) {
        self.down.store(down, Ordering::SeqCst);
    }

    /// Hold every request this long before answering it.
    pub fn set_delay(&self, delay: Duration) {
        *self.delay.lock().expect("lock") = delay;
    }

    /// Requests being answered now.
    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::SeqCst)
    }

    /// The most requests answered at once so far.
    pub fn max_in_flight(&self) -> usize {
        self.max_in_flight.load(Ordering::SeqCst)
    }
}
