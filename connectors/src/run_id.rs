//! An id that tells two runs of a sink writer apart.

use std::time::{SystemTime, UNIX_EPOCH};

use eddy_engine::context::RuntimeContext;

/// A value that differs between any two runs of the writer of `ctx`'s
/// subtask (time, process and subtask hashed): exactly-once sinks key their
/// commit markers by it, so one run never mistakes another's epochs for
/// its own.
pub(crate) fn writer_run_id(ctx: &RuntimeContext) -> u64 {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    let seed = format!(
        "{nanos}-{}-{}-{}",
        std::process::id(),
        ctx.uid(),
        ctx.subtask()
    );
    xxhash_rust::xxh3::xxh3_64(seed.as_bytes())
}

/// `<name>/<subtask>/<writer run id>`: what an exactly-once sink writer
/// labels its commits with; `name` defaults to `<job>/<sink uid>`.
pub(crate) fn writer_label(name: Option<&str>, ctx: &RuntimeContext) -> String {
    let name = name.map_or_else(|| format!("{}/{}", ctx.job(), ctx.uid()), str::to_owned);
    format!("{name}/{}/{:016x}", ctx.subtask(), writer_run_id(ctx))
}
