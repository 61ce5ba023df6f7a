//! Hot reload of the mapping directory: a change is read and validated whole, off the
//! request path, and swapped in atomically; an invalid change leaves the previous rules
//! serving and is reported (log, metrics, `/v1/status`) until a valid one replaces it.
//!
//! Triggers: file-system events in the directory (debounced, so an editor's several
//! writes make one reload), entries of its parent made, removed or renamed (the directory
//! itself replaced, or a symlink to it swapped, as Kubernetes does with ConfigMap volumes;
//! on Linux, writes to other files there wake nothing), a slow poll as a
//! safety net for file systems without events, `SIGHUP`, and `POST /v1/reload` on the
//! admin listener. Every trigger runs the same check: unchanged files cost a read and a
//! hash, nothing more.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use notify::RecursiveMode;
use notify_debouncer_mini::{DebounceEventResult, Debouncer, new_debouncer};
use serde::Serialize;
use tessera_adapters::Clock;
use tessera_adapters::clock::format_rfc3339;

use crate::mapping::{Catalog, LoadErrors, MappingSet, read_dir, version};
use crate::metrics::Metrics;

/// Where the serving rule set lives; implemented by the broker over its exchange pipeline.
pub trait RuleSlot: Send + Sync {
    fn current(&self) -> Arc<MappingSet>;
    fn replace(&self, set: Arc<MappingSet>);
}

/// A refused reload, as `/v1/status` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ReloadError {
    /// Every problem, one `file:line:column: message (hint: ...)` line each.
    pub message: String,
    /// When it was found, RFC 3339.
    pub at: String,
}

/// What `/v1/status` reports about reloads.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ReloadStatus {
    /// The last reload that changed the serving rules, RFC 3339.
    pub last_reload_at: Option<String>,
    /// Set while the files on disk are invalid and older rules serve; cleared once the
    /// files are valid again.
    pub last_reload_error: Option<ReloadError>,
    pub reloads_ok: u64,
    pub reloads_failed: u64,
}

/// What one reload did.
#[derive(Debug)]
pub enum ReloadOutcome {
    /// The files are the ones serving.
    Unchanged,
    /// The files are the ones last refused; already reported.
    StillInvalid,
    Reloaded {
        version: String,
        rules: usize,
    },
    Refused(LoadErrors),
}

/// How the directory is watched.
#[derive(Debug, Clone, Copy)]
pub struct WatchOptions {
    /// Watch for file-system events.
    pub watch: bool,
    /// Wait this long after the last event before reloading.
    pub debounce: Duration,
    /// Also look every so often; `None` never.
    pub poll_interval: Option<Duration>,
    /// Reload on `SIGHUP` (Unix).
    pub sighup: bool,
}

#[derive(Debug, Default)]
struct State {
    status: ReloadStatus,
    /// What the last refused attempt read, so an unchanged invalid directory is reported
    /// once rather than at every trigger.
    refused: Option<String>,
}

/// Reloads one mapping directory into a [`RuleSlot`].
#[derive(Debug)]
pub struct Reloader {
    dir: PathBuf,
    catalog: Catalog,
    clock: Arc<dyn Clock>,
    metrics: Arc<Metrics>,
    state: Mutex<State>,
    /// One reload at a time: a later trigger waits and then sees the earlier's result.
    busy: Mutex<()>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding the lock leaves plain data behind, still usable.
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Reloader {
    /// `catalog` is what the serving set was checked against: reloads check against the
    /// same sources and targets.
    pub fn new(dir: PathBuf, catalog: Catalog, clock: Arc<dyn Clock>, metrics: Arc<Metrics>) -> Self {
        Self { dir, catalog, clock, metrics, state: Mutex::default(), busy: Mutex::new(()) }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn catalog(&self) -> &Catalog {
        &self.catalog
    }

    pub fn status(&self) -> ReloadStatus {
        lock(&self.state).status.clone()
    }

    /// Read and validate the directory and, if it changed and is valid, swap it in. Blocks
    /// on file IO and validation: call it off the async runtime. `force` reports an
    /// invalid directory again even if it was already reported.
    pub fn reload(&self, slot: &dyn RuleSlot, force: bool) -> ReloadOutcome {
        let _busy = lock(&self.busy);
        let (files, mut errors) = read_dir(&self.dir);
        let attempt = if errors.is_empty() {
            version(&files)
        } else {
            // Unreadable: what was read plus why the rest was not.
            let why: Vec<String> = errors.iter().map(ToString::to_string).collect();
            format!("{}|{}", version(&files), why.join("\n"))
        };
        let current = slot.current();
        if errors.is_empty() && attempt == current.version() {
            // What is on disk is what serves, perhaps again after a bad edit was undone.
            let mut state = lock(&self.state);
            if state.status.last_reload_error.take().is_some() {
                tracing::info!(dir = %self.dir.display(), version = %attempt, "mapping files are valid again; the serving rules are unchanged");
            }
            state.refused = None;
            self.metrics.mapping_in_sync();
            return ReloadOutcome::Unchanged;
        }
        if !force && lock(&self.state).refused.as_deref() == Some(attempt.as_str()) {
            return ReloadOutcome::StillInvalid;
        }
        let loaded = if errors.is_empty() {
            MappingSet::load_files(&files, &self.catalog)
        } else {
            Err(LoadErrors(Vec::new()))
        };
        match loaded {
            Ok(set) => {
                let (version, rules) = (set.version().to_string(), set.rule_count());
                slot.replace(Arc::new(set));
                let mut state = lock(&self.state);
                state.status.last_reload_at = Some(format_rfc3339(self.clock.now()));
                state.status.last_reload_error = None;
                state.status.reloads_ok += 1;
                state.refused = None;
                drop(state);
                self.metrics.mapping_reload(true);
                self.metrics.set_mapping_rules(rules);
                tracing::info!(dir = %self.dir.display(), version = %version, rules, previous = %current.version(), "mapping rules reloaded");
                ReloadOutcome::Reloaded { version, rules }
            }
            Err(LoadErrors(more)) => {
                errors.extend(more);
                let errors = LoadErrors(errors);
                let message = errors.to_string();
                let mut state = lock(&self.state);
                state.status.last_reload_error =
                    Some(ReloadError { message: message.clone(), at: format_rfc3339(self.clock.now()) });
                state.status.reloads_failed += 1;
                state.refused = Some(attempt);
                drop(state);
                self.metrics.mapping_reload(false);
                tracing::error!(
                    dir = %self.dir.display(),
                    reason = "TS-MAP-RELOAD",
                    errors = errors.0.len(),
                    serving = %current.version(),
                    "mapping files refused; the previous rules keep serving:\n{message}"
                );
                ReloadOutcome::Refused(errors)
            }
        }
    }

    /// Watch the directory and reload on every trigger (see the module documentation)
    /// until the returned task is aborted.
    pub fn spawn(
        self: Arc<Self>,
        slot: Arc<dyn RuleSlot>,
        options: WatchOptions,
    ) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move { self.watch_loop(slot, options).await })
    }

    async fn watch_loop(self: Arc<Self>, slot: Arc<dyn RuleSlot>, options: WatchOptions) {
        let (tx, mut events) = tokio::sync::mpsc::channel::<()>(1);
        let dir = std::path::absolute(&self.dir).unwrap_or_else(|_| self.dir.clone());
        let _parent = if options.watch { parent::ParentWatch::new(&dir, tx.clone()) } else { None };
        let mut watcher = if options.watch { self.watcher(&dir, options.debounce, tx) } else { None };
        if let Some(w) = watcher.as_mut() {
            arm(w, &dir);
        }
        let mut poll = options.poll_interval.map(|every| {
            let mut interval = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
            interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            interval
        });
        let mut hangup = if options.sighup { hangup_signal() } else { None };
        loop {
            let force = tokio::select! {
                Some(()) = events.recv() => false,
                _ = tick(&mut poll) => false,
                _ = hangup_recv(&mut hangup) => {
                    tracing::info!(dir = %self.dir.display(), "SIGHUP: reloading mapping files");
                    true
                }
            };
            let (me, s) = (Arc::clone(&self), Arc::clone(&slot));
            if let Err(e) = tokio::task::spawn_blocking(move || me.reload(s.as_ref(), force)).await {
                tracing::error!(error = %e, "mapping reload task failed");
            }
            // The directory may have been replaced: watch whatever is there now.
            if let Some(w) = watcher.as_mut() {
                arm(w, &dir);
            }
        }
    }

    fn watcher(
        &self,
        dir: &Path,
        debounce: Duration,
        tx: tokio::sync::mpsc::Sender<()>,
    ) -> Option<Debouncer<notify::RecommendedWatcher>> {
        let watched = dir.to_path_buf();
        let handler = move |result: DebounceEventResult| match result {
            // Events in the parent directory count only when they are about this one.
            Ok(events) if events.iter().any(|e| e.path.starts_with(&watched)) => {
                // A full channel already holds a pending reload, which will see this change.
                let _ = tx.try_send(());
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "mapping directory watch error"),
        };
        match new_debouncer(debounce, handler) {
            Ok(w) => Some(w),
            Err(e) => {
                tracing::warn!(dir = %self.dir.display(), error = %e, "cannot watch the mapping directory; relying on polling and SIGHUP");
                None
            }
        }
    }
}

/// (Re)watch `dir` (and, where [`parent::ParentWatch`] does not, its parent),
/// non-recursively. Errors are expected while a directory is being replaced; the parent's
/// events and the poll cover that moment.
fn arm(debouncer: &mut Debouncer<notify::RecommendedWatcher>, dir: &Path) {
    let watcher = debouncer.watcher();
    let _ = watcher.unwatch(dir);
    if let Err(e) = watcher.watch(dir, RecursiveMode::NonRecursive) {
        tracing::debug!(dir = %dir.display(), error = %e, "mapping directory not watched");
    }
    if cfg!(target_os = "linux") {
        return;
    }
    if let Some(parent) = dir.parent() {
        let _ = watcher.unwatch(parent);
        if let Err(e) = watcher.watch(parent, RecursiveMode::NonRecursive) {
            tracing::debug!(dir = %parent.display(), error = %e, "parent of the mapping directory not watched");
        }
    }
}

/// The mapping directory's parent, watched for its entries made, removed and renamed, and
/// for being removed or renamed itself: what replacing the directory or swapping a symlink
/// to it does. Not for writes to its files, which notify's watches report too, each a
/// wake-up of its threads (an audit file next to the mapping directory would cost a few per
/// exchange). A thread of its own blocks on the watch and wakes only for these events.
#[cfg(target_os = "linux")]
mod parent {
    use std::ffi::OsString;
    use std::path::Path;

    use inotify::{EventMask, Inotify, WatchDescriptor, WatchMask, Watches};
    use tokio::sync::mpsc;

    /// The watch; dropping it ends the watch and its thread.
    pub(super) struct ParentWatch {
        watches: Watches,
        wd: WatchDescriptor,
    }

    impl ParentWatch {
        /// Watch `dir`'s parent; each change to `dir`'s entry there, or to the parent
        /// itself, sends on `changed`.
        pub(super) fn new(dir: &Path, changed: mpsc::Sender<()>) -> Option<Self> {
            let (parent, name) = (dir.parent()?, dir.file_name()?.to_os_string());
            let watch = || {
                let inotify = Inotify::init()?;
                let mask = WatchMask::CREATE
                    | WatchMask::DELETE
                    | WatchMask::MOVED_FROM
                    | WatchMask::MOVED_TO
                    | WatchMask::DELETE_SELF
                    | WatchMask::MOVE_SELF
                    | WatchMask::ONLYDIR;
                let wd = inotify.watches().add(parent, mask)?;
                let watches = inotify.watches();
                std::thread::Builder::new()
                    .name("mapping-parent".to_string())
                    .spawn(move || read(inotify, &name, &changed))?;
                Ok::<_, std::io::Error>(Self { watches, wd })
            };
            match watch() {
                Ok(watch) => Some(watch),
                Err(e) => {
                    tracing::debug!(dir = %parent.display(), error = %e, "parent of the mapping directory not watched");
                    None
                }
            }
        }
    }

    impl Drop for ParentWatch {
        fn drop(&mut self) {
            // The kernel then reports the watch gone, which ends the thread.
            let _ = self.watches.remove(self.wd.clone());
        }
    }

    /// Until the watch is removed (or the receiver is gone, or reading fails).
    fn read(mut inotify: Inotify, name: &OsString, changed: &mpsc::Sender<()>) {
        let mut buffer = [0u8; 4096];
        loop {
            let Ok(events) = inotify.read_events_blocking(&mut buffer) else { return };
            let mut relevant = false;
            for event in events {
                if event.mask.contains(EventMask::IGNORED) {
                    return;
                }
                relevant |= event.name.is_none_or(|n| n == name);
            }
            // A full channel already holds a pending reload, which will see this change.
            if relevant && let Err(mpsc::error::TrySendError::Closed(())) = changed.try_send(()) {
                return;
            }
        }
    }
}

/// Elsewhere notify's watch of the parent (see [`arm`]) stands in.
#[cfg(not(target_os = "linux"))]
mod parent {
    pub(super) struct ParentWatch;

    impl ParentWatch {
        pub(super) fn new(_: &std::path::Path, _: tokio::sync::mpsc::Sender<()>) -> Option<Self> {
            None
        }
    }
}

async fn tick(poll: &mut Option<tokio::time::Interval>) {
    match poll {
        Some(interval) => {
            interval.tick().await;
        }
        None => std::future::pending().await,
    }
}

#[cfg(unix)]
type Hangup = tokio::signal::unix::Signal;
#[cfg(not(unix))]
type Hangup = ();

#[cfg(unix)]
fn hangup_signal() -> Option<Hangup> {
    match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
        Ok(s) => Some(s),
        Err(e) => {
            tracing::warn!(error = %e, "SIGHUP handler not installed");
            None
        }
    }
}

#[cfg(not(unix))]
fn hangup_signal() -> Option<Hangup> {
    None
}

async fn hangup_recv(hangup: &mut Option<Hangup>) {
    #[cfg(unix)]
    if let Some(signal) = hangup
        && signal.recv().await.is_some()
    {
        return;
    }
    #[cfg(not(unix))]
    let _ = hangup;
    std::future::pending().await
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use arc_swap::ArcSwap;
    use tessera_adapters::ManualClock;

    use super::*;
    use crate::mapping::{SourceInfo, TargetInfo};

    #[derive(Debug)]
    struct Slot(ArcSwap<MappingSet>);

    impl RuleSlot for Slot {
        fn current(&self) -> Arc<MappingSet> {
            self.0.load_full()
        }
        fn replace(&self, set: Arc<MappingSet>) {
            self.0.store(set);
        }
    }

    fn catalog() -> Catalog {
        Catalog {
            targets: vec![TargetInfo::plain_jwt("api")],
            sources: vec![SourceInfo { name: "corp".into(), kind: "oidc".into() }],
        }
    }

    fn rules(name: &str) -> String {
        format!(
            "version: 1\nrules:\n  - name: {name}\n    match: {{ source: corp }}\n    grant: {{ target: api }}\n"
        )
    }

    fn setup() -> (tempfile::TempDir, Arc<Reloader>, Arc<Slot>, Arc<Metrics>) {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.yaml"), rules("first")).unwrap();
        let set = MappingSet::load_dir(dir.path(), &catalog()).unwrap();
        let slot = Arc::new(Slot(ArcSwap::from_pointee(set)));
        let metrics = Arc::new(Metrics::new());
        let clock = Arc::new(ManualClock::new(1_800_000_000));
        let reloader =
            Arc::new(Reloader::new(dir.path().to_path_buf(), catalog(), clock, Arc::clone(&metrics)));
        (dir, reloader, slot, metrics)
    }

    #[test]
    fn a_valid_change_swaps_an_invalid_one_is_reported_and_kept_out() {
        let (dir, reloader, slot, metrics) = setup();
        assert!(matches!(reloader.reload(slot.as_ref(), false), ReloadOutcome::Unchanged));

        std::fs::write(dir.path().join("a.yaml"), rules("second")).unwrap();
        let ReloadOutcome::Reloaded { rules: 1, .. } = reloader.reload(slot.as_ref(), false) else {
            panic!()
        };
        assert!(slot.current().run_tests().is_empty());
        let serving = slot.current().version().to_string();

        std::fs::write(dir.path().join("a.yaml"), rules("Bad Name")).unwrap();
        let ReloadOutcome::Refused(errors) = reloader.reload(slot.as_ref(), false) else { panic!() };
        assert!(errors.to_string().contains("invalid name `Bad Name`"), "{errors}");
        assert_eq!(slot.current().version(), serving, "the previous rules keep serving");
        let status = reloader.status();
        let error = status.last_reload_error.clone().expect("error reported");
        assert!(error.message.contains("a.yaml:3:11: invalid name"), "{}", error.message);
        assert_eq!(error.at, "2027-01-15T08:00:00Z");
        assert_eq!((status.reloads_ok, status.reloads_failed), (1, 1));
        assert!(metrics.encode().unwrap().contains("tessera_mapping_last_reload_success 0"));
        // The same invalid files are reported once, unless forced.
        assert!(matches!(reloader.reload(slot.as_ref(), false), ReloadOutcome::StillInvalid));
        assert!(matches!(reloader.reload(slot.as_ref(), true), ReloadOutcome::Refused(_)));

        // Undoing the bad edit clears the error without a swap.
        std::fs::write(dir.path().join("a.yaml"), rules("second")).unwrap();
        assert!(matches!(reloader.reload(slot.as_ref(), false), ReloadOutcome::Unchanged));
        assert_eq!(reloader.status().last_reload_error, None);
        let text = metrics.encode().unwrap();
        assert!(text.contains("tessera_mapping_last_reload_success 1"), "{text}");
        assert!(text.contains("tessera_mapping_reloads_total{result=\"error\"} 2"), "{text}");
    }

    #[test]
    fn a_missing_directory_is_refused() {
        let (dir, reloader, slot, _) = setup();
        let serving = slot.current().version().to_string();
        std::fs::remove_file(dir.path().join("a.yaml")).unwrap();
        let ReloadOutcome::Refused(errors) = reloader.reload(slot.as_ref(), false) else { panic!() };
        assert!(errors.to_string().contains("no mapping files"), "{errors}");
        assert_eq!(slot.current().version(), serving);
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn the_watcher_picks_up_changes_and_directory_swaps() {
        let (dir, reloader, slot, _) = setup();
        let options = WatchOptions {
            watch: true,
            debounce: Duration::from_millis(50),
            poll_interval: None,
            sighup: false,
        };
        let task = Arc::clone(&reloader).spawn(Arc::clone(&slot) as Arc<dyn RuleSlot>, options);
        // The watch is armed asynchronously, so a change made before it is armed goes
        // unseen: make it again until the rules show it. Only a watcher that never sees a
        // change fails, after a minute.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        let mut edits = 0;
        while !slot.current().rules.iter().any(|r| r.name == "edited") {
            assert!(tokio::time::Instant::now() < deadline, "the edit was never seen ({edits} writes)");
            std::fs::write(dir.path().join("a.yaml"), rules("edited")).unwrap();
            edits += 1;
            tokio::time::sleep(Duration::from_millis(50)).await;
        }

        // Kubernetes-style: the mapping directory is a symlink swapped to a new target.
        let root = tempfile::tempdir().unwrap();
        let (v1, v2, link) = (root.path().join("v1"), root.path().join("v2"), root.path().join("mappings"));
        std::fs::create_dir(&v1).unwrap();
        std::fs::create_dir(&v2).unwrap();
        std::fs::write(v1.join("a.yaml"), rules("first")).unwrap();
        std::fs::write(v2.join("a.yaml"), rules("swapped")).unwrap();
        std::os::unix::fs::symlink(&v1, &link).unwrap();
        let set = MappingSet::load_dir(&link, &catalog()).unwrap();
        let slot2 = Arc::new(Slot(ArcSwap::from_pointee(set)));
        let reloader2 = Arc::new(Reloader::new(
            link.clone(),
            catalog(),
            Arc::new(ManualClock::new(0)),
            Arc::new(Metrics::new()),
        ));
        let task2 = Arc::clone(&reloader2).spawn(Arc::clone(&slot2) as Arc<dyn RuleSlot>, options);
        // Swapped again (to the same target) until the watcher, armed asynchronously, sees it.
        let tmp = root.path().join("mappings.tmp");
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        while !slot2.current().rules.iter().any(|r| r.name == "swapped") {
            assert!(tokio::time::Instant::now() < deadline, "the symlink swap was never seen");
            std::os::unix::fs::symlink(&v2, &tmp).unwrap();
            std::fs::rename(&tmp, &link).unwrap();
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        task.abort();
        task2.abort();
    }
}
