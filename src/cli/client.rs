//! The client's HTTP side: where the daemon is, the API key, one request,
//! and turning a failed answer into one clear line.

use super::Connection;
use actix_web::http::Method;
use bytes::Bytes;
use std::time::Duration;

const DEFAULT_URL: &str = "http://127.0.0.1:9001";
/// Apple can take long (a sync cycle, many devices); this is only a bound.
const TIMEOUT: Duration = Duration::from_secs(300);
/// The largest answer read (a device list of a large organization).
const ANSWER_LIMIT: usize = 256 * 1024 * 1024;
/// What Apple expects on its JSON calls (as NanoDEP's scripts send it).
pub const APPLE_JSON: &str = "application/json;charset=UTF8";

#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// The command line is incomplete or wrong (exit status 2).
    #[error("{0}")]
    Usage(String),
    /// The command ran and failed (exit status 1).
    #[error("{0}")]
    Failed(String),
}

impl CliError {
    pub fn exit_code(&self) -> u8 {
        match self {
            CliError::Usage(_) => 2,
            CliError::Failed(_) => 1,
        }
    }
}

/// The daemon's URL and API key, from flags, else depd's environment
/// variables, else NanoDEP's.
pub struct Target {
    url: String,
    api_key: String,
}

impl Target {
    pub fn resolve(
        conn: &Connection,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Target, CliError> {
        let env: Vec<(String, String)> = env.into_iter().collect();
        let var = |key: &str| {
            env.iter()
                .find(|(k, v)| k == key && !v.is_empty())
                .map(|(_, v)| v.clone())
        };
        let url = conn
            .url
            .clone()
            .or_else(|| var("DEPD_URL"))
            .or_else(|| var("BASE_URL"))
            .unwrap_or_else(|| DEFAULT_URL.to_owned());
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            return Err(CliError::Usage(format!(
                "the daemon's URL {url:?} must start with http:// or https://"
            )));
        }
        let api_key = conn
            .api_key
            .clone()
            .or_else(|| var("DEPD_API_KEY"))
            .or_else(|| var("APIKEY"))
            .ok_or_else(|| {
                CliError::Usage(
                    "no API key: give --api-key, or set DEPD_API_KEY (or NanoDEP's APIKEY)".into(),
                )
            })?;
        Ok(Target {
            url: url.trim_end_matches('/').to_owned(),
            api_key,
        })
    }

    pub fn url(&self) -> &str {
        &self.url
    }
}

/// A successful answer.
pub struct Answer {
    pub body: Bytes,
    pub headers: actix_web::http::header::HeaderMap,
}

impl Answer {
    pub fn json(&self) -> Result<serde_json::Value, CliError> {
        serde_json::from_slice(&self.body)
            .map_err(|e| CliError::Failed(format!("the daemon's answer is not JSON: {e}")))
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

pub struct Client {
    target: Target,
    http: awc::Client,
}

impl Client {
    pub fn new(conn: &Connection) -> Result<Client, CliError> {
        let target = Target::resolve(conn, std::env::vars())?;
        let http = awc::Client::builder()
            .timeout(TIMEOUT)
            .add_default_header((
                "User-Agent",
                concat!("depd-cli/", env!("CARGO_PKG_VERSION")),
            ))
            .finish();
        Ok(Client { target, http })
    }

    /// One request to `path` (already encoded); a non-2xx answer is an error.
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<(&'static str, Vec<u8>)>,
    ) -> Result<Answer, CliError> {
        let (status, answer) = self.send_any(method, path, body).await?;
        if !(200..300).contains(&status) {
            return Err(CliError::Failed(failure(status, &answer.body)));
        }
        Ok(answer)
    }

    /// One request whatever the answer's status (NanoMDM's API answers
    /// 207 and 500 with its result JSON): the status and the answer.
    pub async fn send_any(
        &self,
        method: Method,
        path: &str,
        body: Option<(&'static str, Vec<u8>)>,
    ) -> Result<(u16, Answer), CliError> {
        let url = format!("{}{path}", self.target.url);
        let mut req = self
            .http
            .request(method, &url)
            .basic_auth("depserver", &self.target.api_key);
        let sent = match body {
            Some((content_type, body)) => {
                req = req.insert_header(("Content-Type", content_type));
                req.send_body(body).await
            }
            None => req.send().await,
        };
        let mut resp = sent.map_err(|e| {
            CliError::Failed(format!("cannot reach depd at {}: {e}", self.target.url))
        })?;
        let body = resp
            .body()
            .limit(ANSWER_LIMIT)
            .await
            .map_err(|e| CliError::Failed(format!("reading depd's answer from {url}: {e}")))?;
        Ok((
            resp.status().as_u16(),
            Answer {
                body,
                headers: resp.headers().clone(),
            },
        ))
    }

    pub async fn get(&self, path: &str) -> Result<Answer, CliError> {
        self.send(Method::GET, path, None).await
    }
}

/// One line for a failed answer: depd's own errors carry `error` and
/// `code`; anything else came from Apple through the proxy.
fn failure(status: u16, body: &[u8]) -> String {
    if let Ok(v) = serde_json::from_slice::<serde_json::Value>(body)
        && let (Some(error), Some(code)) = (v["error"].as_str(), v["code"].as_str())
    {
        let apple = match (v["apple_status"].as_u64(), v["apple_body"].as_str()) {
            (Some(s), Some(b)) => format!(" (Apple answered {s}: {})", one_line(b)),
            _ => String::new(),
        };
        return format!("{error} [{code}, HTTP {status}]{apple}");
    }
    let text = one_line(&String::from_utf8_lossy(body));
    if text.is_empty() {
        format!("Apple answered HTTP {status}")
    } else {
        format!("Apple answered HTTP {status}: {text}")
    }
}

/// Whitespace collapsed and cut short, so an error stays one line.
fn one_line(text: &str) -> String {
    let line = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if line.chars().count() > 300 {
        format!("{}…", line.chars().take(300).collect::<String>())
    } else {
        line
    }
}

/// Percent-encodes a path segment or query value (names may hold spaces).
pub fn encode(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    for b in raw.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conn(url: Option<&str>, key: Option<&str>) -> Connection {
        Connection {
            url: url.map(Into::into),
            api_key: key.map(Into::into),
            json: false,
        }
    }

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn flags_beat_depd_variables_beat_nanodep_variables() {
        let all = env(&[
            ("DEPD_URL", "http://depd:1"),
            ("BASE_URL", "http://nano:2"),
            ("DEPD_API_KEY", "k1"),
            ("APIKEY", "k2"),
        ]);
        let t = Target::resolve(&conn(Some("http://flag:3/"), Some("k0")), all.clone())
            .expect("target");
        assert_eq!(
            (t.url.as_str(), t.api_key.as_str()),
            ("http://flag:3", "k0")
        );
        let t = Target::resolve(&conn(None, None), all).expect("target");
        assert_eq!(
            (t.url.as_str(), t.api_key.as_str()),
            ("http://depd:1", "k1")
        );
        let t = Target::resolve(
            &conn(None, None),
            env(&[("BASE_URL", "http://nano:2"), ("APIKEY", "k2")]),
        )
        .expect("target");
        assert_eq!(
            (t.url.as_str(), t.api_key.as_str()),
            ("http://nano:2", "k2")
        );
        let t = Target::resolve(&conn(None, Some("k")), env(&[])).expect("target");
        assert_eq!(t.url, DEFAULT_URL);
    }

    #[test]
    fn missing_key_and_bad_url_are_usage_errors() {
        let e = Target::resolve(&conn(None, None), env(&[])).err();
        assert!(matches!(e, Some(CliError::Usage(m)) if m.contains("DEPD_API_KEY")));
        let e = Target::resolve(&conn(Some("ftp://x"), Some("k")), env(&[])).err();
        assert!(matches!(e, Some(CliError::Usage(_))));
    }

    #[test]
    fn failures_read_as_one_line() {
        assert_eq!(
            failure(
                404,
                br#"{"error":"no such DEP name","code":"unknown-dep-name"}"#
            ),
            "no such DEP name [unknown-dep-name, HTTP 404]"
        );
        assert_eq!(
            failure(
                502,
                br#"{"error":"Apple refused","code":"session-failed","apple_status":403,"apple_body":"T_C_NOT_SIGNED\n"}"#
            ),
            "Apple refused [session-failed, HTTP 502] (Apple answered 403: T_C_NOT_SIGNED)"
        );
        assert_eq!(
            failure(400, b"DEVICE_ID_REQUIRED\n"),
            "Apple answered HTTP 400: DEVICE_ID_REQUIRED"
        );
        assert_eq!(failure(500, b""), "Apple answered HTTP 500");
    }

    #[test]
    fn encodes_names_for_paths() {
        assert_eq!(encode("Acme Corp/x"), "Acme%20Corp%2Fx");
        assert_eq!(encode("a-b_c.d~"), "a-b_c.d~");
    }
}
