//! The command line's side of the REST API: `<job> list|status|savepoint|
//! stop|cancel --rest URL` ask a running job and print a readable answer
//! (or, with `--json`, the API's own JSON).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::Value;

use crate::config::ControlAction;
use crate::error::EngineError;

/// How often a savepoint request is polled.
const POLL_EVERY: Duration = Duration::from_millis(100);

/// A connection to one job's REST API.
pub(crate) struct RestClient {
    base: String,
    token: Option<String>,
    agent: ureq::Agent,
}

/// What a command printed, and the savepoint it took, if any.
pub(crate) struct Answer {
    pub text: String,
    pub savepoint: Option<PathBuf>,
}

impl RestClient {
    /// A client of the API at `base` (e.g. `http://127.0.0.1:8081`, or
    /// `https://…`), sending `token` when given, trusting the CA
    /// certificates of the PEM file `ca` for HTTPS when given (else the
    /// public roots); each request waits up to `timeout`.
    ///
    /// # Errors
    /// [`EngineError::Config`] naming `--tls-ca` when `ca` holds no
    /// readable certificate.
    pub(crate) fn new(
        base: &str,
        token: Option<String>,
        ca: Option<&Path>,
        timeout: Duration,
    ) -> Result<Self, EngineError> {
        let mut config = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(timeout));
        if let Some(ca) = ca {
            config = config.tls_config(
                ureq::tls::TlsConfig::builder()
                    .root_certs(ureq::tls::RootCerts::Specific(Arc::new(trusted(ca)?)))
                    .build(),
            );
        }
        Ok(RestClient {
            base: base.trim_end_matches('/').to_owned(),
            token,
            agent: config.build().into(),
        })
    }

    /// `request` with the bearer token, when there is one.
    fn authorized<B>(&self, request: ureq::RequestBuilder<B>) -> ureq::RequestBuilder<B> {
        match &self.token {
            Some(t) => request.header("Authorization", &format!("Bearer {t}")),
            None => request,
        }
    }

    /// GETs `path`; the JSON answer of a 2xx.
    fn get(&self, path: &str) -> Result<Value, EngineError> {
        let url = format!("{}{path}", self.base);
        answer(&url, self.authorized(self.agent.get(&url)).call())
    }

    /// POSTs `body` (JSON) to `path`; the JSON answer of a 2xx.
    fn post(&self, path: &str, body: &Value) -> Result<Value, EngineError> {
        let url = format!("{}{path}", self.base);
        let request = self
            .agent
            .post(&url)
            .header("Content-Type", "application/json");
        answer(
            &url,
            self.authorized(request).send(body.to_string().as_bytes()),
        )
    }

    /// Runs `action` against job `job`; savepoints are waited for up to
    /// `timeout`.
    pub(crate) fn run(
        &self,
        action: &ControlAction,
        job: &str,
        json: bool,
        timeout: Duration,
    ) -> Result<Answer, EngineError> {
        let job_path = format!("/v1/jobs/{}", encode_segment(job));
        let (value, text, savepoint) = match action {
            ControlAction::List => {
                let v = self.get("/v1/jobs")?;
                let text = list_text(&v);
                (v, text, None)
            }
            ControlAction::Status => {
                let v = self.get(&job_path)?;
                let text = status_text(&v);
                (v, text, None)
            }
            ControlAction::Cancel => {
                let v = self.post(&format!("{job_path}/cancel"), &Value::Null)?;
                (v, format!("job '{job}': cancelling"), None)
            }
            ControlAction::Savepoint(dir) | ControlAction::StopWithSavepoint(dir) => {
                let stop = matches!(action, ControlAction::StopWithSavepoint(_));
                let v = self.savepoint(&job_path, dir.as_deref(), stop, timeout)?;
                let path = v["location"].as_str().map(PathBuf::from);
                let shown = path.as_deref().unwrap_or(Path::new("?")).display();
                let text = format!("job '{job}': savepoint in {shown}");
                (v, text, path)
            }
        };
        let text = if json {
            serde_json::to_string_pretty(&value).unwrap_or_default()
        } else {
            text
        };
        Ok(Answer { text, savepoint })
    }

    /// Requests a savepoint and polls it until it completed or failed.
    fn savepoint(
        &self,
        job_path: &str,
        dir: Option<&Path>,
        stop: bool,
        timeout: Duration,
    ) -> Result<Value, EngineError> {
        let dir = dir
            .map(std::path::absolute)
            .transpose()
            .map_err(|e| EngineError::Rest {
                url: self.base.clone(),
                reason: format!("the savepoint directory: {e}"),
            })?;
        let body = match dir {
            Some(d) => serde_json::json!({ "target_directory": d }),
            None => serde_json::json!({}),
        };
        let endpoint = if stop { "stop" } else { "savepoints" };
        let accepted = self.post(&format!("{job_path}/{endpoint}"), &body)?;
        let id = accepted["request_id"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let poll = format!("{job_path}/savepoints/{id}");
        let deadline = Instant::now() + timeout;
        loop {
            let v = self.get(&poll)?;
            match v["status"].as_str() {
                Some("COMPLETED") => return Ok(v),
                Some("FAILED") => {
                    return Err(EngineError::Rest {
                        url: format!("{}{poll}", self.base),
                        reason: format!(
                            "the savepoint failed: {}",
                            v["failure"].as_str().unwrap_or("no reason given")
                        ),
                    })
                }
                _ if Instant::now() >= deadline => {
                    return Err(EngineError::Rest {
                        url: format!("{}{poll}", self.base),
                        reason: format!(
                        "the savepoint is not done after {}; poll that address to see it finish",
                        humantime::format_duration(timeout)
                    ),
                    })
                }
                _ => std::thread::sleep(POLL_EVERY),
            }
        }
    }
}

/// The JSON of a 2xx answer; the API's reason for anything else.
fn answer(
    url: &str,
    response: Result<ureq::http::Response<ureq::Body>, ureq::Error>,
) -> Result<Value, EngineError> {
    let fail = |reason: String| EngineError::Rest {
        url: url.to_owned(),
        reason,
    };
    let mut response = response.map_err(|e| {
        // rustls's refusal may come wrapped in an I/O error.
        let tls = matches!(e, ureq::Error::Rustls(_) | ureq::Error::Tls(_))
            || e.to_string().contains("certificate");
        let hint = if tls {
            "its TLS certificate is not trusted: pass the CA that signed it (or the certificate itself, when self-signed) with --tls-ca FILE"
        } else {
            "is the job running with --web-addr at that address?"
        };
        fail(format!("cannot reach the job's REST API: {e}; {hint}"))
    })?;
    let status = response.status();
    let body = response.body_mut().read_to_string().unwrap_or_default();
    let parsed: Option<Value> = serde_json::from_str(&body).ok();
    if status.is_success() {
        return parsed.ok_or_else(|| fail(format!("the answer is not JSON: {body}")));
    }
    let reason = parsed
        .as_ref()
        .and_then(|v| v["error"].as_str())
        .map_or(body.clone(), str::to_owned);
    let hint = if status == ureq::http::StatusCode::UNAUTHORIZED {
        "; pass the job's token with --token-file (or EDDY_TOKEN)"
    } else {
        ""
    };
    Err(fail(format!("{status}: {reason}{hint}")))
}

/// The certificates of the PEM file `ca`.
fn trusted(ca: &Path) -> Result<Vec<ureq::tls::Certificate<'static>>, EngineError> {
    let bad = |reason: String| EngineError::config("--tls-ca", ca.display(), reason);
    let pem = std::fs::read(ca).map_err(|e| bad(format!("cannot read it: {e}")))?;
    let certs: Vec<_> = ureq::tls::parse_pem(&pem)
        .filter_map(|item| match item {
            Ok(ureq::tls::PemItem::Certificate(c)) => Some(c.to_owned()),
            _ => None,
        })
        .collect();
    if certs.is_empty() {
        return Err(bad("it holds no PEM certificate".into()));
    }
    Ok(certs)
}

/// A path segment with everything but unreserved characters escaped.
fn encode_segment(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// `ms` since the epoch, as an RFC 3339 time.
fn time(ms: Option<i64>) -> String {
    let Some(ms) = ms.and_then(|m| u64::try_from(m).ok()) else {
        return "?".into();
    };
    humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_millis(ms)).to_string()
}

fn list_text(v: &Value) -> String {
    let jobs = v["jobs"].as_array().map(Vec::as_slice).unwrap_or_default();
    if jobs.is_empty() {
        return "no jobs".into();
    }
    jobs.iter()
        .map(|j| {
            format!(
                "job '{}': {} since {}",
                j["name"].as_str().unwrap_or("?"),
                j["state"].as_str().unwrap_or("?"),
                time(j["started_at_ms"].as_i64())
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn status_text(v: &Value) -> String {
    let up = v["started_at_ms"]
        .as_i64()
        .and_then(|ms| u64::try_from(ms).ok())
        .and_then(|ms| {
            SystemTime::now()
                .duration_since(UNIX_EPOCH + Duration::from_millis(ms))
                .ok()
        })
        .map(|d| humantime::format_duration(Duration::from_secs(d.as_secs())).to_string())
        .unwrap_or_else(|| "?".into());
    let mut lines = vec![format!(
        "job '{}': {} since {} (up {up}); restarts {}; checkpoints {} completed, {} failed",
        v["name"].as_str().or(v["job"].as_str()).unwrap_or("?"),
        v["state"].as_str().unwrap_or("?"),
        time(v["started_at_ms"].as_i64()),
        v["restarts"],
        v["checkpoints_completed"],
        v["checkpoints_failed"],
    )];
    let latest = v["checkpoints"].as_array().and_then(|c| c.last());
    lines.push(match latest {
        Some(c) => format!(
            "latest {} {}: {} ({} ms, {} bytes, at {})",
            c["kind"].as_str().unwrap_or("checkpoint"),
            c["id"],
            c["path"].as_str().unwrap_or("?"),
            c["duration_ms"],
            c["bytes"],
            time(c["completed_at_ms"].as_i64())
        ),
        None => "no completed checkpoint yet".into(),
    });
    for vertex in v["vertices"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
    {
        let operators: Vec<&str> = vertex["operators"]
            .as_array()
            .map(|o| o.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        let percent = |k: &str| (vertex[k].as_f64().unwrap_or(0.0) * 100.0).round();
        lines.push(format!(
            "  [{}] {} ×{}: {} records/s; busy {}%, backpressured {}%, idle {}%; watermark {}",
            vertex["id"],
            operators.join(" → "),
            vertex["parallelism"],
            vertex["records_per_second"],
            percent("busy"),
            percent("backpressured"),
            percent("idle"),
            vertex["watermark_ms"]
                .as_i64()
                .map_or("none".to_owned(), |w| time(Some(w)))
        ));
    }
    for f in v["failures"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
    {
        lines.push(format!(
            "  failed at {}: {}",
            time(f["at_ms"].as_i64()),
            f["error"].as_str().unwrap_or("?")
        ));
    }
    lines.join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ca_file_without_certificates_is_refused_naming_the_flag() {
        let dir = tempfile::tempdir().unwrap();
        let empty = dir.path().join("ca.pem");
        std::fs::write(&empty, "not a certificate").unwrap();
        let base = "https://127.0.0.1:1";
        for ca in [empty, dir.path().join("missing.pem")] {
            let Err(err) = RestClient::new(base, None, Some(&ca), Duration::from_secs(1)) else {
                panic!("{} was accepted", ca.display());
            };
            assert!(err.to_string().contains("--tls-ca"), "{err}");
        }
    }

    #[test]
    fn job_names_are_escaped_in_paths() {
        assert_eq!(encode_segment("fraud-detection_2.a"), "fraud-detection_2.a");
        assert_eq!(encode_segment("a b/c"), "a%20b%2Fc");
    }

    #[test]
    fn an_unreachable_api_says_where_and_what_to_check() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let client = RestClient::new(
            &format!("http://127.0.0.1:{port}/"),
            None,
            None,
            Duration::from_secs(2),
        )
        .unwrap();
        let err = client
            .run(&ControlAction::Status, "j", false, Duration::from_secs(1))
            .err()
            .expect("nothing listens there");
        let text = err.to_string();
        assert!(
            text.contains(&format!("127.0.0.1:{port}/v1/jobs/j")),
            "{text}"
        );
        assert!(text.contains("--web-addr"), "{text}");
    }
}
