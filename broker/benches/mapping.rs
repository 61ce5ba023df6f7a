//! Rule evaluation cost against the number of rules: the same requests decided by a set of
//! 10 rules and by a set of 10,000, spread as a large deployment's would be (20 sources of
//! several kinds, 10 targets, one rule per workload, some globs, deny rules and CEL
//! conditions). Rules are indexed by target and by each rule's most selective exact
//! field, so the ratio of the two rates should stay close to 1.
//!
//!     cargo bench -p tessera-broker --bench mapping [-- SECONDS]

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)] // bench code

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::hint::black_box;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use tessera_adapters::Identity;
use tessera_broker::mapping::{Catalog, MappingSet, Request, SourceInfo, TargetInfo};

const SOURCES: &[(&str, &str)] = &[
    ("eks-prod", "kubernetes"),
    ("eks-staging", "kubernetes"),
    ("gke-prod", "kubernetes"),
    ("gke-dev", "kubernetes"),
    ("aks-prod", "kubernetes"),
    ("onprem-a", "kubernetes"),
    ("onprem-b", "kubernetes"),
    ("onprem-c", "kubernetes"),
    ("github", "github_actions"),
    ("gitlab", "gitlab_ci"),
    ("gcp-prod", "gcp"),
    ("gcp-data", "gcp"),
    ("gcp-dev", "gcp"),
    ("gcp-ml", "gcp"),
    ("azure-prod", "azure"),
    ("azure-dev", "azure"),
    ("azure-corp", "azure"),
    ("aws-prod", "aws_iam"),
    ("aws-data", "aws_iam"),
    ("aws-dev", "aws_iam"),
];

fn catalog() -> Catalog {
    let mut targets = Vec::new();
    for i in 0..4 {
        targets.push(TargetInfo {
            name: format!("aws-{i}"),
            kind: "aws_sts",
            max_ttl: Duration::from_secs(3600),
            default_ttl: Duration::from_secs(900),
            grant_keys: &["role_arn", "session_name", "tags"],
            scope_param: Some("role_arn"),
            target: None,
        });
    }
    for i in 0..6 {
        targets.push(TargetInfo::plain_jwt(&format!("api-{i}")));
    }
    let sources = SOURCES.iter().map(|(n, k)| SourceInfo { name: (*n).into(), kind: (*k).into() }).collect();
    Catalog { targets, sources }
}

/// One workload: its identity and the target its rule grants.
struct Workload {
    identity: Identity,
    target: String,
}

/// `n` rules, one per workload, plus every 50th a glob rule for a whole namespace, every
/// 100th a deny rule on an attribute, every 20th a CEL condition.
fn rules(n: usize) -> (String, Vec<Workload>) {
    let mut text = String::from("version: 1\nrules:\n");
    let mut workloads = Vec::new();
    let mut made = 0;
    let mut i = 0usize;
    while made < n {
        let (source, kind) = SOURCES[i % SOURCES.len()];
        let namespace = format!("team-{}", (i / SOURCES.len()) % 97);
        let name = format!("svc-{i}");
        let target = if i.is_multiple_of(3) { format!("aws-{}", i % 4) } else { format!("api-{}", i % 6) };
        let grant = if target.starts_with("aws") {
            format!(
                "{{ target: {target}, role_arn: \"arn:aws:iam::123456789012:role/{name}\", session_name: \"{{name}}\" }}"
            )
        } else {
            format!("{{ target: {target}, claims: {{ team: \"{{namespace}}\" }} }}")
        };
        let when = if i.is_multiple_of(20) {
            "    when: 'identity.attributes[\"env\"] != \"sandbox\"'\n"
        } else {
            ""
        };
        writeln!(
            text,
            "  - name: r{i}\n    match: {{ source: {source}, namespace: {namespace}, name: {name} }}\n{when}    grant: {grant}"
        )
        .unwrap();
        made += 1;
        if i % 50 == 49 && made < n {
            writeln!(
                text,
                "  - name: g{i}\n    match: {{ source: {source}, namespace: {namespace}, name: \"batch-*\" }}\n    grant: {{ target: api-{} }}",
                i % 6
            )
            .unwrap();
            made += 1;
        }
        if i % 100 == 99 && made < n {
            writeln!(
                text,
                "  - name: d{i}\n    effect: deny\n    match: {{ source: {source}, attributes: {{ env: \"quarantine-*\" }} }}\n    grant: {{ target: {target} }}"
            )
            .unwrap();
            made += 1;
        }
        workloads.push(Workload {
            identity: Identity {
                id: format!("{kind}://{source}/{namespace}/{name}"),
                provider: kind.into(),
                source: source.into(),
                issuer: format!("https://{source}.example"),
                subject: format!("{namespace}:{name}"),
                tenant: Some("123456789012".into()),
                namespace: Some(namespace),
                name: Some(name),
                instance: Some(format!("pod-{i}")),
                region: None,
                attributes: BTreeMap::from([("env".to_string(), "prod".to_string())]),
                withheld: Default::default(),
                expires_at: 1_900_000_000,
            },
            target,
        });
        i += 1;
    }
    (text, workloads)
}

/// Decisions per second on one thread, over the workloads in turn.
fn rate(set: &MappingSet, workloads: &[&Workload], seconds: f64) -> (f64, usize) {
    let start = Instant::now();
    let (mut count, mut allowed) = (0u64, 0usize);
    while start.elapsed().as_secs_f64() < seconds {
        for w in workloads {
            let request = Request { audience: &w.target, scope: None, client_addr: None, now: 1_800_000_000 };
            let result = set.preview(black_box(&w.identity), &request);
            allowed += usize::from(result.is_ok());
            count += 1;
        }
    }
    (count as f64 / start.elapsed().as_secs_f64(), allowed)
}

fn main() {
    let seconds: f64 = std::env::args().skip(1).find_map(|a| a.parse().ok()).unwrap_or(3.0);
    let catalog = catalog();
    let mut rates = Vec::new();
    for n in [10usize, 10_000] {
        let (text, workloads) = rules(n);
        let started = Instant::now();
        let set = MappingSet::load_files(&[(PathBuf::from("bench.yaml"), text)], &catalog).unwrap();
        let loaded = started.elapsed();
        // Requests spread over the whole set, with the same mix as the small set's: every
        // 20th workload's rule has a CEL condition, so the sample keeps that proportion.
        let spread = |count: usize| -> Vec<&Workload> {
            let step = workloads.len() / count;
            let stride = step / 20 * 20;
            if stride == 0 {
                workloads.iter().step_by(step.max(1)).take(count).collect()
            } else {
                (0..count).filter_map(|j| workloads.get(j * stride + j % 20)).collect()
            }
        };
        let (per_second, allowed) = rate(&set, &spread(10), seconds);
        assert!(allowed > 0, "the requests are allowed by their rules");
        println!(
            "{:>6} rules: {:>10.0} decisions/s over 10 workloads (one thread; loaded and indexed in {:.0?})",
            set.rule_count(),
            per_second,
            loaded
        );
        if n > 1000 {
            let (wide, _) = rate(&set, &spread(1000), seconds);
            println!("{:>6} rules: {:>10.0} decisions/s over 1,000 workloads", set.rule_count(), wide);
        }
        rates.push(per_second);
    }
    println!("ratio 10,000 rules / 10 rules: {:.2}", rates[1] / rates[0]);
}
