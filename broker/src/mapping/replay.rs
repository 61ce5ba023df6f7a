//! Replay: recorded requests decided again by mapping sets, to see what a change to the
//! files would do to the workloads that really run (`tessera mappings diff`) and which
//! rules decide anything at all (`tessera mappings unused`, `tessera mappings dependents`).
//!
//! A recorded request is decided as it was made: the same identity, audience, scope and
//! client address, and `now` at the time it was recorded. Replay makes no grant and calls
//! no target: it compares what the rules decide ([`MappingSet::preview`]).

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use serde::Serialize;
use tessera_adapters::Identity;
use tessera_adapters::config::format_duration;

use crate::mapping::access::ContextReads;
use crate::mapping::eval::GrantPreview;
use crate::mapping::file::Effect;
use crate::mapping::{Denial, MappingSet, Request};

/// Recorded requests alike in everything a decision reads, as the audit store keeps them:
/// one identity, audience and scope, and the same client address and second of the
/// clock where the rules read those ([`Folding`]). Decided once, counted `exchanges` times.
#[derive(Debug, Clone, Copy)]
pub struct Recorded<'a> {
    /// When the last of them was made, milliseconds since the Unix epoch.
    pub time_ms: i64,
    /// How many recorded requests this stands for (at least 1).
    pub exchanges: u64,
    pub identity: &'a Identity,
    pub audience: &'a str,
    pub scope: Option<&'a str>,
    pub client_addr: Option<&'a str>,
}

impl Recorded<'_> {
    fn request(&self) -> Request<'_> {
        Request {
            audience: self.audience,
            scope: self.scope,
            client_addr: self.client_addr,
            now: self.time_ms.div_euclid(1000),
        }
    }
}

/// Which recorded requests a replay may decide once for all: those of one identity,
/// audience and scope, and, when some condition reads them, of one client address
/// (`by_client_addr`), one second of the clock (`by_second`, the resolution of `now`) and
/// one expiry of the presented credential (`by_expiry`; otherwise identities that differ
/// only in `expires_at`, as each new token of a workload does, fold).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Folding {
    pub by_second: bool,
    pub by_client_addr: bool,
    pub by_expiry: bool,
}

impl Folding {
    fn of(set: &MappingSet) -> Self {
        let reads = set
            .rules
            .iter()
            .filter_map(|r| r.condition.as_ref())
            .fold(ContextReads::default(), |all, c| all.union(c.context_reads()));
        Self { by_second: reads.now, by_client_addr: reads.client_addr, by_expiry: reads.expires_at }
    }

    fn union(self, other: Self) -> Self {
        Self {
            by_second: self.by_second || other.by_second,
            by_client_addr: self.by_client_addr || other.by_client_addr,
            by_expiry: self.by_expiry || other.by_expiry,
        }
    }
}

/// A rule of a set, and where it is defined.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RuleRef {
    pub rule: String,
    pub effect: Effect,
    pub target: String,
    pub file: PathBuf,
    pub line: u64,
}

impl std::fmt::Display for RuleRef {
    /// `name (effect, target) file:line`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (effect, target) = (self.effect.as_str(), &self.target);
        write!(f, "{} ({effect}, {target}) {}:{}", self.rule, self.file.display(), self.line)
    }
}

impl MappingSet {
    /// Every rule, in load order.
    pub fn rules(&self) -> impl Iterator<Item = RuleRef> + '_ {
        self.rules.iter().map(|r| RuleRef {
            rule: r.name.clone(),
            effect: r.effect,
            target: r.target.clone(),
            file: r.file.to_path_buf(),
            line: r.pos.line,
        })
    }
}

/// What a set decides for one request, reduced to what a report compares.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct Outcome {
    /// `allow` or `deny`.
    pub decision: &'static str,
    /// The rule that decided, when one did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rule: Option<String>,
    /// `TS-OK`, or the refusal's reason code (`TS-MAP-NO-RULE`, `TS-MAP-DENIED`, ...).
    pub reason: &'static str,
}

impl Outcome {
    fn of(result: &Result<GrantPreview, Denial>) -> Self {
        match result {
            Ok(grant) => Self { decision: "allow", rule: Some(grant.rule.clone()), reason: "TS-OK" },
            Err(denial) => {
                Self { decision: "deny", rule: denial.rule().map(str::to_string), reason: denial.code() }
            }
        }
    }

    fn allowed(&self) -> bool {
        self.decision == "allow"
    }
}

impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (&self.rule, self.allowed()) {
            (Some(rule), true) => write!(f, "allowed by {rule}"),
            (Some(rule), false) => write!(f, "refused by {rule} ({})", self.reason),
            (None, _) => write!(f, "refused ({})", self.reason),
        }
    }
}

/// How a request's decision changes from the current set to the proposed one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ChangeKind {
    /// Allowed today, refused by the proposed rules: breakage.
    NewlyRefused,
    /// Refused today, allowed by the proposed rules: widening.
    NewlyAllowed,
    /// Allowed by both, with a different rule or grant (scope, TTL, claims, target keys).
    ChangedGrant,
}

impl ChangeKind {
    pub const ALL: [Self; 3] = [Self::NewlyRefused, Self::NewlyAllowed, Self::ChangedGrant];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::NewlyRefused => "newly refused",
            Self::NewlyAllowed => "newly allowed",
            Self::ChangedGrant => "changed grant",
        }
    }
}

/// Requests of one workload whose decision changes alike, with how often and when they
/// were last made.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Change {
    pub kind: ChangeKind,
    pub workload: String,
    pub source: String,
    pub target: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    pub before: Outcome,
    pub after: Outcome,
    /// For a changed grant, each difference (`ttl: 10m -> 5m`); empty otherwise.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub differences: Vec<String>,
    pub exchanges: u64,
    /// Milliseconds since the Unix epoch; RFC 3339 in the report.
    #[serde(serialize_with = "rfc3339")]
    pub last_seen: i64,
}

impl Change {
    /// The rules the change is about: the one deciding today and the one that would.
    pub fn rules(&self) -> BTreeSet<&str> {
        self.before.rule.iter().chain(&self.after.rule).map(String::as_str).collect()
    }
}

fn rfc3339<S: serde::Serializer>(ms: &i64, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&format_time(*ms))
}

/// Milliseconds since the Unix epoch as RFC 3339 UTC, to the second.
pub fn format_time(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
        .unwrap_or_default()
}

/// The fields two grants differ in, as `field: old -> new` (`-` for none).
fn differences(before: &GrantPreview, after: &GrantPreview) -> Vec<String> {
    let mut out = Vec::new();
    let mut differ = |field: &str, old: Option<String>, new: Option<String>| {
        if old != new {
            let show = |v: Option<String>| v.unwrap_or_else(|| "-".to_string());
            out.push(format!("{field}: {} -> {}", show(old), show(new)));
        }
    };
    differ("rule", Some(before.rule.clone()), Some(after.rule.clone()));
    differ("scope", before.scope.clone(), after.scope.clone());
    differ("ttl", Some(format_duration(before.ttl)), Some(format_duration(after.ttl)));
    let claims: BTreeSet<&String> = before.claims.keys().chain(after.claims.keys()).collect();
    for key in claims {
        let value = |g: &GrantPreview| g.claims.get(key).map(|v| v.to_string());
        differ(&format!("claims.{key}"), value(before), value(after));
    }
    let params: BTreeSet<&String> = before.params.keys().chain(after.params.keys()).collect();
    for key in params {
        let value = |g: &GrantPreview| g.params.get(key).map(param_text);
        differ(key, value(before), value(after));
    }
    out
}

fn param_text(value: &serde_json::Value) -> String {
    match value {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// What makes two replayed requests one line of a report.
type ChangeKey = (ChangeKind, String, String, Option<String>, Outcome, Outcome, Vec<String>);

/// The count and last time of requests folded into one line.
#[derive(Debug, Clone, Copy)]
struct Seen {
    exchanges: u64,
    last_ms: i64,
    source_index: usize,
}

/// Replays recorded requests against the current and the proposed set and folds the
/// differences into an [`ImpactReport`].
#[derive(Debug)]
pub struct Impact<'s> {
    current: &'s MappingSet,
    proposed: &'s MappingSet,
    replayed: u64,
    workloads: BTreeSet<String>,
    sources: Vec<String>,
    changes: BTreeMap<ChangeKey, Seen>,
    proposed_usage: BTreeSet<String>,
}

impl<'s> Impact<'s> {
    pub fn new(current: &'s MappingSet, proposed: &'s MappingSet) -> Self {
        Self {
            current,
            proposed,
            replayed: 0,
            workloads: BTreeSet::new(),
            sources: Vec::new(),
            changes: BTreeMap::new(),
            proposed_usage: BTreeSet::new(),
        }
    }

    /// Which recorded requests both sets decide alike.
    pub fn folding(&self) -> Folding {
        Folding::of(self.current).union(Folding::of(self.proposed))
    }

    /// Decide recorded requests by both sets and keep any difference.
    pub fn add(&mut self, recorded: &Recorded<'_>) {
        self.replayed += recorded.exchanges;
        let identity = recorded.identity;
        if !self.workloads.contains(&identity.id) {
            self.workloads.insert(identity.id.clone());
        }
        let request = recorded.request();
        let before = self.current.preview(identity, &request);
        let after = self.proposed.preview(identity, &request);
        for rule in deciding_rules(&after) {
            if !self.proposed_usage.contains(rule) {
                self.proposed_usage.insert(rule.to_string());
            }
        }
        let (kind, differences) = match (&before, &after) {
            (Ok(_), Err(_)) => (ChangeKind::NewlyRefused, Vec::new()),
            (Err(_), Ok(_)) => (ChangeKind::NewlyAllowed, Vec::new()),
            (Ok(old), Ok(new)) if old != new => (ChangeKind::ChangedGrant, differences(old, new)),
            _ => return,
        };
        let key = (
            kind,
            identity.id.clone(),
            recorded.audience.to_string(),
            recorded.scope.map(str::to_string),
            Outcome::of(&before),
            Outcome::of(&after),
            differences,
        );
        let source_index = match self.sources.iter().position(|s| *s == identity.source) {
            Some(i) => i,
            None => {
                self.sources.push(identity.source.clone());
                self.sources.len() - 1
            }
        };
        let seen = self.changes.entry(key).or_insert(Seen { exchanges: 0, last_ms: i64::MIN, source_index });
        seen.exchanges += recorded.exchanges;
        seen.last_ms = seen.last_ms.max(recorded.time_ms);
    }

    /// The report, with `skipped` recorded requests that could not be replayed (no
    /// verified identity).
    pub fn report(self, skipped: u64) -> ImpactReport {
        let changes: Vec<Change> = self
            .changes
            .into_iter()
            .map(|((kind, workload, target, scope, before, after, differences), seen)| Change {
                kind,
                workload,
                source: self.sources.get(seen.source_index).cloned().unwrap_or_default(),
                target,
                scope,
                before,
                after,
                differences,
                exchanges: seen.exchanges,
                last_seen: seen.last_ms,
            })
            .collect();
        let unused = self.proposed.rules().filter(|r| !self.proposed_usage.contains(&r.rule)).collect();
        ImpactReport {
            replayed: self.replayed,
            skipped,
            workloads: self.workloads.len(),
            summary: ChangeKind::ALL.map(|kind| Summary::of(kind, &changes)).to_vec(),
            by_rule: by_rule(&changes),
            by_workload: by_workload(&changes),
            changes,
            unused_rules: unused,
        }
    }
}

/// The rules that decided a request: the allowing or refusing rule, or every rule of an
/// ambiguous refusal (each of them matched).
fn deciding_rules(result: &Result<GrantPreview, Denial>) -> Vec<&str> {
    match result {
        Ok(grant) => vec![grant.rule.as_str()],
        Err(Denial::Ambiguous { rules }) => rules.iter().map(String::as_str).collect(),
        Err(denial) => denial.rule().into_iter().collect(),
    }
}

/// How many workloads and requests one kind of change touches.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Summary {
    pub kind: ChangeKind,
    pub workloads: usize,
    pub exchanges: u64,
}

impl Summary {
    fn of(kind: ChangeKind, changes: &[Change]) -> Self {
        let of_kind = changes.iter().filter(|c| c.kind == kind);
        Self {
            kind,
            workloads: of_kind.clone().map(|c| &c.workload).collect::<BTreeSet<_>>().len(),
            exchanges: of_kind.map(|c| c.exchanges).sum(),
        }
    }
}

/// The changes one rule is part of, by kind, as indexes into [`ImpactReport::changes`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Group {
    pub name: String,
    pub newly_refused: u64,
    pub newly_allowed: u64,
    pub changed_grant: u64,
    /// Milliseconds since the Unix epoch; RFC 3339 in the report.
    #[serde(serialize_with = "rfc3339")]
    pub last_seen: i64,
    pub changes: Vec<usize>,
}

impl Group {
    fn new(name: &str) -> Self {
        Self {
            name: name.to_string(),
            newly_refused: 0,
            newly_allowed: 0,
            changed_grant: 0,
            last_seen: i64::MIN,
            changes: Vec::new(),
        }
    }

    fn add(&mut self, i: usize, change: &Change) {
        let count = match change.kind {
            ChangeKind::NewlyRefused => &mut self.newly_refused,
            ChangeKind::NewlyAllowed => &mut self.newly_allowed,
            ChangeKind::ChangedGrant => &mut self.changed_grant,
        };
        *count += change.exchanges;
        self.last_seen = self.last_seen.max(change.last_seen);
        self.changes.push(i);
    }
}

fn by_rule(changes: &[Change]) -> Vec<Group> {
    let mut groups: BTreeMap<&str, Group> = BTreeMap::new();
    for (i, change) in changes.iter().enumerate() {
        let rules = change.rules();
        // A refusal by no rule in both sets cannot be a change; a change always names one.
        for rule in rules {
            groups.entry(rule).or_insert_with(|| Group::new(rule)).add(i, change);
        }
    }
    groups.into_values().collect()
}

fn by_workload(changes: &[Change]) -> Vec<Group> {
    let mut groups: BTreeMap<&str, Group> = BTreeMap::new();
    for (i, change) in changes.iter().enumerate() {
        groups.entry(&change.workload).or_insert_with(|| Group::new(&change.workload)).add(i, change);
    }
    groups.into_values().collect()
}

/// What the proposed rules would change for the recorded requests.
#[derive(Debug, Clone, Serialize)]
pub struct ImpactReport {
    /// Recorded requests decided by both sets.
    pub replayed: u64,
    /// Recorded requests without a verified identity (bad or untrusted tokens): nothing
    /// for rules to decide.
    pub skipped: u64,
    /// Distinct workloads among the replayed requests.
    pub workloads: usize,
    pub summary: Vec<Summary>,
    /// Each line: the requests of one workload, target and scope that change alike.
    pub changes: Vec<Change>,
    pub by_rule: Vec<Group>,
    pub by_workload: Vec<Group>,
    /// Rules of the proposed set that decide none of the replayed requests.
    pub unused_rules: Vec<RuleRef>,
}

impl ImpactReport {
    /// Whether any change is of one of `kinds`.
    pub fn has_any(&self, kinds: &[ChangeKind]) -> bool {
        self.changes.iter().any(|c| kinds.contains(&c.kind))
    }
}

impl std::fmt::Display for ImpactReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "replayed {} of {} ({} without a verified identity skipped)",
            count(self.replayed, "recorded request"),
            count(self.workloads as u64, "workload"),
            self.skipped
        )?;
        for s in &self.summary {
            let (workloads, requests) =
                (count(s.workloads as u64, "workload"), count(s.exchanges, "request"));
            writeln!(f, "  {}: {workloads}, {requests}", s.kind.as_str())?;
        }
        for kind in ChangeKind::ALL {
            let lines: Vec<&Change> = self.changes.iter().filter(|c| c.kind == kind).collect();
            if lines.is_empty() {
                continue;
            }
            writeln!(f, "\n{}:", capitalized(kind.as_str()))?;
            for c in lines {
                write_change(f, c)?;
            }
        }
        write_groups(f, "By rule", &self.by_rule, &self.changes)?;
        write_groups(f, "By workload", &self.by_workload, &self.changes)?;
        if !self.unused_rules.is_empty() {
            writeln!(f, "\nRules of the proposed files that decide none of these requests:")?;
            for r in &self.unused_rules {
                writeln!(f, "  {r}")?;
            }
        }
        Ok(())
    }
}

/// `1 request`, `2 requests`.
fn count(n: u64, noun: &str) -> String {
    if n == 1 { format!("1 {noun}") } else { format!("{n} {noun}s") }
}

fn capitalized(text: &str) -> String {
    let mut chars = text.chars();
    chars.next().map(|c| c.to_uppercase().chain(chars).collect()).unwrap_or_default()
}

fn write_change(f: &mut std::fmt::Formatter<'_>, c: &Change) -> std::fmt::Result {
    let scope = c.scope.as_deref().map(|s| format!(" scope {s}")).unwrap_or_default();
    writeln!(
        f,
        "  {} -> {}{scope}: {} -> {}; {}, last seen {}",
        c.workload,
        c.target,
        c.before,
        c.after,
        count(c.exchanges, "request"),
        format_time(c.last_seen)
    )?;
    for d in &c.differences {
        writeln!(f, "      {d}")?;
    }
    Ok(())
}

fn write_groups(
    f: &mut std::fmt::Formatter<'_>,
    title: &str,
    groups: &[Group],
    changes: &[Change],
) -> std::fmt::Result {
    if groups.is_empty() {
        return Ok(());
    }
    writeln!(f, "\n{title}:")?;
    for g in groups {
        let counts = [
            (ChangeKind::NewlyRefused, g.newly_refused),
            (ChangeKind::NewlyAllowed, g.newly_allowed),
            (ChangeKind::ChangedGrant, g.changed_grant),
        ];
        let counts: Vec<String> =
            counts.iter().filter(|(_, n)| *n > 0).map(|(k, n)| format!("{} {n}", k.as_str())).collect();
        writeln!(f, "  {}: {}; last seen {}", g.name, counts.join(", "), format_time(g.last_seen))?;
        for c in g.changes.iter().filter_map(|&i| changes.get(i)) {
            let other = if title == "By rule" { &c.workload } else { &c.target };
            writeln!(f, "    {} {other}: {} -> {}", c.kind.as_str(), c.before, c.after)?;
        }
    }
    Ok(())
}

/// What one rule decided: (workload, `allow` or `deny`) -> (requests, last seen).
type Decided = BTreeMap<(String, &'static str), (u64, i64)>;

/// Which rules of one set decide which recorded requests: dead rules, and the workloads
/// that depend on a rule.
#[derive(Debug)]
pub struct Usage<'s> {
    set: &'s MappingSet,
    replayed: u64,
    by_rule: BTreeMap<String, Decided>,
}

impl<'s> Usage<'s> {
    pub fn new(set: &'s MappingSet) -> Self {
        Self { set, replayed: 0, by_rule: BTreeMap::new() }
    }

    /// Which recorded requests the set decides alike.
    pub fn folding(&self) -> Folding {
        Folding::of(self.set)
    }

    pub fn add(&mut self, recorded: &Recorded<'_>) {
        self.replayed += recorded.exchanges;
        let result = self.set.preview(recorded.identity, &recorded.request());
        let decision = Outcome::of(&result).decision;
        for rule in deciding_rules(&result) {
            let workloads = match self.by_rule.get_mut(rule) {
                Some(w) => w,
                None => self.by_rule.entry(rule.to_string()).or_default(),
            };
            let seen = workloads.entry((recorded.identity.id.clone(), decision)).or_insert((0, i64::MIN));
            seen.0 += recorded.exchanges;
            seen.1 = seen.1.max(recorded.time_ms);
        }
    }

    pub fn report(self, skipped: u64) -> UsageReport {
        let rules = self
            .set
            .rules()
            .map(|r| {
                let workloads = self.by_rule.get(&r.rule).map(|w| {
                    w.iter()
                        .map(|((workload, decision), (exchanges, last))| Dependent {
                            workload: workload.clone(),
                            decision,
                            exchanges: *exchanges,
                            last_seen: *last,
                        })
                        .collect()
                });
                RuleUsage {
                    exchanges: workloads_sum(workloads.as_deref()),
                    rule: r,
                    workloads: workloads.unwrap_or_default(),
                }
            })
            .collect();
        UsageReport { replayed: self.replayed, skipped, rules }
    }
}

fn workloads_sum(workloads: Option<&[Dependent]>) -> u64 {
    workloads.unwrap_or_default().iter().map(|d| d.exchanges).sum()
}

/// A workload whose requests a rule decided.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Dependent {
    pub workload: String,
    /// `allow` or `deny`: what the rule decided for it.
    pub decision: &'static str,
    pub exchanges: u64,
    #[serde(serialize_with = "rfc3339")]
    pub last_seen: i64,
}

#[derive(Debug, Clone, Serialize)]
pub struct RuleUsage {
    #[serde(flatten)]
    pub rule: RuleRef,
    /// Recorded requests the rule decided.
    pub exchanges: u64,
    pub workloads: Vec<Dependent>,
}

/// Every rule of a set with the recorded requests it decided.
#[derive(Debug, Clone, Serialize)]
pub struct UsageReport {
    pub replayed: u64,
    pub skipped: u64,
    pub rules: Vec<RuleUsage>,
}

impl UsageReport {
    /// Rules that decided none of the replayed requests.
    pub fn unused(&self) -> impl Iterator<Item = &RuleUsage> {
        self.rules.iter().filter(|r| r.exchanges == 0)
    }

    /// The named rule, if the set has it.
    pub fn rule(&self, name: &str) -> Option<&RuleUsage> {
        self.rules.iter().find(|r| r.rule.rule == name)
    }
}
