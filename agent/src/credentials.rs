//! The credentials the agent keeps: one slot per (target, scope), each refreshed by its own
//! task ahead of expiry, with jittered exponential backoff on failure, and served until it
//! actually expires (minus a margin) whatever the broker is doing. Beside each refresh
//! task, a watch task holds a revocation watch open at the broker and wakes the refresh
//! task the moment the broker says the credential is revoked ([`watch_loop`]).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Deserialize;
use serde_json::{Value, json};
use tessera_adapters::clock::format_rfc3339;
use tessera_adapters::oauth::grant_type;
use tessera_adapters::target::{AwsCredentials, PostgresCredentials};
use tessera_adapters::{Clock, Secret};
use tokio::io::AsyncWriteExt as _;
use tokio::sync::{Notify, watch};
use url::Url;

use crate::config::RefreshConfig;
use crate::set;
use crate::subject::{Subject, SubjectError};

/// How often a waiting refresh task looks at the clock again, so a clock that jumps (or a
/// test's manual clock) is noticed promptly.
const CLOCK_CHECK: Duration = Duration::from_secs(1);
/// How long the broker is asked to hold a revocation watch: below common proxy idle
/// timeouts.
const WATCH_WAIT: Duration = Duration::from_secs(25);
/// Time allowed beyond [`WATCH_WAIT`] for the broker's answer to arrive.
const WATCH_SLACK: Duration = Duration::from_secs(15);
/// How long to wait before asking a broker that had no watch endpoint again (it may have
/// been upgraded since).
const WATCH_ABSENT_RETRY: Duration = Duration::from_secs(600);

/// What to ask the broker for.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Want {
    pub target: String,
    pub scope: Option<String>,
}

/// A credential the broker issued.
#[derive(Debug)]
pub struct Issued {
    pub access_token: Secret<String>,
    pub token_type: String,
    /// Agent clock, seconds since the epoch.
    pub issued_at: i64,
    pub expires_at: i64,
    pub aws: Option<AwsCredentials>,
    pub postgres: Option<PostgresCredentials>,
}

/// A file the agent keeps holding a credential.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OutFile {
    /// The access token alone.
    Token(PathBuf),
    /// A libpq password file with the PostgreSQL login.
    Passfile(PathBuf),
}

impl OutFile {
    fn path(&self) -> &Path {
        match self {
            Self::Token(p) | Self::Passfile(p) => p,
        }
    }

    /// What the file holds for `issued`.
    fn contents(&self, issued: &Issued) -> Result<Secret<String>, String> {
        match self {
            Self::Token(_) => Ok(issued.access_token.clone()),
            Self::Passfile(_) => issued
                .postgres
                .as_ref()
                .map(passfile_line)
                .ok_or_else(|| "the target issued no PostgreSQL login".to_string()),
        }
    }
}

/// One line of a libpq password file (PostgreSQL manual, "The Password File"):
/// `host:port:database:username:password`, each `:` and `\` in a field escaped with `\`,
/// `*` for a part the login does not name.
pub fn passfile_line(c: &PostgresCredentials) -> Secret<String> {
    let field = |v: &str| v.replace('\\', "\\\\").replace(':', "\\:");
    let port = c.port.map(|p| p.to_string());
    let parts = [
        c.host.as_deref().map_or_else(|| "*".to_string(), field),
        port.unwrap_or_else(|| "*".to_string()),
        c.database.as_deref().map_or_else(|| "*".to_string(), field),
        field(&c.username),
        field(c.password.expose()),
    ];
    Secret::new(format!("{}\n", parts.join(":")))
}

/// Why a refresh failed. Messages never carry a token or credential.
#[derive(Debug, thiserror::Error)]
pub enum RefreshError {
    #[error(transparent)]
    Subject(#[from] SubjectError),
    #[error("the broker is unreachable: {0}")]
    Unreachable(String),
    #[error("the broker refused: {error} (HTTP {status})")]
    Refused { status: u16, error: String },
    #[error("the broker revoked this workload's credentials for this target")]
    Revoked,
    #[error("the broker is unavailable: {error} (HTTP {status})")]
    Unavailable { status: u16, error: String },
    #[error("the broker answered something that is not a token response")]
    Malformed,
}

impl RefreshError {
    /// The greppable code `/healthz` reports.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Subject(e) => e.code(),
            Self::Unreachable(_) => "TS-AGENT-BROKER-UNREACHABLE",
            Self::Refused { .. } => "TS-AGENT-BROKER-REFUSED",
            Self::Revoked => "TS-AGENT-REVOKED",
            Self::Unavailable { .. } => "TS-AGENT-BROKER-UNAVAILABLE",
            Self::Malformed => "TS-AGENT-BROKER-MALFORMED",
        }
    }
}

#[derive(Debug, Default)]
struct SlotState {
    current: Option<Arc<Issued>>,
    last_error: Option<(&'static str, String)>,
    failures: u32,
    refreshes: u64,
    last_refresh_at: Option<i64>,
    file_error: Option<String>,
    /// The broker's last answer was the revocation error: nothing is served until an
    /// exchange succeeds again.
    revoked: bool,
}

/// One kept credential.
#[derive(Debug)]
pub struct Slot {
    pub want: Want,
    files: Vec<OutFile>,
    state: Mutex<SlotState>,
    /// The fingerprint of the credential served, for the watch task; `None` while none is.
    held: watch::Sender<Option<String>>,
    /// The watch task asks the refresh task to exchange now.
    recheck: Notify,
}

impl Slot {
    /// Write `issued` to the slot's files.
    pub async fn write(&self, issued: &Issued) -> Result<(), String> {
        write_files(&self.files, issued).await
    }
}

/// Why no credential can be served right now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unavailable {
    /// Nothing is configured for this (target, scope).
    Unknown,
    /// Not obtained yet, or expired and not renewed; the last error's code, if any.
    NotReady(Option<&'static str>),
    /// The broker refused it as revoked; what was held is dropped.
    Revoked,
}

/// Every slot, the clock and the refresh policy.
#[derive(Debug)]
pub struct Store {
    slots: BTreeMap<Want, Arc<Slot>>,
    clock: Arc<dyn Clock>,
    pub(crate) refresh: RefreshConfig,
}

impl Store {
    /// One slot per distinct want; `files` are the files each one writes.
    pub fn new(wants: Vec<(Want, Option<OutFile>)>, clock: Arc<dyn Clock>, refresh: RefreshConfig) -> Self {
        let mut files: BTreeMap<Want, Vec<OutFile>> = BTreeMap::new();
        for (want, file) in wants {
            let entry = files.entry(want).or_default();
            entry.extend(file);
        }
        let slots = files
            .into_iter()
            .map(|(want, files)| {
                let slot = Slot {
                    want: want.clone(),
                    files,
                    state: Mutex::new(SlotState::default()),
                    held: watch::Sender::new(None),
                    recheck: Notify::new(),
                };
                (want, Arc::new(slot))
            })
            .collect();
        Self { slots, clock, refresh }
    }

    pub fn slots(&self) -> impl Iterator<Item = &Arc<Slot>> {
        self.slots.values()
    }

    pub fn now(&self) -> i64 {
        self.clock.now()
    }

    /// The credential for `want` if it may still be served (it expires more than the
    /// margin from now).
    pub fn get(&self, want: &Want) -> Result<Arc<Issued>, Unavailable> {
        let slot = self.slots.get(want).ok_or(Unavailable::Unknown)?;
        let state = lock(&slot.state);
        if state.revoked {
            return Err(Unavailable::Revoked);
        }
        let now = self.clock.now();
        match &state.current {
            Some(c) if self.servable(c, now) => Ok(Arc::clone(c)),
            _ => Err(Unavailable::NotReady(state.last_error.as_ref().map(|(code, _)| *code))),
        }
    }

    fn servable(&self, c: &Issued, now: i64) -> bool {
        now < c.expires_at - secs(self.refresh.margin)
    }

    /// When `c` is due for renewal: once `after` of its lifetime has passed, and never later
    /// than the margin before expiry.
    pub(crate) fn refresh_at(&self, c: &Issued) -> i64 {
        let lifetime = (c.expires_at - c.issued_at).max(0);
        // `after` is within 0.1..=0.9, so the product fits comfortably.
        #[allow(clippy::cast_possible_truncation, clippy::cast_precision_loss)]
        let due = c.issued_at + (lifetime as f64 * self.refresh.after).ceil() as i64;
        due.min(c.expires_at - secs(self.refresh.margin))
    }

    /// `/healthz`: every slot's state, and whether all of them can serve.
    pub fn health(&self) -> (bool, Value) {
        let now = self.clock.now();
        let mut all_servable = true;
        let mut all_fresh = true;
        let credentials: Vec<Value> = self
            .slots
            .values()
            .map(|slot| {
                let s = lock(&slot.state);
                let servable = !s.revoked && s.current.as_ref().is_some_and(|c| self.servable(c, now));
                let fresh = s.current.as_ref().is_some_and(|c| now < self.refresh_at(c));
                let state = match (servable, fresh, s.last_error.is_some()) {
                    _ if s.revoked => "revoked",
                    (true, true, _) => "fresh",
                    (true, false, _) => "stale",
                    (false, _, true) => "failing",
                    (false, _, false) => "pending",
                };
                all_servable &= servable;
                all_fresh &= fresh;
                let mut v = json!({
                    "target": slot.want.target,
                    "scope": slot.want.scope,
                    "state": state,
                    "refreshes": s.refreshes,
                    "consecutive_failures": s.failures,
                });
                if let Some(c) = &s.current {
                    set(&mut v, "expires_at", json!(format_rfc3339(c.expires_at)));
                    set(&mut v, "refresh_at", json!(format_rfc3339(self.refresh_at(c))));
                }
                if let Some(at) = s.last_refresh_at {
                    set(&mut v, "last_refresh_at", json!(format_rfc3339(at)));
                }
                if let Some((code, message)) = &s.last_error {
                    set(&mut v, "last_error", json!({ "code": code, "message": message }));
                }
                if let Some(e) = &s.file_error {
                    set(&mut v, "token_file_error", json!(e));
                }
                v
            })
            .collect();
        let status = if !all_servable {
            "unavailable"
        } else if all_fresh {
            "ok"
        } else {
            "degraded"
        };
        (all_servable, json!({ "status": status, "credentials": credentials }))
    }
}

fn secs(d: Duration) -> i64 {
    i64::try_from(d.as_secs()).unwrap_or(i64::MAX)
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Talks to the broker's token endpoint.
#[derive(Debug, Clone)]
pub struct BrokerClient {
    pub http: reqwest::Client,
    pub token_url: Url,
    pub subject: Arc<Subject>,
}

#[derive(Deserialize)]
struct TokenResponse {
    access_token: String,
    token_type: String,
    expires_in: i64,
    #[serde(default)]
    aws_credentials: Option<AwsCredentials>,
    #[serde(default)]
    postgres_credentials: Option<PostgresCredentials>,
}

#[derive(Deserialize)]
struct ErrorResponse {
    error: String,
    #[serde(default)]
    error_description: Option<String>,
}

impl ErrorResponse {
    /// The broker's refusal of a revoked identity, rule or credential (`invalid_target`
    /// with its fixed description; a revoked subject token is `invalid_request`, which a
    /// new token from the platform cures).
    fn is_revocation(&self) -> bool {
        self.error == "invalid_target"
            && self.error_description.as_deref() == Some(tessera_adapters::oauth::error_description::REVOKED)
    }
}

/// The RFC 8693 request for `want` with `subject`.
fn token_form<'a>(
    subject: &'a Secret<String>,
    token_type: &'a str,
    want: &'a Want,
) -> Vec<(&'a str, &'a str)> {
    let mut form = vec![
        ("grant_type", grant_type::TOKEN_EXCHANGE),
        ("subject_token", subject.expose().as_str()),
        ("subject_token_type", token_type),
        ("audience", want.target.as_str()),
    ];
    if let Some(scope) = &want.scope {
        form.push(("scope", scope.as_str()));
    }
    form
}

/// Why a revocation watch ended without an answer.
#[derive(Debug, thiserror::Error)]
pub enum WatchError {
    #[error(transparent)]
    Subject(#[from] SubjectError),
    /// The broker has no watch endpoint (an older version): the periodic check stays.
    #[error("the broker offers no revocation watch")]
    Absent,
    #[error("the broker is unreachable: {0}")]
    Unreachable(String),
    #[error("the broker refused the watch: {error} (HTTP {status})")]
    Refused { status: u16, error: String },
    #[error("the broker answered something that is not a watch answer")]
    Malformed,
}

#[derive(Deserialize)]
struct WatchAnswer {
    revoked: bool,
}

impl BrokerClient {
    /// `{broker}/v1/revocations/watch`, beside the token endpoint.
    fn watch_url(&self) -> Result<Url, WatchError> {
        self.token_url.join("revocations/watch").map_err(|_| WatchError::Malformed)
    }

    /// Hold a revocation watch for `want`, whose credential has `fingerprint`, until the
    /// broker answers: `true` once it is revoked, `false` when the wait ended unchanged.
    pub async fn watch(&self, want: &Want, fingerprint: &str, now: i64) -> Result<bool, WatchError> {
        let subject = self.subject.fetch(&self.http, now).await?;
        let mut form = token_form(&subject, self.subject.token_type(), want);
        let wait = WATCH_WAIT.as_secs().to_string();
        form.push(("fingerprint", fingerprint));
        form.push(("wait", wait.as_str()));
        let url = self.watch_url()?;
        let resp = self
            .http
            .post(url.clone())
            .form(&form)
            .timeout(WATCH_WAIT + WATCH_SLACK)
            .send()
            .await
            .map_err(|e| WatchError::Unreachable(tessera_adapters::net::request_error(&url, &e)))?;
        match resp.status().as_u16() {
            200 => resp.json::<WatchAnswer>().await.map(|a| a.revoked).map_err(|_| WatchError::Malformed),
            404 => Err(WatchError::Absent),
            status => {
                let error = resp.json::<ErrorResponse>().await.map_or_else(|_| "-".into(), |e| e.error);
                Err(WatchError::Refused { status, error })
            }
        }
    }

    /// One RFC 8693 exchange of the current native credential for `want`.
    pub async fn exchange(&self, want: &Want, now: impl Fn() -> i64) -> Result<Issued, RefreshError> {
        let subject = self.subject.fetch(&self.http, now()).await?;
        let form = token_form(&subject, self.subject.token_type(), want);
        let resp = self.http.post(self.token_url.clone()).form(&form).send().await.map_err(|e| {
            RefreshError::Unreachable(tessera_adapters::net::request_error(&self.token_url, &e))
        })?;
        let status = resp.status().as_u16();
        if status != 200 {
            let answer = resp.json::<ErrorResponse>().await.ok();
            if status == 400 && answer.as_ref().is_some_and(ErrorResponse::is_revocation) {
                return Err(RefreshError::Revoked);
            }
            let error = answer.map(|e| e.error).unwrap_or_else(|| "-".into());
            return Err(if status == 429 || status >= 500 {
                RefreshError::Unavailable { status, error }
            } else {
                RefreshError::Refused { status, error }
            });
        }
        let body: TokenResponse = resp.json().await.map_err(|_| RefreshError::Malformed)?;
        if body.access_token.is_empty() || body.expires_in <= 0 {
            return Err(RefreshError::Malformed);
        }
        let issued_at = now();
        Ok(Issued {
            access_token: Secret::new(body.access_token),
            token_type: body.token_type,
            issued_at,
            expires_at: issued_at + body.expires_in,
            aws: body.aws_credentials,
            postgres: body.postgres_credentials,
        })
    }
}

/// Keep `slot` fresh until the task is aborted. Between refreshes, every
/// `refresh.revocation_check` it exchanges again (the broker answers from its credential
/// cache) to learn of a revocation: on the revocation error the held credential is dropped
/// and its files removed, and exchanges go on with backoff until one succeeds (the
/// revocation lifted).
pub async fn refresh_loop(store: Arc<Store>, slot: Arc<Slot>, client: BrokerClient) {
    let clock = Arc::clone(&store.clock);
    let check = store.refresh.revocation_check;
    loop {
        let outcome = client.exchange(&slot.want, || clock.now()).await;
        let wait = match outcome {
            Ok(issued) => {
                let issued = Arc::new(issued);
                let unchanged = lock(&slot.state)
                    .current
                    .as_ref()
                    .is_some_and(|held| held.access_token.expose() == issued.access_token.expose());
                // The broker's cache answered a check with the credential held: no need to
                // write the files again.
                let file_error = if unchanged {
                    lock(&slot.state).file_error.clone()
                } else {
                    write_files(&slot.files, &issued).await.err()
                };
                if let Some(e) = file_error.as_ref().filter(|_| !unchanged) {
                    tracing::error!(target_name = %slot.want.target, error = %e, "token file not written");
                }
                let refresh_at = store.refresh_at(&issued);
                if !unchanged {
                    slot.held.send_replace(Some(issued.access_token.fingerprint()));
                }
                let was_revoked = {
                    let mut s = lock(&slot.state);
                    s.current = Some(Arc::clone(&issued));
                    s.last_error = None;
                    s.failures = 0;
                    s.refreshes += 1;
                    s.last_refresh_at = Some(issued.issued_at);
                    s.file_error = file_error;
                    std::mem::replace(&mut s.revoked, false)
                };
                if was_revoked {
                    tracing::warn!(target_name = %slot.want.target, "the broker issues again: the revocation was lifted");
                }
                if !unchanged {
                    tracing::info!(
                        target_name = %slot.want.target,
                        expires_at = %format_rfc3339(issued.expires_at),
                        refresh_at = %format_rfc3339(refresh_at),
                        "credential refreshed"
                    );
                }
                let next =
                    if check.is_zero() { refresh_at } else { refresh_at.min(clock.now() + secs(check)) };
                tokio::select! {
                    () = wait_until(&*clock, next, store.refresh.min_backoff) => {}
                    () = slot.recheck.notified() => {}
                }
                continue;
            }
            Err(RefreshError::Revoked) => {
                let (failures, dropped) = {
                    let mut s = lock(&slot.state);
                    s.failures = s.failures.saturating_add(1);
                    s.last_error = Some((RefreshError::Revoked.code(), RefreshError::Revoked.to_string()));
                    s.revoked = true;
                    (s.failures, s.current.take().is_some())
                };
                if dropped {
                    slot.held.send_replace(None);
                    let removed = remove_files(&slot.files).await;
                    lock(&slot.state).file_error = removed.err();
                    tracing::error!(
                        target_name = %slot.want.target,
                        code = RefreshError::Revoked.code(),
                        "the broker revoked this workload's credentials: the held credential is no longer served and its files are removed"
                    );
                }
                backoff(&store.refresh, failures)
            }
            Err(e) => {
                let failures = {
                    let mut s = lock(&slot.state);
                    s.failures = s.failures.saturating_add(1);
                    s.last_error = Some((e.code(), e.to_string()));
                    s.failures
                };
                tracing::warn!(target_name = %slot.want.target, code = e.code(), error = %e, failures, "credential refresh failed");
                backoff(&store.refresh, failures)
            }
        };
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            () = slot.recheck.notified() => {}
        }
    }
}

/// Hold a revocation watch open at the broker for `slot`'s credential while one is served,
/// and when the broker answers that it is revoked, wake [`refresh_loop`] to exchange now:
/// the broker's refusal there drops the credential and removes its files, as a periodic
/// check would. A new credential restarts the watch with its fingerprint. Errors are
/// retried with backoff; a broker without the endpoint is asked again only every
/// [`WATCH_ABSENT_RETRY`], the periodic check covering meanwhile (logged once per slot).
pub async fn watch_loop(store: Arc<Store>, slot: Arc<Slot>, client: BrokerClient) {
    let mut held = slot.held.subscribe();
    let mut failures: u32 = 0;
    let mut absent_logged = false;
    loop {
        let fingerprint = held.borrow_and_update().clone();
        let Some(fingerprint) = fingerprint else {
            if held.changed().await.is_err() {
                return;
            }
            continue;
        };
        let outcome = tokio::select! {
            outcome = client.watch(&slot.want, &fingerprint, store.now()) => outcome,
            // Another credential, or none: watch what is served now.
            changed = held.changed() => {
                if changed.is_err() {
                    return;
                }
                continue;
            }
        };
        let pause = match outcome {
            Ok(true) => {
                failures = 0;
                tracing::warn!(target_name = %slot.want.target, "the broker reports this credential revoked; checking now");
                slot.recheck.notify_one();
                // The refresh task drops the credential (the watch then waits for a new
                // one); if the exchange was still allowed (a replica that had not read the
                // revocation yet), ask again after a pause.
                store.refresh.min_backoff
            }
            Ok(false) => {
                failures = 0;
                Duration::ZERO
            }
            Err(WatchError::Absent) => {
                if !absent_logged {
                    absent_logged = true;
                    tracing::info!(
                        target_name = %slot.want.target,
                        "the broker offers no revocation watch; revocations are learned of at the periodic check"
                    );
                }
                WATCH_ABSENT_RETRY
            }
            Err(e) => {
                failures = failures.saturating_add(1);
                if failures == 1 {
                    tracing::info!(target_name = %slot.want.target, error = %e, "revocation watch failed; retrying with backoff");
                } else {
                    tracing::debug!(target_name = %slot.want.target, error = %e, failures, "revocation watch failed");
                }
                backoff(&store.refresh, failures)
            }
        };
        if !pause.is_zero() {
            tokio::select! {
                () = tokio::time::sleep(pause) => {}
                changed = held.changed() => {
                    if changed.is_err() {
                        return;
                    }
                }
            }
        }
    }
}

/// Remove the files a revoked credential was written to; a file already gone is fine.
async fn remove_files(files: &[OutFile]) -> Result<(), String> {
    for file in files {
        match tokio::fs::remove_file(file.path()).await {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(format!("{}: {e}", file.path().display())),
        }
    }
    Ok(())
}

/// Sleep until the clock reads `at`, looking at it every [`CLOCK_CHECK`]; at least `floor`
/// so a credential that is due at once does not spin.
pub(crate) async fn wait_until(clock: &dyn Clock, at: i64, floor: Duration) {
    tokio::time::sleep(floor).await;
    loop {
        let left = at - clock.now();
        if left <= 0 {
            return;
        }
        let left = Duration::from_secs(u64::try_from(left).unwrap_or(0));
        tokio::time::sleep(left.min(CLOCK_CHECK)).await;
    }
}

/// Exponential backoff with jitter: `min * 2^(failures-1)`, capped at `max`, then a random
/// point in its upper half, so many agents that failed together do not retry together.
pub(crate) fn backoff(refresh: &RefreshConfig, failures: u32) -> Duration {
    let exp = failures.saturating_sub(1).min(20);
    let base = refresh.min_backoff.saturating_mul(1u32 << exp).min(refresh.max_backoff);
    let jitter = random_fraction();
    base.mul_f64(0.5 + 0.5 * jitter)
}

fn random_fraction() -> f64 {
    let mut bytes = [0u8; 4];
    if aws_lc_rs::rand::fill(&mut bytes).is_err() {
        return 1.0;
    }
    f64::from(u32::from_le_bytes(bytes)) / f64::from(u32::MAX)
}

/// Write what each file holds of `issued`: a temporary file in the same directory, mode
/// 0600, synced, then renamed over the old one, so readers see the old credential or the
/// new one, never half.
async fn write_files(files: &[OutFile], issued: &Issued) -> Result<(), String> {
    for file in files {
        let path = file.path();
        let contents = file.contents(issued).map_err(|e| format!("{}: {e}", path.display()))?;
        write_atomically(path, contents.expose().as_bytes())
            .await
            .map_err(|e| format!("{}: {e}", path.display()))?;
    }
    Ok(())
}

pub async fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or_else(|| Path::new("."));
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let tmp = dir.join(format!(".{name}.{}.tmp", uuid::Uuid::new_v4().simple()));
    let mut options = tokio::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    options.mode(0o600);
    let result = async {
        let mut file = options.open(&tmp).await?;
        file.write_all(bytes).await?;
        file.sync_all().await?;
        drop(file);
        tokio::fs::rename(&tmp, path).await
    }
    .await;
    if result.is_err() {
        let _ = tokio::fs::remove_file(&tmp).await;
    }
    result
}

#[cfg(test)]
mod tests {
    use tessera_adapters::ManualClock;

    use super::*;

    fn store(clock: Arc<ManualClock>) -> Store {
        let want = Want { target: "api".into(), scope: None };
        Store::new(vec![(want, None)], clock, RefreshConfig::default())
    }

    fn issued(at: i64, lifetime: i64) -> Issued {
        Issued {
            access_token: Secret::new("t".into()),
            token_type: "Bearer".into(),
            issued_at: at,
            expires_at: at + lifetime,
            aws: None,
            postgres: None,
        }
    }

    #[test]
    fn refresh_is_due_halfway_and_serving_stops_at_the_margin() {
        let clock = Arc::new(ManualClock::new(1_000));
        let store = store(Arc::clone(&clock));
        let c = issued(1_000, 600);
        assert_eq!(store.refresh_at(&c), 1_300);
        assert!(store.servable(&c, 1_569));
        assert!(!store.servable(&c, 1_570), "30s margin");
        // A credential shorter than twice the margin is renewed at the margin.
        let short = issued(1_000, 40);
        assert_eq!(store.refresh_at(&short), 1_010);
    }

    #[test]
    fn health_reports_pending_then_fresh_stale_and_failing() {
        let clock = Arc::new(ManualClock::new(1_000));
        let store = store(Arc::clone(&clock));
        let want = Want { target: "api".into(), scope: None };
        let (ok, body) = store.health();
        assert!(!ok);
        assert_eq!(body["credentials"][0]["state"], "pending");
        assert_eq!(store.get(&want).unwrap_err(), Unavailable::NotReady(None));
        let slot = Arc::clone(store.slots().next().unwrap());
        lock(&slot.state).current = Some(Arc::new(issued(1_000, 600)));
        let (ok, body) = store.health();
        assert!(ok);
        assert_eq!(
            (body["status"].as_str(), body["credentials"][0]["state"].as_str()),
            (Some("ok"), Some("fresh"))
        );
        clock.set(1_400);
        lock(&slot.state).last_error = Some(("TS-AGENT-BROKER-UNREACHABLE", "down".into()));
        let (ok, body) = store.health();
        assert!(ok, "still servable");
        assert_eq!(body["status"], "degraded");
        assert_eq!(body["credentials"][0]["state"], "stale");
        assert_eq!(body["credentials"][0]["last_error"]["code"], "TS-AGENT-BROKER-UNREACHABLE");
        clock.set(1_570);
        let (ok, body) = store.health();
        assert!(!ok);
        assert_eq!(body["credentials"][0]["state"], "failing");
        assert_eq!(store.get(&want).unwrap_err(), Unavailable::NotReady(Some("TS-AGENT-BROKER-UNREACHABLE")));
        assert!(!body.to_string().contains("\"t\""), "no token in health");
    }

    /// libpq's password file: `:` and `\` in a field are escaped with `\`; a part the
    /// login does not name matches any (`*`).
    #[test]
    fn a_password_file_line_escapes_colons_and_backslashes() {
        let login = PostgresCredentials {
            username: "tessera_api_0123456789_abcdef".into(),
            password: Secret::new("pa:ss\\word".into()),
            expires_at: "2026-01-01T00:00:00Z".into(),
            host: Some("fe80::1".into()),
            port: Some(5432),
            database: None,
        };
        assert_eq!(
            passfile_line(&login).expose(),
            "fe80\\:\\:1:5432:*:tessera_api_0123456789_abcdef:pa\\:ss\\\\word\n"
        );
    }

    #[test]
    fn only_the_revocation_error_counts_as_a_revocation() {
        let answer = |body: Value| serde_json::from_value::<ErrorResponse>(body).unwrap().is_revocation();
        let revoked = tessera_adapters::oauth::error_description::REVOKED;
        assert!(answer(json!({ "error": "invalid_target", "error_description": revoked })));
        assert!(!answer(json!({ "error": "invalid_target" })), "another refusal: no rule allows it");
        assert!(!answer(json!({ "error": "invalid_target", "error_description": "No rule allows this." })));
        assert!(!answer(json!({ "error": "invalid_request", "error_description": revoked })), "wrong error");
    }

    #[test]
    fn a_revoked_slot_serves_nothing_and_says_so() {
        let clock = Arc::new(ManualClock::new(1_000));
        let store = store(Arc::clone(&clock));
        let want = Want { target: "api".into(), scope: None };
        let slot = Arc::clone(store.slots().next().unwrap());
        lock(&slot.state).current = Some(Arc::new(issued(1_000, 600)));
        assert!(store.get(&want).is_ok());
        {
            let mut s = lock(&slot.state);
            s.revoked = true;
            s.last_error = Some((RefreshError::Revoked.code(), RefreshError::Revoked.to_string()));
        }
        assert_eq!(store.get(&want).unwrap_err(), Unavailable::Revoked, "even while a credential is held");
        let (ok, body) = store.health();
        assert!(!ok);
        assert_eq!(body["credentials"][0]["state"], "revoked");
        assert_eq!(body["credentials"][0]["last_error"]["code"], "TS-AGENT-REVOKED");
    }

    #[test]
    fn backoff_doubles_with_jitter_up_to_the_cap() {
        let r = RefreshConfig::default();
        for failures in 1..=10u32 {
            let d = backoff(&r, failures);
            let base = Duration::from_secs(1u64 << (failures - 1)).min(Duration::from_secs(60));
            assert!(d >= base / 2 && d <= base, "{failures}: {d:?} vs {base:?}");
        }
    }

    /// A broker's answers to a watch, told apart: revoked or not, no endpoint (an older
    /// broker: `404`), a refusal; the watch URL keeps the broker's base path and the form
    /// carries the token request, the fingerprint and the wait.
    #[tokio::test]
    async fn watch_answers_are_told_apart() {
        use actix_web::{App, HttpResponse, HttpServer, web};

        async fn answer(path: web::Path<String>, form: web::Form<Vec<(String, String)>>) -> HttpResponse {
            let has = |k: &str, v: &str| form.0.iter().any(|(name, value)| name == k && value == v);
            assert!(
                has("fingerprint", "sha256:f") && has("wait", "25") && has("audience", "api"),
                "{:?}",
                form.0
            );
            assert!(has("subject_token", "native-token"));
            match path.as_str() {
                "revoked" => HttpResponse::Ok().json(json!({ "revoked": true, "code": "TS-REVOKED" })),
                "quiet" => HttpResponse::Ok().json(json!({ "revoked": false })),
                _ => HttpResponse::ServiceUnavailable().json(json!({ "error": "temporarily_unavailable" })),
            }
        }
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let server =
            HttpServer::new(|| App::new().route("/{base}/v1/revocations/watch", web::post().to(answer)))
                .workers(1)
                .disable_signals()
                .listen(listener)
                .unwrap()
                .run();
        let handle = server.handle();
        tokio::spawn(server);
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("token"), "native-token\n").unwrap();
        let client = |base: &str| BrokerClient {
            http: reqwest::Client::new(),
            token_url: Url::parse(&format!("http://{addr}/{base}/v1/token")).unwrap(),
            subject: Arc::new(Subject::File(dir.path().join("token"))),
        };
        let want = Want { target: "api".into(), scope: None };
        assert!(client("revoked").watch(&want, "sha256:f", 0).await.unwrap());
        assert!(!client("quiet").watch(&want, "sha256:f", 0).await.unwrap());
        assert!(matches!(
            client("busy").watch(&want, "sha256:f", 0).await,
            Err(WatchError::Refused { status: 503, .. })
        ));
        let old = BrokerClient {
            token_url: Url::parse(&format!("http://{addr}/v1/token")).unwrap(),
            ..client("x")
        };
        assert!(matches!(old.watch(&want, "sha256:f", 0).await, Err(WatchError::Absent)), "no such endpoint");
        handle.stop(false).await;
    }

    #[tokio::test]
    async fn token_files_are_replaced_whole_with_mode_0600() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        write_atomically(&path, b"one").await.unwrap();
        write_atomically(&path, b"two").await.unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "two");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        }
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1, "no temporary file left");
    }
}
