//! Records the commit and the build date for `tessera --version` and the status body.
//! `TESSERA_BUILD_COMMIT` and `SOURCE_DATE_EPOCH` override what git and the clock say
//! (reproducible builds, builds from a source archive without `.git`).

use std::process::Command;
use std::time::{SystemTime, UNIX_EPOCH};

fn main() {
    println!("cargo:rerun-if-env-changed=TESSERA_BUILD_COMMIT");
    println!("cargo:rerun-if-env-changed=SOURCE_DATE_EPOCH");
    // The reflog of HEAD changes on every commit, checkout and merge.
    if let Some(head_log) = git(&["rev-parse", "--git-path", "logs/HEAD"]) {
        println!("cargo:rerun-if-changed={head_log}");
    }
    let commit = std::env::var("TESSERA_BUILD_COMMIT")
        .ok()
        .or_else(|| {
            let hash = git(&["rev-parse", "--short=12", "HEAD"])?;
            let dirty =
                git(&["status", "--porcelain", "--untracked-files=no"]).is_some_and(|s| !s.is_empty());
            Some(if dirty { format!("{hash}-modified") } else { hash })
        })
        .unwrap_or_else(|| "unknown".to_string());
    let seconds =
        std::env::var("SOURCE_DATE_EPOCH").ok().and_then(|s| s.parse::<u64>().ok()).unwrap_or_else(now);
    println!("cargo:rustc-env=TESSERA_COMMIT={commit}");
    println!("cargo:rustc-env=TESSERA_BUILD_DATE={}", civil_date(seconds));
}

/// The build's own clock: the date is a fact about the build, not a decision of the broker.
#[allow(clippy::disallowed_methods)]
fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    out.status.success().then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// `YYYY-MM-DD` (UTC) of a Unix time, by the days-from-civil algorithm run backwards.
fn civil_date(seconds: u64) -> String {
    let days = (seconds / 86_400) as i64 + 719_468;
    let era = days.div_euclid(146_097);
    let doe = days.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}")
}
