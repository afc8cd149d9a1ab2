//! The REST API of a running local job (`--web-addr`): every endpoint, the
//! token, size limits and JSON errors; the command line's `list`,
//! `status`, `savepoint`, `stop` and `cancel` over it; and random,
//! malformed requests that must only ever get 4xx answers.

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use common::{all_committed, counting, memory_sink, spawn_job, wait_until, Committed};
use eddy_engine::config::EnvConfig;
use eddy_engine::dsl::{Env, JobControl};
use proptest::prelude::*;
use serde_json::{json, Value};

const TOKEN: &str = "s3cret";

/// An endless job that counts slowly through unchained tasks and small
/// batches, so that a barrier takes a while to pass (a savepoint stays in
/// progress long enough to be asked about), serving its API with a token.
fn start(dir: &Path, name: &'static str) -> (JobControl, SocketAddr, Committed<u64>) {
    let mut config = EnvConfig::default()
        .with_parallelism(1)
        .with_batch_size(4)
        .with_channel_capacity(2)
        .with_checkpoint_interval(Duration::from_millis(300))
        .with_checkpoint_dir(dir)
        .with_web_addr("127.0.0.1:0".parse().unwrap())
        .with_http_token(TOKEN);
    config.chaining = false;
    let committed: Committed<u64> = Default::default();
    let sink = committed.clone();
    let (control, _done) = spawn_job(
        name,
        move |env| {
            env.source(counting(None))
                .uid("src")
                .map(|v| {
                    std::thread::sleep(Duration::from_millis(5));
                    v
                })
                .uid("slow")
                .sink(memory_sink(&sink))
                .uid("sink");
        },
        config,
    );
    wait_until("the REST API to listen", || control.web_addr().is_some());
    let addr = control.web_addr().unwrap();
    (control, addr, committed)
}

/// Sends one HTTP/1.1 request as raw bytes (any method, path, header and
/// body, however malformed); the answer's status and JSON body
/// (`Value::Null` when it is not JSON). Fails on no answer within 10 s.
fn call(
    addr: SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<&[u8]>,
) -> (u16, Value) {
    let body = body.unwrap_or_default();
    let mut request = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    if let Some(t) = token {
        request.push_str(&format!("Authorization: Bearer {t}\r\n"));
    }
    request.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
    let mut bytes = request.into_bytes();
    bytes.extend_from_slice(body);
    let answer = exchange(addr, &bytes, false);
    let text = String::from_utf8_lossy(&answer);
    let status = text
        .strip_prefix("HTTP/1.1 ")
        .and_then(|rest| rest.get(..3))
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("no HTTP answer to {method} {path}: {text:?}"));
    let json = text
        .split_once("\r\n\r\n")
        .and_then(|(_, body)| serde_json::from_str(body).ok())
        .unwrap_or(Value::Null);
    (status, json)
}

/// Writes `request` (then, with `half_close`, ends the writing side) and
/// reads until the server closes the connection.
fn exchange(addr: SocketAddr, request: &[u8], half_close: bool) -> Vec<u8> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(addr).expect("the API listens");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    // The server may answer (413) and close before it read everything.
    let _ = stream.write_all(request);
    if half_close {
        let _ = stream.shutdown(std::net::Shutdown::Write);
    }
    let mut answer = Vec::new();
    if let Err(e) = stream.read_to_end(&mut answer) {
        assert!(
            e.kind() != std::io::ErrorKind::WouldBlock && e.kind() != std::io::ErrorKind::TimedOut,
            "no answer within 10 s"
        );
    }
    answer
}

fn get(addr: SocketAddr, path: &str) -> Value {
    let (status, body) = call(addr, "GET", path, Some(TOKEN), None);
    assert_eq!(status, 200, "GET {path}: {body}");
    body
}

fn post(addr: SocketAddr, path: &str, body: &Value) -> (u16, Value) {
    call(
        addr,
        "POST",
        path,
        Some(TOKEN),
        Some(body.to_string().as_bytes()),
    )
}

/// Polls a savepoint request until it is no longer in progress.
fn settled(addr: SocketAddr, job: &str, id: &str) -> Value {
    let path = format!("/v1/jobs/{job}/savepoints/{id}");
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let status = get(addr, &path);
        if status["status"] != "IN_PROGRESS" {
            return status;
        }
        assert!(std::time::Instant::now() < deadline, "savepoint {id} hangs");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn every_endpoint_answers_on_a_running_job_and_errors_are_json() {
    let dir = tempfile::tempdir().unwrap();
    let (control, addr, committed) = start(dir.path(), "rest-job");

    // The token, on every endpoint.
    for path in [
        "/v1/jobs",
        "/v1/jobs/rest-job",
        "/metrics",
        "/v1/workers",
        "/",
    ] {
        for token in [None, Some("wrong"), Some("s3cre"), Some("s3cret2")] {
            let (status, body) = call(addr, "GET", path, token, None);
            assert_eq!(status, 401, "GET {path} with {token:?}");
            assert!(body["error"].as_str().unwrap().contains("bearer token"));
        }
    }

    // Probes need no token, and learn nothing but that the API is up.
    let (status, health) = call(addr, "GET", "/healthz", None, None);
    assert_eq!((status, health), (200, json!({ "status": "ok" })));

    let jobs = get(addr, "/v1/jobs");
    assert_eq!(jobs["jobs"][0]["id"], "rest-job");
    assert_eq!(jobs["jobs"][0]["state"], "RUNNING");
    let status = get(addr, "/v1/jobs/rest-job");
    assert_eq!(status["id"], "rest-job");
    assert_eq!(status["state"], "RUNNING");
    let vertices = status["vertices"].as_array().unwrap();
    assert_eq!(vertices.len(), 3, "source, map, sink unchained: {status}");
    for v in vertices {
        assert_eq!(v["parallelism"], 1);
        assert_eq!(v["subtasks"], json!([{ "subtask": 0, "worker": "local" }]));
    }
    assert!(status["started_at_ms"].as_i64().unwrap() > 1_700_000_000_000);
    let workers = get(addr, "/v1/workers");
    assert_eq!(workers["workers"][0]["id"], "local");
    // Slot sharing: a slot runs one subtask of every vertex.
    assert_eq!(workers["workers"][0]["slots"], 1);

    wait_until("a completed checkpoint", || {
        get(addr, "/v1/jobs/rest-job/checkpoints")["completed"]
            .as_u64()
            .unwrap()
            > 0
    });
    let checkpoints = get(addr, "/v1/jobs/rest-job/checkpoints");
    let latest = &checkpoints["latest"];
    assert_eq!(latest["kind"], "checkpoint");
    assert!(Path::new(latest["path"].as_str().unwrap())
        .join("_metadata")
        .exists());

    // Errors: unknown job, endpoint, request, method; bad bodies.
    let (s, body) = call(addr, "GET", "/v1/jobs/other", Some(TOKEN), None);
    assert_eq!(s, 404);
    assert!(
        body["error"].as_str().unwrap().contains("rest-job"),
        "{body}"
    );
    let (s, body) = call(addr, "GET", "/v1/nothing", Some(TOKEN), None);
    assert!(s == 404 && body["error"].is_string(), "{s} {body}");
    let (s, body) = call(addr, "DELETE", "/v1/jobs", Some(TOKEN), None);
    assert!(s == 405 && body["error"].is_string(), "{s} {body}");
    let (s, _) = call(
        addr,
        "GET",
        "/v1/jobs/rest-job/savepoints/feedface",
        Some(TOKEN),
        None,
    );
    assert_eq!(s, 404);
    let huge = vec![b' '; 64 * 1024];
    let (s, body) = call(
        addr,
        "POST",
        "/v1/jobs/rest-job/savepoints",
        Some(TOKEN),
        Some(&huge),
    );
    assert!(s == 413 && body["error"].is_string(), "{s} {body}");
    for bad in [
        &b"{"[..],
        br#"{"target_directory": 5}"#,
        br#"{"target": "/x"}"#,
        br#"{"target_directory": "relative/dir"}"#,
    ] {
        let (s, body) = call(
            addr,
            "POST",
            "/v1/jobs/rest-job/savepoints",
            Some(TOKEN),
            Some(bad),
        );
        assert!(s == 400 && body["error"].is_string(), "{s} {body}");
    }

    // A savepoint, asynchronously; a second one while it runs is refused.
    let target = dir.path().join("sp-1");
    let (s, accepted) = post(
        addr,
        "/v1/jobs/rest-job/savepoints",
        &json!({ "target_directory": target }),
    );
    assert_eq!(s, 202, "{accepted}");
    let id = accepted["request_id"].as_str().unwrap().to_owned();
    let (s, body) = post(addr, "/v1/jobs/rest-job/savepoints", &json!({}));
    assert_eq!(s, 409, "{body}");
    assert!(body["error"].as_str().unwrap().contains(&id), "{body}");
    let done = settled(addr, "rest-job", &id);
    assert_eq!(done["status"], "COMPLETED", "{done}");
    assert_eq!(done["location"], json!(target));
    assert!(target.join("_metadata").exists());
    // No directory: the job's default.
    let (_, accepted) = post(addr, "/v1/jobs/rest-job/savepoints", &json!({}));
    let done = settled(addr, "rest-job", accepted["request_id"].as_str().unwrap());
    let default = Path::new(done["location"].as_str().unwrap());
    assert!(
        default.starts_with(dir.path().join("rest-job").join("savepoints")),
        "{done}"
    );
    assert!(default.join("_metadata").exists());
    let history = get(addr, "/v1/jobs/rest-job/checkpoints")["history"].clone();
    assert!(
        history
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["kind"] == "savepoint" && c["path"] == json!(target)),
        "{history}"
    );

    // Stop with a savepoint: the job ends, its output complete.
    let stop_at = dir.path().join("sp-stop");
    let (s, accepted) = post(
        addr,
        "/v1/jobs/rest-job/stop",
        &json!({ "target_directory": stop_at }),
    );
    assert_eq!(s, 202);
    let done = settled(addr, "rest-job", accepted["request_id"].as_str().unwrap());
    assert_eq!(done["status"], "COMPLETED", "{done}");
    assert_eq!(done["stop"], true);
    wait_until("the job to end", || !control.is_running());
    let out = all_committed(&committed);
    let max = *out.iter().max().expect("output");
    let mut sorted = out.clone();
    sorted.sort_unstable();
    assert_eq!(sorted, (0..=max).collect::<Vec<_>>(), "each record once");
}

/// Runs a control command line against `addr`; its printed answer.
fn cli(addr: SocketAddr, job: &str, args: &[&str], token: Option<&Path>) -> Result<String, String> {
    let url = format!("http://{addr}");
    let mut line = vec!["job".to_owned(), "--rest".into(), url];
    if let Some(t) = token {
        line.extend(["--token-file".into(), t.display().to_string()]);
    }
    line.extend(args.iter().map(|a| (*a).to_owned()));
    Env::control_command_from(job, line)
        .map(|stats| stats.expect("a control command").to_string())
        .map_err(|e| e.to_string())
}

#[test]
fn the_cli_commands_talk_to_the_rest_api() {
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("token");
    std::fs::write(&token, format!("{TOKEN}\n")).unwrap();
    let (control, addr, _) = start(&dir.path().join("chk"), "cli-job");
    let t = Some(token.as_path());

    let refused = cli(addr, "cli-job", &["status"], None).unwrap_err();
    assert!(
        refused.contains("401") && refused.contains("--token-file"),
        "{refused}"
    );
    let listed = cli(addr, "cli-job", &["list"], t).unwrap();
    assert!(
        listed.starts_with("job 'cli-job': RUNNING since 20"),
        "{listed}"
    );
    let status = cli(addr, "cli-job", &["status"], t).unwrap();
    assert!(status.starts_with("job 'cli-job': RUNNING"), "{status}");
    assert!(
        status.contains("Source: CountingSource") || status.contains("[0]"),
        "{status}"
    );
    let json: Value =
        serde_json::from_str(&cli(addr, "cli-job", &["status", "--json"], t).unwrap()).unwrap();
    assert_eq!(json["id"], "cli-job");
    let unknown = cli(addr, "other", &["status"], t).unwrap_err();
    assert!(
        unknown.contains("404") && unknown.contains("no job 'other'"),
        "{unknown}"
    );

    let sp = dir.path().join("sp");
    let taken = cli(addr, "cli-job", &["savepoint", sp.to_str().unwrap()], t).unwrap();
    assert_eq!(
        taken.trim(),
        format!("job 'cli-job': savepoint in {}", sp.display())
    );
    assert!(sp.join("_metadata").exists());
    let default = cli(addr, "cli-job", &["savepoint"], t).unwrap();
    assert!(default.contains("savepoints/savepoint-"), "{default}");

    assert_eq!(
        cli(addr, "cli-job", &["cancel"], t).unwrap().trim(),
        "job 'cli-job': cancelling"
    );
    wait_until("the job to end", || !control.is_running());
    let gone = cli(addr, "cli-job", &["status"], t).unwrap_err();
    assert!(gone.contains("cannot reach the job's REST API"), "{gone}");
}

/// Random requests: methods, paths made of the API's own words and noise,
/// headers and bodies. Every answer is a 4xx or a 2xx, never a 5xx or a
/// hang, and the API still answers afterwards.
#[test]
fn random_and_malformed_requests_only_get_client_errors() {
    let dir = tempfile::tempdir().unwrap();
    let (control, addr, _) = start(dir.path(), "fuzz-job");
    let words = prop::sample::select(vec![
        "v1",
        "jobs",
        "fuzz-job",
        "savepoints",
        "checkpoints",
        "stop",
        "cancel",
        "workers",
        "metrics",
        "",
        "..",
        "%2F",
        "%00",
        "%7Bjob%7D",
        "%C3%A4",
        "?token=x",
        "#",
        "%",
    ]);
    let path = prop::collection::vec(words, 0..6).prop_map(|w| format!("/{}", w.join("/")));
    let method = prop::sample::select(vec!["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD"]);
    let body = prop_oneof![
        Just(Vec::new()),
        prop::collection::vec(any::<u8>(), 0..64),
        Just(br#"{"target_directory": null}"#.to_vec()),
        Just(br#"[1, 2"#.to_vec()),
        Just(vec![b'{'; 20_000]),
    ];
    let token = prop_oneof![Just(Some(TOKEN)), Just(None), Just(Some("nope"))];
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig {
        cases: 300,
        ..ProptestConfig::default()
    });
    runner
        .run(
            &(method, path, body, token),
            |(method, path, body, token)| {
                // `cancel` and `stop` would end the job: keep it running.
                if method == "POST" && (path.ends_with("/cancel") || path.ends_with("/stop")) {
                    return Ok(());
                }
                let (status, _) = call(addr, method, &path, token, Some(&body));
                prop_assert!(
                    (200..300).contains(&status) || (400..500).contains(&status),
                    "{method} {path}: {status}"
                );
                Ok(())
            },
        )
        .unwrap();
    // Requests that are not HTTP at all get a 400 or a closed connection.
    runner
        .run(&prop::collection::vec(any::<u8>(), 1..200), |noise| {
            let answer = exchange(addr, &noise, true);
            let text = String::from_utf8_lossy(&answer);
            prop_assert!(
                answer.is_empty() || text.starts_with("HTTP/1.1 4"),
                "{text:?}"
            );
            Ok(())
        })
        .unwrap();
    assert_eq!(get(addr, "/v1/jobs")["jobs"][0]["state"], "RUNNING");
    control.cancel().unwrap();
    wait_until("the job to end", || !control.is_running());
}

/// A task with two inputs, one of them slow, waits for the slow input's
/// barrier: the checkpoint's alignment time shows it.
#[test]
fn checkpoints_report_how_long_barriers_took_to_align() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = EnvConfig::default()
        .with_parallelism(1)
        .with_batch_size(4)
        .with_channel_capacity(2)
        .with_checkpoint_interval(Duration::from_millis(100))
        .with_checkpoint_dir(dir.path())
        .with_web_addr("127.0.0.1:0".parse().unwrap());
    config.chaining = false;
    let committed: Committed<u64> = Default::default();
    let sink = committed.clone();
    let (control, _done) = spawn_job(
        "aligned",
        move |env| {
            let fast = env.source(counting(None)).uid("fast");
            let slow = env
                .source(counting(None))
                .uid("slow-src")
                .map(|v| {
                    std::thread::sleep(Duration::from_millis(5));
                    v
                })
                .uid("slow");
            fast.union(&[&slow]).sink(memory_sink(&sink)).uid("sink");
        },
        config,
    );
    wait_until("the REST API to listen", || control.web_addr().is_some());
    let addr = control.web_addr().unwrap();
    let aligned = |c: &Value| c["alignment_ms"].as_u64().unwrap();
    wait_until("three checkpoints", || {
        get(addr, "/v1/jobs/aligned/checkpoints")["completed"]
            .as_u64()
            .unwrap()
            >= 3
    });
    let history = get(addr, "/v1/jobs/aligned/checkpoints")["history"].clone();
    let longest = history.as_array().unwrap().iter().map(aligned).max();
    assert!(
        longest.is_some_and(|ms| ms >= 10),
        "the sink waited for the slow input's barrier: {history}"
    );
    control.cancel().unwrap();
    wait_until("the job to end", || !control.is_running());
}

/// An endless job — a counting source, a rebalance, a slightly slow map —
/// serving its API as `config` says; its control and the API's address.
fn start_endless(name: &'static str, config: EnvConfig) -> (JobControl, SocketAddr) {
    let (control, _done) = spawn_job(
        name,
        |env| {
            env.source(counting(None))
                .uid("src")
                .rebalance()
                .map(|v| {
                    std::thread::sleep(Duration::from_millis(1));
                    v
                })
                .uid("slow")
                .sink(eddy_engine::sink::CollectSink::new().0)
                .uid("sink");
        },
        config,
    );
    wait_until("the REST API to listen", || control.web_addr().is_some());
    let addr = control.web_addr().unwrap();
    (control, addr)
}

#[test]
fn subtasks_name_the_worker_they_run_on() {
    let config = EnvConfig::default()
        .with_parallelism(2)
        .with_loopback_workers(2)
        .with_web_addr("127.0.0.1:0".parse().unwrap());
    let (control, addr) = start_endless("placed-job", config);
    let job = || call(addr, "GET", "/v1/jobs/placed-job", None, None).1;
    // The REST API listens before the first run is placed.
    wait_until("the first run to be placed", || {
        job()["vertices"][0]["subtasks"][0]["worker"] != "local"
    });
    for v in job()["vertices"].as_array().unwrap() {
        assert_eq!(
            v["subtasks"],
            json!([
                { "subtask": 0, "worker": "loopback worker 0" },
                { "subtask": 1, "worker": "loopback worker 1" },
            ]),
            "{v}"
        );
    }
    let workers = call(addr, "GET", "/v1/workers", None, None).1;
    assert_eq!(
        workers["workers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|w| (w["id"].as_str().unwrap(), w["slots_used"].as_u64().unwrap()))
            .collect::<Vec<_>>(),
        [("loopback worker 0", 1), ("loopback worker 1", 1)],
        "{workers}"
    );
    control.cancel().unwrap();
}

#[test]
fn with_a_certificate_the_api_speaks_only_https_and_the_cli_trusts_the_given_ca() {
    let dir = tempfile::tempdir().unwrap();
    let names = vec!["127.0.0.1".to_owned(), "localhost".to_owned()];
    let rcgen::CertifiedKey { cert, key_pair } = rcgen::generate_simple_self_signed(names).unwrap();
    let (cert_file, key_file) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    std::fs::write(&cert_file, cert.pem()).unwrap();
    std::fs::write(&key_file, key_pair.serialize_pem()).unwrap();
    let token = dir.path().join("token");
    std::fs::write(&token, TOKEN).unwrap();
    let config = EnvConfig::default()
        .with_web_addr("127.0.0.1:0".parse().unwrap())
        .with_http_token(TOKEN)
        .with_http_tls(&cert_file, &key_file);
    let (control, addr) = start_endless("tls-job", config);

    let plain = exchange(addr, b"GET /v1/jobs HTTP/1.1\r\nHost: x\r\n\r\n", false);
    assert!(
        !String::from_utf8_lossy(&plain).starts_with("HTTP/"),
        "plain HTTP is not answered"
    );
    let status = |ca: Option<&Path>| {
        let mut line: Vec<String> = ["job", "--rest", &format!("https://{addr}")]
            .map(String::from)
            .into();
        line.extend(["--token-file".into(), token.display().to_string()]);
        if let Some(ca) = ca {
            line.extend(["--tls-ca".into(), ca.display().to_string()]);
        }
        line.push("status".into());
        Env::control_command_from("tls-job", line)
            .map(|stats| stats.expect("a control command").to_string())
            .map_err(|e| e.to_string())
    };
    let untrusted = status(None).unwrap_err();
    assert!(untrusted.contains("--tls-ca"), "{untrusted}");
    let trusted = status(Some(&cert_file)).unwrap();
    assert!(trusted.starts_with("job 'tls-job': RUNNING"), "{trusted}");
    control.cancel().unwrap();
    wait_until("the job to end", || !control.is_running());
}

#[test]
fn an_unreadable_certificate_fails_the_job_naming_the_flags() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.pem");
    let env = Env::with_config(
        EnvConfig::default()
            .with_web_addr("127.0.0.1:0".parse().unwrap())
            .with_http_tls(&missing, &missing),
    )
    .unwrap();
    env.source(counting(Some(10)))
        .uid("src")
        .sink(eddy_engine::sink::CollectSink::new().0)
        .uid("sink");
    let err = env.execute("bad-tls").unwrap_err().to_string();
    assert!(
        err.contains("--tls-cert") && err.contains("missing.pem"),
        "{err}"
    );
}
