//! The progress line of a bounded job run from a terminal (a pseudo
//! terminal made by util-linux `script`), and its absence elsewhere.

use eddy::connectors::datagen::{DataGen, SplitMix64};
use eddy::connectors::discard::DiscardSink;
use eddy::prelude::*;

/// The child: 150 k generated records at 100 k/s, configured from the
/// command line (plus `--quiet` when `EDDY_PROGRESS_CHILD` says so). Runs
/// only when the parent sets that variable.
#[test]
fn progress_child_job() {
    let Ok(mode) = std::env::var("EDDY_PROGRESS_CHILD") else {
        return;
    };
    let mut args = vec!["job"];
    if mode == "quiet" {
        args.push("--quiet");
    }
    let env = Env::from_arg_list(args).unwrap();
    env.source(
        DataGen::new(|i, _: &mut SplitMix64| i)
            .with_count(150_000)
            .with_rate(100_000.0),
    )
    .sink(DiscardSink::new());
    env.execute("progress-test").unwrap();
}

/// What the child printed, run under a pseudo terminal or not.
fn child_output(mode: &str, terminal: bool) -> String {
    let exe = std::env::current_exe().unwrap();
    let child = format!(
        "{} --exact progress_child_job --test-threads=1 --nocapture",
        exe.display()
    );
    let mut command = if terminal {
        let mut c = std::process::Command::new("script");
        c.args(["-qec", &child, "/dev/null"]);
        c
    } else {
        let mut c = std::process::Command::new(&exe);
        c.args([
            "--exact",
            "progress_child_job",
            "--test-threads=1",
            "--nocapture",
        ]);
        c
    };
    let out = command
        .env("EDDY_PROGRESS_CHILD", mode)
        .output()
        .expect("util-linux `script` runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr)
}

#[test]
fn a_terminal_shows_records_read_with_an_eta_unless_quiet() {
    let shown = child_output("show", true);
    assert!(
        shown.contains("records read") && shown.contains("/150,000") && shown.contains("ETA"),
        "{shown}"
    );
    let quiet = child_output("quiet", true);
    assert!(!quiet.contains("records read"), "{quiet}");
    let piped = child_output("show", false);
    assert!(!piped.contains("records read"), "{piped}");
}
