//! Values made from files and made again when the files change: the one reload loop behind
//! the API tokens (`api.auth.tokens_file`) and the TLS configurations (`server.tls`,
//! `grpc.tls`).
//!
//! Contract:
//! - [`Reloading::watch`] reads every file each `reload_interval`. When their content differs
//!   from what it saw last, it calls the build function with the current value (so a new value
//!   can carry state over, as the tokens' rate-limit buckets are) and, if that succeeds, the
//!   new value replaces the current one at once; readers holding the old one keep it.
//! - A build that fails keeps the current value. It is tried again when the files change again,
//!   not at every tick.
//! - A file that cannot be read (gone, or not readable) is one failed reload, reported once
//!   when it goes, and keeps the current value; when it is back, its content counts as a
//!   change, whatever it was before, so the value is built again.
//! - Each result is logged here and handed to the caller's `report` function, which counts it
//!   in the caller's own metric.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::{ArcSwap, Guard};
use tokio_util::sync::CancellationToken;

/// What one reload did, for the caller's metric.
pub enum Outcome<'a, T> {
    /// The files changed and made this value, which is now current.
    Loaded(&'a T),
    /// The files changed but made no value, or one of them is gone; the value stays.
    Failed,
}

impl<T> Outcome<'_, T> {
    /// The `result` label of the reload metrics: `loaded` or `failed`.
    pub fn result(&self) -> &'static str {
        match self {
            Self::Loaded(_) => "loaded",
            Self::Failed => "failed",
        }
    }
}

type Build<T> = Box<dyn Fn(Option<&T>) -> Result<T, String> + Send + Sync>;
type Report<T> = Box<dyn Fn(Outcome<'_, T>) + Send + Sync>;

/// A value made from files, and made again when they change.
pub struct Reloading<T> {
    /// What the value is, for the logs: `API tokens`, `http TLS`.
    what: String,
    current: ArcSwap<T>,
    files: Vec<PathBuf>,
    reload_interval: Duration,
    build: Build<T>,
    report: Report<T>,
    /// The files' content when the current value was made (`None`: one could not be read).
    seen: Mutex<Option<Vec<Vec<u8>>>>,
}

impl<T: Send + Sync + 'static> Reloading<T> {
    /// Makes the first value, `build(None)`, reading `files` just before, so a change made
    /// while it is built is seen by the first check; its error is returned. Later values are
    /// `build(Some(current))`.
    pub fn new(
        what: impl Into<String>,
        files: Vec<PathBuf>,
        reload_interval: Duration,
        build: impl Fn(Option<&T>) -> Result<T, String> + Send + Sync + 'static,
        report: impl Fn(Outcome<'_, T>) + Send + Sync + 'static,
    ) -> Result<Arc<Self>, String> {
        let seen = read_all(&files).ok();
        let value = build(None)?;
        Ok(Arc::new(Self {
            what: what.into(),
            current: ArcSwap::from_pointee(value),
            files,
            reload_interval,
            build: Box::new(build),
            report: Box::new(report),
            seen: Mutex::new(seen),
        }))
    }

    /// The value of now, for a short look (no reference count is taken).
    pub fn load(&self) -> Guard<Arc<T>> {
        self.current.load()
    }

    /// The value of now, to keep.
    pub fn current(&self) -> Arc<T> {
        self.current.load_full()
    }

    /// Checks the files every `reload_interval` until `stop`.
    pub async fn watch(self: Arc<Self>, stop: CancellationToken) {
        let mut tick = tokio::time::interval(self.reload_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tick.tick() => {}
            }
            self.check();
        }
    }

    /// One check: reloads if the files changed since the last one.
    fn check(&self) {
        let now = read_all(&self.files);
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        let now = match now {
            Ok(now) if seen.as_ref() == Some(&now) => return,
            Ok(now) => now,
            Err((file, error)) => {
                if seen.take().is_some() {
                    tracing::warn!(what = %self.what, file = %file.display(), %error, "a file is gone; keeping the value loaded before");
                    (self.report)(Outcome::Failed);
                }
                return;
            }
        };
        *seen = Some(now);
        drop(seen);
        match (self.build)(Some(&self.current.load())) {
            Ok(value) => {
                let value = Arc::new(value);
                self.current.store(value.clone());
                tracing::info!(what = %self.what, "reloaded from its changed files");
                (self.report)(Outcome::Loaded(&value));
            }
            Err(error) => {
                tracing::error!(what = %self.what, %error, "the files changed but do not load; keeping the value loaded before");
                (self.report)(Outcome::Failed);
            }
        }
    }
}

fn read_all(files: &[PathBuf]) -> Result<Vec<Vec<u8>>, (&Path, std::io::Error)> {
    files
        .iter()
        .map(|file| std::fs::read(file).map_err(|e| (file.as_path(), e)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A value built from one file: its text, and how many reloads led to it.
    struct Text {
        text: String,
        generation: usize,
    }

    struct Fixture {
        dir: PathBuf,
        file: PathBuf,
        reloading: Arc<Reloading<Text>>,
        results: Arc<Mutex<Vec<&'static str>>>,
    }

    impl Fixture {
        fn new(name: &str) -> Self {
            let dir = std::env::temp_dir()
                .join(format!("highpress-reload-{name}-{}", std::process::id()));
            std::fs::create_dir_all(&dir).expect("a scratch dir");
            let file = dir.join("value");
            std::fs::write(&file, "one").expect("write");
            let results = Arc::new(Mutex::new(Vec::new()));
            let reported = results.clone();
            let read = {
                let file = file.clone();
                move || {
                    let text = std::fs::read_to_string(&file).map_err(|e| e.to_string())?;
                    if text.starts_with("bad") {
                        return Err(format!("{text} does not load"));
                    }
                    Ok(text)
                }
            };
            let reloading = Reloading::new(
                "test value",
                vec![file.clone()],
                Duration::from_secs(3600),
                move |previous: Option<&Text>| {
                    let generation = previous.map_or(0, |p| p.generation + 1);
                    Ok(Text {
                        text: read()?,
                        generation,
                    })
                },
                move |outcome| reported.lock().unwrap().push(outcome.result()),
            )
            .expect("the first value");
            Self {
                dir,
                file,
                reloading,
                results,
            }
        }

        fn write(&self, text: &str) {
            let staged = self.dir.join("staged");
            std::fs::write(&staged, text).expect("write");
            std::fs::rename(&staged, &self.file).expect("rename");
        }

        /// The current text and generation, and the results reported so far.
        fn state(&self) -> (String, usize, Vec<&'static str>) {
            let value = self.reloading.current();
            (
                value.text.clone(),
                value.generation,
                self.results.lock().unwrap().clone(),
            )
        }
    }

    impl Drop for Fixture {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }

    #[test]
    fn a_change_is_built_from_the_current_value_and_an_unchanged_file_is_not_rebuilt() {
        let f = Fixture::new("change");
        f.reloading.check();
        assert_eq!(f.state(), ("one".into(), 0, vec![]));
        f.write("two");
        f.reloading.check();
        f.reloading.check();
        assert_eq!(f.state(), ("two".into(), 1, vec!["loaded"]));
    }

    #[test]
    fn a_failed_build_keeps_the_value_and_is_counted_once_until_the_next_change() {
        let f = Fixture::new("failed");
        f.write("bad one");
        f.reloading.check();
        f.reloading.check();
        assert_eq!(f.state(), ("one".into(), 0, vec!["failed"]));
        f.write("three");
        f.reloading.check();
        assert_eq!(f.state(), ("three".into(), 1, vec!["failed", "loaded"]));
    }

    #[test]
    fn a_vanished_file_is_one_failed_reload_and_its_return_a_change() {
        let f = Fixture::new("vanished");
        std::fs::remove_file(&f.file).expect("remove");
        f.reloading.check();
        f.reloading.check();
        assert_eq!(f.state(), ("one".into(), 0, vec!["failed"]));
        // Back with the very content it had: built again, since what was seen is forgotten.
        f.write("one");
        f.reloading.check();
        assert_eq!(f.state(), ("one".into(), 1, vec!["failed", "loaded"]));
    }
}
