//! `tessera revoke`: add, list and remove revocations through a running broker's admin API
//! (`/v1/revocations`), so the broker records the author its admin authentication finds.

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::Context as _;
use clap::{Args, Subcommand};
use serde_json::{Value, json};

use crate::mappings::Format;

#[derive(Debug, Args)]
pub struct RevokeArgs {
    /// The broker's admin listener, e.g. `http://127.0.0.1:8081`.
    #[arg(long, env = "TESSERA_ADMIN_URL")]
    admin_url: String,
    /// A file holding an admin bearer token (`admin.auth.jwt`).
    #[arg(long, env = "TESSERA_ADMIN_TOKEN_FILE")]
    token_file: Option<PathBuf>,
    /// A PEM file with the client certificate and its key (`admin.auth.tls`).
    #[arg(long, env = "TESSERA_ADMIN_CLIENT_CERT")]
    client_cert: Option<PathBuf>,
    /// A PEM file of CA certificates to trust for the admin listener's HTTPS.
    #[arg(long, env = "TESSERA_ADMIN_CA_FILE")]
    ca_file: Option<PathBuf>,
    #[command(subcommand)]
    command: RevokeCommand,
}

#[derive(Debug, Subcommand)]
enum RevokeCommand {
    /// Revoke: exactly one of `--identity`, `--identity-glob`, `--source` (with
    /// `--attribute`), `--rule`, `--jti`, `--issued-token`; and a reason.
    #[command(
        after_help = "Example:\n  tessera revoke --admin-url http://127.0.0.1:8081 add --identity-glob 'github://octo-org/payments*' --reason 'repository compromised'"
    )]
    Add(AddArgs),
    /// List revocations not removed (with `--removed`, every one ever made).
    #[command(after_help = "Example:\n  tessera revoke --admin-url http://127.0.0.1:8081 list --format json")]
    List {
        /// Also list revocations that were removed.
        #[arg(long)]
        removed: bool,
        /// `text` for people, `json` for tools.
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
    },
    /// What a revocation names that is still valid (from the audit store), and per target
    /// what can take it back: AWS deny policies ready to attach, logins dropped, guidance.
    #[command(
        after_help = "Example:\n  tessera revoke --admin-url http://127.0.0.1:8081 issued 0193a1b2-... --format json"
    )]
    Issued {
        /// The revocation's id, as `tessera revoke list` shows it.
        id: String,
        /// `text` for people, `json` for tools.
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
    },
    /// Remove a revocation by its id; it stays on record as removed.
    #[command(after_help = "Example:\n  tessera revoke --admin-url http://127.0.0.1:8081 remove <id>")]
    Remove {
        /// The revocation's id, as `tessera revoke list` shows it.
        id: String,
    },
}

#[derive(Debug, Args)]
#[group(skip)]
struct AddArgs {
    /// One identity, by its exact id.
    #[arg(long, group = "what")]
    identity: Option<String>,
    /// Identities whose id matches a glob (`*`, `?`).
    #[arg(long, group = "what")]
    identity_glob: Option<String>,
    /// Every identity of a source (its issuer is compromised); with `--attribute`, only
    /// those with these attribute values.
    #[arg(long, group = "what")]
    source: Option<String>,
    /// With `--source`: an attribute value the identities have (`name=value`, repeatable).
    #[arg(long, requires = "source")]
    attribute: Vec<String>,
    /// Every grant of a mapping rule.
    #[arg(long, group = "what")]
    rule: Option<String>,
    /// The subject token with this `jti`.
    #[arg(long, group = "what")]
    jti: Option<String>,
    /// The issued token with this fingerprint (`sha256:<hex>`, as audit events show).
    #[arg(long, group = "what")]
    issued_token: Option<String>,
    /// Why (kept with the revocation).
    #[arg(long)]
    reason: String,
    /// When it lapses (RFC 3339); default: until removed.
    #[arg(long)]
    expires_at: Option<String>,
}

impl AddArgs {
    /// The `match` object of `POST /v1/revocations`.
    fn matcher(&self) -> anyhow::Result<Value> {
        if !self.attribute.is_empty() {
            let mut attributes = BTreeMap::new();
            for pair in &self.attribute {
                let (name, value) =
                    pair.split_once('=').with_context(|| format!("--attribute `{pair}`: want name=value"))?;
                attributes.insert(name, value);
            }
            return Ok(json!({ "kind": "attributes", "source": self.source, "attributes": attributes }));
        }
        let (kind, field, value) = [
            ("identity", "id", &self.identity),
            ("identity_glob", "pattern", &self.identity_glob),
            ("source", "source", &self.source),
            ("rule", "rule", &self.rule),
            ("subject_jti", "jti", &self.jti),
            ("issued_token", "fingerprint", &self.issued_token),
        ]
        .into_iter()
        .find_map(|(kind, field, value)| value.as_ref().map(|v| (kind, field, v)))
        .context(
            "say what to revoke: --identity, --identity-glob, --source, --rule, --jti or --issued-token",
        )?;
        Ok(json!({ "kind": kind, field: value }))
    }
}

pub async fn run(args: RevokeArgs) -> anyhow::Result<()> {
    let client = client(&args)?;
    let base = args.admin_url.trim_end_matches('/');
    let url = format!("{base}/v1/revocations");
    let request = match &args.command {
        RevokeCommand::Add(add) => {
            let body = json!({ "match": add.matcher()?, "reason": add.reason, "expires_at": add.expires_at });
            client.post(&url).json(&body)
        }
        RevokeCommand::List { removed, .. } => client.get(format!("{url}?removed={removed}")),
        RevokeCommand::Remove { id } => client.delete(format!("{url}/{id}")),
        RevokeCommand::Issued { id, .. } => client.get(format!("{url}/{id}/issued")),
    };
    let request = match &args.token_file {
        Some(path) => {
            let token = std::fs::read_to_string(path).with_context(|| format!("{}", path.display()))?;
            request.bearer_auth(token.trim())
        }
        None => request,
    };
    let response = request.send().await.with_context(|| format!("the admin API at {base}"))?;
    let status = response.status();
    let body: Value = response.json().await.with_context(|| format!("the answer of {base} ({status})"))?;
    if !status.is_success() {
        anyhow::bail!("{status}: {} {}", text(&body, "error"), text(&body, "message"));
    }
    match args.command {
        RevokeCommand::List { format: Format::Text, .. } => print!("{}", table(body.get("revocations"))),
        RevokeCommand::Add(_) => println!("revoked: {}", text(&body, "id")),
        RevokeCommand::Remove { id } => println!("removed: {id}"),
        RevokeCommand::Issued { format: Format::Text, .. } => print!("{}", issued(&body)),
        RevokeCommand::Issued { format: Format::Json, .. }
        | RevokeCommand::List { format: Format::Json, .. } => {
            println!("{}", serde_json::to_string_pretty(&body)?)
        }
    }
    Ok(())
}

fn client(args: &RevokeArgs) -> anyhow::Result<reqwest::Client> {
    let mut builder = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none());
    if let Some(path) = &args.ca_file {
        let pem = std::fs::read(path).with_context(|| format!("{}", path.display()))?;
        for cert in
            reqwest::Certificate::from_pem_bundle(&pem).with_context(|| format!("{}", path.display()))?
        {
            builder = builder.add_root_certificate(cert);
        }
    }
    if let Some(path) = &args.client_cert {
        let pem = std::fs::read(path).with_context(|| format!("{}", path.display()))?;
        builder = builder
            .identity(reqwest::Identity::from_pem(&pem).with_context(|| format!("{}", path.display()))?);
    }
    Ok(builder.build()?)
}

/// One line per revocation: id, what it matches, in force or not, author, reason.
fn table(revocations: Option<&Value>) -> String {
    let rows = revocations.and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default();
    let mut out = format!(
        "{:<36}  {:<14} {:<8} {:<24} {:<20} MATCH (REASON)\n",
        "ID", "KIND", "IN FORCE", "CREATED", "AUTHOR"
    );
    for r in rows {
        let mut matcher = r.get("match").cloned().unwrap_or_default();
        let kind = text(&matcher, "kind").to_string();
        if let Some(m) = matcher.as_object_mut() {
            m.remove("kind");
        }
        let in_force = r.get("in_force").and_then(Value::as_bool) == Some(true);
        out.push_str(&format!(
            "{:<36}  {:<14} {:<8} {:<24} {:<20} {matcher}  ({})\n",
            text(r, "id"),
            kind,
            if in_force { "yes" } else { "no" },
            text(r, "created"),
            text(r, "author"),
            text(r, "reason"),
        ));
    }
    out
}

/// The credentials still valid, one line each, then per target what takes them back, with
/// each AWS policy and the command that attaches it.
fn issued(body: &Value) -> String {
    let empty = Vec::new();
    let list = |key: &str| body.get(key).and_then(Value::as_array).unwrap_or(&empty).clone();
    let credentials = list("credentials");
    let mut out = format!("{} credential(s) still valid as of {}\n", credentials.len(), text(body, "as_of"));
    if !credentials.is_empty() {
        out.push_str(&format!(
            "{:<20} {:<11} {:<24} {:<24} {:<71} {} (RULE)\n",
            "TARGET", "KIND", "ISSUED", "EXPIRES", "FINGERPRINT", "IDENTITY"
        ));
    }
    for c in &credentials {
        out.push_str(&format!(
            "{:<20} {:<11} {:<24} {:<24} {:<71} {} ({})\n",
            text(c, "target"),
            text(c, "kind"),
            text(c, "issued_at"),
            text(c, "expires_at"),
            text(c, "fingerprint"),
            text(c, "identity"),
            text(c, "rule"),
        ));
    }
    if body.get("truncated").and_then(Value::as_bool) == Some(true) {
        out.push_str("(more credentials than listed)\n");
    }
    if let Some(note) = body.get("note").and_then(Value::as_str) {
        out.push_str(&format!("note: {note}\n"));
    }
    for t in list("targets") {
        out.push_str(&format!(
            "\n{} ({}): {}\n  {}\n",
            text(&t, "target"),
            text(&t, "kind"),
            text(&t, "action"),
            text(&t, "text")
        ));
        for p in t.get("policies").and_then(Value::as_array).unwrap_or(&empty) {
            out.push_str(&format!("  role {}:\n    {}\n", text(p, "role_arn"), text(p, "command")));
        }
    }
    out
}

/// A string member of a JSON object; empty when absent.
fn text<'a>(value: &'a Value, key: &str) -> &'a str {
    value.get(key).and_then(Value::as_str).unwrap_or_default()
}
