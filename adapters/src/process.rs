//! What both of Tessera's processes (the broker, the agent) say about themselves on
//! `/metrics`: `tessera_build_info{version, commit}` and the process metrics Prometheus's
//! client libraries export under their usual names (`process_cpu_seconds_total`,
//! `process_resident_memory_bytes`, `process_open_fds`, `process_max_fds`,
//! `process_virtual_memory_bytes`, `process_start_time_seconds`), read from `/proc` at
//! each scrape. Where there is no `/proc`, only `tessera_build_info` is there.

use std::fmt::{self, Write as _};

/// The build a process runs, for `tessera_build_info`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Build {
    pub version: &'static str,
    pub commit: &'static str,
}

static BUILD: std::sync::OnceLock<Build> = std::sync::OnceLock::new();

/// Record the build this process runs, once, at start (the `tessera` binary knows its
/// commit; this crate does not).
pub fn set_build(build: Build) {
    let _ = BUILD.set(build);
}

/// The build [`set_build`] recorded; this crate's version and commit `unknown` before.
pub fn build() -> Build {
    BUILD.get().copied().unwrap_or(Build { version: env!("CARGO_PKG_VERSION"), commit: "unknown" })
}

/// Linux's `USER_HZ`: the unit of `/proc/<pid>/stat` times, fixed by its ABI.
const TICKS_PER_SECOND: f64 = 100.0;

/// The process's own figures, as `/proc/self` has them.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct ProcessStats {
    pub cpu_seconds: f64,
    pub resident_bytes: u64,
    pub virtual_bytes: u64,
    pub open_fds: u64,
    pub max_fds: Option<u64>,
    /// Seconds since the Unix epoch.
    pub start_time_seconds: f64,
}

impl ProcessStats {
    /// Read from `/proc`; `None` where it cannot be (not Linux).
    pub fn read() -> Option<Self> {
        let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
        let status = std::fs::read_to_string("/proc/self/status").ok()?;
        let boot = std::fs::read_to_string("/proc/stat").ok()?;
        let limits = std::fs::read_to_string("/proc/self/limits").unwrap_or_default();
        let open_fds = std::fs::read_dir("/proc/self/fd").ok()?.count() as u64;
        Self::parse(&stat, &status, &boot, &limits, open_fds)
    }

    /// From the texts of `/proc/self/stat`, `/proc/self/status`, `/proc/stat` and
    /// `/proc/self/limits`, and the number of open descriptors.
    pub fn parse(stat: &str, status: &str, boot: &str, limits: &str, open_fds: u64) -> Option<Self> {
        // The command name (field 2) is in parentheses and may hold spaces: count fields
        // after its closing one, from field 3 (`state`).
        let after_name = stat.rsplit_once(')')?.1;
        let fields: Vec<&str> = after_name.split_whitespace().collect();
        let field = |n: usize| fields.get(n.checked_sub(3)?)?.parse::<u64>().ok();
        let (utime, stime, start_ticks, vsize) = (field(14)?, field(15)?, field(22)?, field(23)?);
        let resident_kib = status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())?;
        let boot_time = boot.lines().find_map(|l| l.strip_prefix("btime "))?.trim().parse::<u64>().ok()?;
        let max_fds = limits
            .lines()
            .find(|l| l.starts_with("Max open files"))
            .and_then(|l| l.split_whitespace().nth(3))
            .and_then(|soft| soft.parse::<u64>().ok());
        Some(Self {
            cpu_seconds: (utime + stime) as f64 / TICKS_PER_SECOND,
            resident_bytes: resident_kib * 1024,
            virtual_bytes: vsize,
            open_fds,
            max_fds,
            start_time_seconds: boot_time as f64 + start_ticks as f64 / TICKS_PER_SECOND,
        })
    }
}

/// `tessera_build_info` and the process metrics, in the OpenMetrics text format, without
/// the final `# EOF` (the caller ends the exposition).
pub fn encode(build: Build, out: &mut String) -> fmt::Result {
    writeln!(out, "# HELP tessera_build_info The version and commit this process runs.")?;
    writeln!(out, "# TYPE tessera_build_info gauge")?;
    let (version, commit) = (label(build.version), label(build.commit));
    writeln!(out, "tessera_build_info{{version=\"{version}\",commit=\"{commit}\"}} 1")?;
    let Some(p) = ProcessStats::read() else { return Ok(()) };
    let mut metric = |name: &str, kind: &str, help: &str, sample: &str, value: String| {
        writeln!(out, "# HELP {name} {help}")?;
        writeln!(out, "# TYPE {name} {kind}")?;
        writeln!(out, "{sample} {value}")
    };
    let cpu = "process_cpu_seconds_total";
    metric(
        "process_cpu_seconds",
        "counter",
        "User and system CPU time spent, in seconds.",
        cpu,
        p.cpu_seconds.to_string(),
    )?;
    let rss = "process_resident_memory_bytes";
    metric(rss, "gauge", "Resident memory size, in bytes.", rss, p.resident_bytes.to_string())?;
    let vsz = "process_virtual_memory_bytes";
    metric(vsz, "gauge", "Virtual memory size, in bytes.", vsz, p.virtual_bytes.to_string())?;
    let fds = "process_open_fds";
    metric(fds, "gauge", "Open file descriptors.", fds, p.open_fds.to_string())?;
    if let Some(max) = p.max_fds {
        metric(
            "process_max_fds",
            "gauge",
            "The limit of open file descriptors.",
            "process_max_fds",
            max.to_string(),
        )?;
    }
    let start = "process_start_time_seconds";
    metric(
        start,
        "gauge",
        "Start time since the Unix epoch, in seconds.",
        start,
        p.start_time_seconds.to_string(),
    )
}

/// A label value escaped as the text format wants (`\`, `"`, newline).
fn label(value: &str) -> String {
    value.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn process_figures_are_read_from_proc_texts() {
        let stat = "4242 (tessera (x) y) S 1 4242 4242 0 -1 4194560 1000 0 0 0 250 50 0 0 20 0 9 0 \
                    12345 104857600 2000 18446744073709551615 1 1 0 0 0 0 0 4096 0 0 0 0 17 1 0 0 0 0 0";
        let status = "Name:\ttessera\nVmRSS:\t   20480 kB\nThreads:\t9\n";
        let boot = "cpu  1 2 3\nbtime 1790000000\nprocesses 7\n";
        let limits = "Limit                     Soft Limit           Hard Limit           Units\n\
                      Max open files            1024                 524288               files\n";
        let p = ProcessStats::parse(stat, status, boot, limits, 12).unwrap();
        assert_eq!(
            p,
            ProcessStats {
                cpu_seconds: 3.0,
                resident_bytes: 20480 * 1024,
                virtual_bytes: 104_857_600,
                open_fds: 12,
                max_fds: Some(1024),
                start_time_seconds: 1_790_000_123.45,
            }
        );
        assert_eq!(ProcessStats::parse("garbage", status, boot, limits, 1), None);
    }

    #[test]
    fn this_process_is_described_in_the_text_format() {
        let mut out = String::new();
        encode(Build { version: "1.2.3", commit: "abc\"def" }, &mut out).unwrap();
        assert!(out.contains("tessera_build_info{version=\"1.2.3\",commit=\"abc\\\"def\"} 1\n"), "{out}");
        let p = ProcessStats::read().expect("tests run on Linux");
        assert!(p.resident_bytes > 0 && p.open_fds > 0 && p.start_time_seconds > 1.0e9, "{p:?}");
        for name in ["process_cpu_seconds_total ", "process_resident_memory_bytes ", "process_open_fds "] {
            assert!(out.lines().any(|l| l.starts_with(name)), "{name}: {out}");
        }
    }
}
