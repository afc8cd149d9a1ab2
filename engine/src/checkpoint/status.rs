//! What `status` and `list` tell of jobs from their checkpoint directories,
//! without a running job's help: a running job keeps a marker file with
//! its process id in its directory while it runs.

use std::fs;
use std::path::{Path, PathBuf};

use crate::checkpoint::storage;

/// Name of the marker a running job keeps in its checkpoint directory.
const RUNNING: &str = "running";

/// The marker of a running job; removed when dropped (the job ended).
pub(crate) struct RunningMarker(PathBuf);

impl RunningMarker {
    /// Marks the job under `job_root` running in this process. A marker
    /// that cannot be written only costs `status` its answer.
    pub(crate) fn create(job_root: &Path) -> RunningMarker {
        let path = job_root.join(RUNNING);
        if let Err(e) = fs::create_dir_all(job_root)
            .and_then(|()| fs::write(&path, std::process::id().to_string()))
        {
            tracing::warn!(path = %path.display(), error = %e, "cannot write the running marker");
        }
        RunningMarker(path)
    }
}

impl Drop for RunningMarker {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.0);
    }
}

/// The process running the job under `job_root`, if one is (its marker
/// names a live process: Linux's `/proc`).
fn running_pid(job_root: &Path) -> Option<u32> {
    let pid: u32 = fs::read_to_string(job_root.join(RUNNING))
        .ok()?
        .trim()
        .parse()
        .ok()?;
    Path::new("/proc")
        .join(pid.to_string())
        .exists()
        .then_some(pid)
}

/// One line about the job `name` under `job_root`.
pub(crate) fn job_status(name: &str, job_root: &Path) -> String {
    let state = match running_pid(job_root) {
        Some(pid) => format!("running (process {pid})"),
        None => "not running".to_owned(),
    };
    let latest = match storage::latest_complete(job_root) {
        Some(dir) => format!("newest checkpoint {}", dir.display()),
        None => "no complete checkpoint".to_owned(),
    };
    format!("job '{name}': {state}; {latest}")
}

/// A line per job with a directory under `dir`, sorted by name.
pub(crate) fn list(dir: &Path) -> String {
    let mut jobs: Vec<(String, PathBuf)> = fs::read_dir(dir)
        .into_iter()
        .flatten()
        .filter_map(Result::ok)
        .filter(|e| e.path().is_dir())
        .map(|e| (e.file_name().to_string_lossy().into_owned(), e.path()))
        .collect();
    jobs.sort();
    if jobs.is_empty() {
        return format!("no jobs under {}", dir.display());
    }
    jobs.iter()
        .map(|(name, root)| job_status(name, root))
        .collect::<Vec<_>>()
        .join("\n")
}
