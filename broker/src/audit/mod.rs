//! Audit events: one per exchange, allowed or denied, written before any credential is
//! returned. Tokens never appear here: a SHA-256 fingerprint stands in for each.
//!
//! Each event goes to the SQL [`store`] first, then to the JSON-lines sink (`stdout`,
//! `file`, or `none`) with the exchange's final outcome: when the store refuses an event
//! and the exchange fails closed, the line says so. The exchange waits for both. Both are
//! written in batches: the store's writer commits the events of all exchanges waiting at
//! once and appends their lines in one write ([`Recorder`]).

pub mod store;

use std::borrow::Cow;
use std::fmt::Debug;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use serde::Serialize;
use serde_json::value::RawValue;
use tessera_adapters::Identity;

use crate::config::{AuditConfig, AuditSinkKind};

/// The outcome recorded for an exchange.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Decision {
    /// A credential was issued.
    Allow,
    /// The request was refused: bad token, no rule, a deny rule, bad scope.
    Deny,
    /// Tessera or an upstream failed; the caller may retry.
    Error,
}

impl Decision {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Allow => "allow",
            Self::Deny => "deny",
            Self::Error => "error",
        }
    }

    /// The decision [`Decision::as_str`] names.
    pub fn parse(name: &str) -> Option<Self> {
        [Self::Allow, Self::Deny, Self::Error].into_iter().find(|d| d.as_str() == name)
    }
}

/// One exchange, as the audit log records it. The JSON line is this event serialized; the
/// store keeps it as a row of `tessera_audit_events`, each field in its column (the
/// [`store`]'s column table), and `GET /v1/audit` serializes the rows it reads back.
/// Owned, so that it can wait in the store writer's queue.
#[derive(Debug, Clone, Serialize)]
pub struct AuditEvent {
    /// The store's id, given when the store writes the event: never in the JSON line,
    /// always in `GET /v1/audit`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub event_id: Option<String>,
    /// The same instant as `time` in milliseconds, for the store's ordering.
    #[serde(skip)]
    pub time_ms: i64,
    /// RFC 3339 UTC.
    pub time: String,
    pub request_id: String,
    pub decision: Decision,
    /// Greppable reason code (`TS-SRC-EXPIRED`, `TS-MAP-DENIED`, `TS-OK`).
    pub reason: String,
    /// The detailed reason, for operators; never shown to the caller, never a token.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// The verified identity's id, a column of its own for the store's queries; the JSON
    /// has it inside `identity`.
    #[serde(skip)]
    pub identity_id: Option<String>,
    /// The verified identity, when verification got that far.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub identity: Option<IdentityJson>,
    /// The verified actor's id (RFC 8693 `actor_token`), a column of its own like
    /// `identity_id`; the JSON has it inside `actor`.
    #[serde(skip)]
    pub actor_id: Option<String>,
    /// The verified actor of a delegated exchange, when verification got that far.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub actor: Option<IdentityJson>,
    pub target: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rule: Option<String>,
    /// For targets whose credentials are cached: `hit` (no upstream call) or `miss` (this
    /// exchange made the one upstream call).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cache: Option<String>,
    /// Lifetime of the issued credential in seconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub issued_ttl: Option<i64>,
    pub subject_token_fingerprint: String,
    /// The actor token's fingerprint, when the request had one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub actor_token_fingerprint: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub issued_token_fingerprint: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_addr: Option<String>,
    /// Milliseconds, to a tenth ([`milliseconds`]).
    pub latency_ms: f64,
}

/// A verified identity as JSON text, serialized once when its event is made; the JSON
/// line embeds it and the store writes it as it is.
#[derive(Debug, Clone, Serialize)]
#[serde(transparent)]
pub struct IdentityJson(Box<RawValue>);

impl IdentityJson {
    pub fn new(identity: &Identity) -> Result<Self, serde_json::Error> {
        serde_json::value::to_raw_value(identity).map(Self)
    }

    /// An identity as the store returns it, `None` if the text is not JSON. Its keys
    /// come out sorted, as `GET /v1/audit` has always shown them.
    pub fn from_stored(text: &str) -> Option<Self> {
        let value: serde_json::Value = serde_json::from_str(text).ok()?;
        serde_json::value::to_raw_value(&value).ok().map(Self)
    }

    pub fn as_str(&self) -> &str {
        self.0.get()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error("audit sink write failed: {0}")]
    Write(#[from] std::io::Error),
    #[error("audit event could not be encoded: {0}")]
    Encode(#[from] serde_json::Error),
    #[error("audit store write failed: {0}")]
    Store(String),
    #[error(transparent)]
    Open(#[from] store::StoreError),
}

/// Where audit events go.
#[async_trait]
pub trait AuditSink: Send + Sync + Debug {
    /// Say that an exchange has started whose event will follow, so that a store's
    /// writer can wait for it to share a commit (see [`store`]); handed to `record`.
    fn expect(&self) -> store::Expected {
        store::Expected::default()
    }

    /// Returns once the event is written; an error means it was not.
    async fn record(&self, event: AuditEvent, expected: store::Expected) -> Result<(), AuditError>;
}

/// A JSON-lines destination: whole lines, appended in one write each call so that lines
/// of concurrent writers never interleave. The write is a short synchronous append (to the
/// page cache, or a pipe): cheaper than a hand-off to a blocking thread pool and back.
pub trait LineSink: Send + Sync + Debug {
    fn append(&self, lines: &[u8]) -> std::io::Result<()>;
}

/// JSON lines on standard output (logs go to standard error).
#[derive(Debug, Default)]
pub struct StdoutSink;

impl LineSink for StdoutSink {
    fn append(&self, lines: &[u8]) -> std::io::Result<()> {
        let mut out = std::io::stdout().lock();
        out.write_all(lines)?;
        out.flush()
    }
}

/// JSON lines appended to a file.
#[derive(Debug)]
pub struct FileSink {
    path: PathBuf,
    file: std::sync::Mutex<std::fs::File>,
}

impl FileSink {
    pub fn open(path: &Path) -> Result<Self, AuditError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)?;
        }
        let mut options = std::fs::OpenOptions::new();
        options.create(true).append(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let file = options.open(path)?;
        Ok(Self { path: path.to_path_buf(), file: std::sync::Mutex::new(file) })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl LineSink for FileSink {
    fn append(&self, lines: &[u8]) -> std::io::Result<()> {
        // A poisoned lock only means another writer panicked mid-call; the file is intact.
        let mut file = self.file.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        file.write_all(lines)
    }
}

/// `event` as its JSON line, newline included.
pub fn json_line(event: &AuditEvent) -> Result<Vec<u8>, serde_json::Error> {
    let mut line = serde_json::to_vec(event)?;
    line.push(b'\n');
    Ok(line)
}

/// The JSON lines of an exchange: the sink, and what a line says when the store refused
/// the event of an allowed exchange that then fails closed.
#[derive(Debug, Clone)]
pub struct Lines {
    sink: Arc<dyn LineSink>,
    fail_open: bool,
}

impl Lines {
    pub fn new(sink: Arc<dyn LineSink>, fail_open: bool) -> Self {
        Self { sink, fail_open }
    }

    /// The line for `event` (already rendered as `line`) once the store answered `stored`:
    /// the line itself, or, when no credential leaves because the store refused the event,
    /// a line recording that failure instead of the grant.
    pub(crate) fn final_line<'a>(
        &self,
        event: &AuditEvent,
        line: &'a [u8],
        stored: &Result<(), String>,
    ) -> Cow<'a, [u8]> {
        match stored {
            Err(e) if !self.fail_open && event.decision == Decision::Allow => {
                let failed = AuditEvent {
                    decision: Decision::Error,
                    reason: "TS-AUD-WRITE".to_string(),
                    detail: Some(e.clone()),
                    issued_ttl: None,
                    issued_token_fingerprint: None,
                    ..event.clone()
                };
                // The event serialized once already; its failure line cannot fail to.
                json_line(&failed).map_or(Cow::Borrowed(line), Cow::Owned)
            }
            _ => Cow::Borrowed(line),
        }
    }

    /// Append `lines` in one write; the error in words, for every exchange of the batch.
    pub(crate) fn append(&self, lines: &[u8]) -> Result<(), LineError> {
        self.sink.append(lines).map_err(|e| LineError { kind: e.kind(), message: e.to_string() })
    }
}

/// A failed JSON-lines write, shared by the exchanges of one batch.
#[derive(Debug, Clone)]
pub struct LineError {
    kind: std::io::ErrorKind,
    message: String,
}

impl From<LineError> for AuditError {
    fn from(e: LineError) -> Self {
        Self::Write(std::io::Error::new(e.kind, e.message))
    }
}

/// What became of one event: whether the store committed it, and whether its JSON line
/// was written (`Ok` when there is no JSON-lines sink).
#[derive(Debug, Clone)]
pub struct Recorded {
    pub stored: Result<(), String>,
    pub line: Result<(), LineError>,
}

/// The store, then the JSON-lines sink, in one batch: the store's writer commits the
/// events of every exchange waiting, then appends their lines in one write, each saying
/// how its exchange ends (see [`Lines::final_line`]), and only then answers them. Without
/// a store, each exchange appends its own line.
#[derive(Debug)]
pub struct Recorder {
    store: Option<store::AuditStore>,
    lines: Option<Lines>,
}

#[async_trait]
impl AuditSink for Recorder {
    fn expect(&self) -> store::Expected {
        self.store.as_ref().map(store::AuditStore::expect).unwrap_or_default()
    }

    async fn record(&self, event: AuditEvent, expected: store::Expected) -> Result<(), AuditError> {
        let line = self.lines.as_ref().map(|_| json_line(&event)).transpose()?;
        match (&self.store, &self.lines, line) {
            (Some(store), _, line) => {
                let recorded = store.record(event, line, expected).await;
                recorded.line?;
                recorded.stored.map_err(AuditError::Store)
            }
            (None, Some(lines), Some(line)) => Ok(lines.append(&line)?),
            (None, _, _) => Ok(()),
        }
    }
}

/// The JSON-lines sink `broker.yaml` asks for, if any; relative paths resolve against
/// `base_dir`.
pub fn open_sink(config: &AuditConfig, base_dir: &Path) -> Result<Option<Arc<dyn LineSink>>, AuditError> {
    match (config.sink, &config.path) {
        (AuditSinkKind::None, _) => Ok(None),
        (AuditSinkKind::Stdout, _) => Ok(Some(Arc::new(StdoutSink))),
        (AuditSinkKind::File, Some(path)) => {
            let path = if path.is_absolute() { path.clone() } else { base_dir.join(path) };
            Ok(Some(Arc::new(FileSink::open(&path)?)))
        }
        (AuditSinkKind::File, None) => Err(AuditError::Write(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "audit.path is required for sink: file",
        ))),
    }
}

/// Open the sink and the store `config` asks for: the recorder exchanges record to, and
/// the store for the directory and `GET /v1/audit` to read (`None` if disabled).
pub async fn open(
    config: &crate::config::LoadedConfig,
    metrics: Arc<crate::metrics::Metrics>,
) -> Result<(Arc<dyn AuditSink>, Option<store::AuditStore>), AuditError> {
    let audit = config.config.audit();
    let lines = open_sink(&audit, &config.base_dir)?.map(|sink| Lines::new(sink, audit.fail_open));
    let store = if audit.store.enabled {
        let url = store::store_url(config);
        let store =
            store::AuditStore::open_with_lines(&audit.store, &url, metrics, true, lines.clone()).await?;
        tracing::info!(store = store.location(), "audit store open");
        Some(store)
    } else {
        None
    };
    Ok((Arc::new(Recorder { store: store.clone(), lines }), store))
}

/// A duration in milliseconds rounded to a tenth, as latencies are logged and recorded:
/// finer digits are noise of the clock and the scheduler.
pub fn milliseconds(d: std::time::Duration) -> f64 {
    (d.as_secs_f64() * 10_000.0).round() / 10.0
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// An allowed exchange with every field set.
    pub(crate) fn allowed_event() -> AuditEvent {
        let identity = Identity {
            id: "oidc://corp/svc-payments".into(),
            provider: "oidc".into(),
            source: "corp".into(),
            issuer: "https://idp.example".into(),
            subject: "svc-payments".into(),
            tenant: Some("acme".into()),
            namespace: Some("payments".into()),
            name: Some("api".into()),
            instance: Some("api-7d".into()),
            region: Some("eu-west-1".into()),
            attributes: [
                ("oidc.team".to_string(), "pay".to_string()),
                ("k8s.pod".to_string(), "api-7d".to_string()),
            ]
            .into(),
            withheld: Default::default(),
            expires_at: 1_795_424_400,
        };
        AuditEvent {
            event_id: None,
            time: "2026-11-23T08:00:01Z".into(),
            time_ms: 1_795_420_801_000,
            request_id: "r2".into(),
            decision: Decision::Allow,
            reason: "TS-OK".into(),
            detail: None,
            source: Some("corp".into()),
            identity_id: Some(identity.id.clone()),
            identity: Some(IdentityJson::new(&identity).unwrap()),
            actor_id: None,
            actor: None,
            target: "aws-prod".into(),
            scope: Some("arn:aws:iam::123456789012:role/reader".into()),
            rule: Some("payments-read".into()),
            cache: Some("miss".into()),
            issued_ttl: Some(900),
            subject_token_fingerprint: "sha256:01".into(),
            actor_token_fingerprint: None,
            issued_token_fingerprint: Some("sha256:02".into()),
            client_addr: Some("10.0.0.7".into()),
            latency_ms: 2.25,
        }
    }

    /// A refused exchange with every optional field empty.
    pub(crate) fn bare_event() -> AuditEvent {
        AuditEvent {
            event_id: None,
            time: "2026-11-23T08:00:00Z".into(),
            time_ms: 1_795_420_800_000,
            request_id: "r1".into(),
            decision: Decision::Deny,
            reason: "TS-SRC-MALFORMED".into(),
            detail: None,
            source: None,
            identity_id: None,
            identity: None,
            actor_id: None,
            actor: None,
            target: "api".into(),
            scope: None,
            rule: None,
            cache: None,
            issued_ttl: None,
            subject_token_fingerprint: "sha256:00".into(),
            actor_token_fingerprint: None,
            issued_token_fingerprint: None,
            client_addr: None,
            latency_ms: 0.5,
        }
    }

    /// A refused exchange, with its detail.
    pub(crate) fn event() -> AuditEvent {
        AuditEvent {
            reason: "TS-SRC-EXPIRED".into(),
            detail: Some("token has expired".into()),
            source: Some("corp".into()),
            client_addr: Some("127.0.0.1".into()),
            latency_ms: 1.5,
            ..bare_event()
        }
    }

    /// The JSON-lines format is what log pipelines parse: field names, their order and
    /// which fields are left out when empty stay as they are.
    #[test]
    fn latencies_are_milliseconds_to_a_tenth() {
        use std::time::Duration;
        assert_eq!(milliseconds(Duration::from_micros(1_234)), 1.2);
        assert_eq!(milliseconds(Duration::from_nanos(40_123)), 0.0);
        assert_eq!(milliseconds(Duration::from_millis(2_500)), 2500.0);
    }

    #[test]
    fn a_json_line_names_its_fields_in_a_fixed_order_and_leaves_out_empty_ones() {
        let line = |event: &AuditEvent| serde_json::to_string(event).unwrap();
        assert_eq!(
            line(&allowed_event()),
            concat!(
                r#"{"time":"2026-11-23T08:00:01Z","request_id":"r2","decision":"allow","#,
                r#""reason":"TS-OK","source":"corp","identity":{"id":"oidc://corp/svc-payments","#,
                r#""provider":"oidc","source":"corp","issuer":"https://idp.example","#,
                r#""subject":"svc-payments","tenant":"acme","namespace":"payments","name":"api","#,
                r#""instance":"api-7d","region":"eu-west-1","attributes":{"k8s.pod":"api-7d","#,
                r#""oidc.team":"pay"},"expires_at":1795424400},"target":"aws-prod","#,
                r#""scope":"arn:aws:iam::123456789012:role/reader","rule":"payments-read","#,
                r#""cache":"miss","issued_ttl":900,"subject_token_fingerprint":"sha256:01","#,
                r#""issued_token_fingerprint":"sha256:02","client_addr":"10.0.0.7","latency_ms":2.25}"#,
            )
        );
        assert_eq!(
            line(&event()),
            concat!(
                r#"{"time":"2026-11-23T08:00:00Z","request_id":"r1","decision":"deny","#,
                r#""reason":"TS-SRC-EXPIRED","detail":"token has expired","source":"corp","#,
                r#""target":"api","subject_token_fingerprint":"sha256:00","client_addr":"127.0.0.1","#,
                r#""latency_ms":1.5}"#,
            )
        );
        assert_eq!(
            line(&bare_event()),
            concat!(
                r#"{"time":"2026-11-23T08:00:00Z","request_id":"r1","decision":"deny","#,
                r#""reason":"TS-SRC-MALFORMED","target":"api","subject_token_fingerprint":"sha256:00","#,
                r#""latency_ms":0.5}"#,
            )
        );
    }

    #[test]
    fn file_sink_appends_one_json_line_per_event_with_private_mode() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit/events.jsonl");
        let sink = FileSink::open(&path).unwrap();
        sink.append(&json_line(&event()).unwrap()).unwrap();
        sink.append(&json_line(&event()).unwrap()).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<serde_json::Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0]["decision"], "deny");
        assert_eq!(lines[0]["reason"], "TS-SRC-EXPIRED");
        assert!(lines[0].get("identity").is_none());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600);
        }
    }
}
