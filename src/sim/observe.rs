//! What clients did, for tests: request counts per endpoint and status,
//! `/session` calls, and a bounded log of the last requests in full.

use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, VecDeque};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EndpointCount {
    pub method: String,
    pub path: String,
    pub status: u16,
    pub count: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stats {
    pub requests: Vec<EndpointCount>,
    pub session_calls: u64,
    pub total: u64,
    /// Requests answered with an injected fault.
    #[serde(default)]
    pub faults_served: u64,
    /// Requests that arrived before the deadline of a `Retry-After` the
    /// simulator had sent for the same path.
    #[serde(default)]
    pub early_requests: u64,
}

impl Stats {
    /// Requests to `method path`, whatever their status.
    pub fn count(&self, method: &str, path: &str) -> u64 {
        self.requests
            .iter()
            .filter(|c| c.method == method && c.path == path)
            .map(|c| c.count)
            .sum()
    }

    /// Requests to `method path` answered with `status`.
    pub fn count_status(&self, method: &str, path: &str, status: u16) -> u64 {
        self.requests
            .iter()
            .filter(|c| c.method == method && c.path == path && c.status == status)
            .map(|c| c.count)
            .sum()
    }
}

/// One request as received (Apple path, without the simulator's prefix).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoggedRequest {
    pub method: String,
    pub path: String,
    pub query: String,
    pub headers: Vec<(String, String)>,
    /// UTF-8 (lossy), cut at 64 KiB.
    pub body: String,
}

impl LoggedRequest {
    /// The first value of a header, by case-insensitive name.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

pub const BODY_LOG_LIMIT: usize = 64 * 1024;

#[derive(Debug)]
pub struct Observer {
    counts: BTreeMap<(String, String, u16), u64>,
    session_calls: u64,
    total: u64,
    faults_served: u64,
    early_requests: u64,
    /// Per path: no request before this instant (from a `Retry-After`).
    deadlines: BTreeMap<String, std::time::Instant>,
    log: VecDeque<LoggedRequest>,
    log_size: usize,
}

impl Observer {
    pub fn new(log_size: usize) -> Self {
        Observer {
            counts: BTreeMap::new(),
            session_calls: 0,
            total: 0,
            faults_served: 0,
            early_requests: 0,
            deadlines: BTreeMap::new(),
            log: VecDeque::new(),
            log_size,
        }
    }

    pub fn log(&mut self, request: LoggedRequest) {
        if self.log_size == 0 {
            return;
        }
        if self.log.len() == self.log_size {
            self.log.pop_front();
        }
        self.log.push_back(request);
    }

    pub fn count(&mut self, method: &str, path: &str, status: u16) {
        *self
            .counts
            .entry((method.to_owned(), path.to_owned(), status))
            .or_default() += 1;
        self.total += 1;
        if path == "/session" {
            self.session_calls += 1;
        }
    }

    /// A request arrived for `path`: early if a `Retry-After` sent for
    /// that path has not run out.
    pub fn arrived(&mut self, path: &str, at: std::time::Instant) {
        if self.deadlines.get(path).is_some_and(|d| at < *d) {
            self.early_requests += 1;
        }
    }

    /// A fault answered a request for `path`; `retry_after` is the
    /// `Retry-After` it carried, when in seconds.
    pub fn fault_served(&mut self, path: &str, retry_after: Option<u64>, at: std::time::Instant) {
        self.faults_served += 1;
        if let Some(secs) = retry_after {
            let until = at + std::time::Duration::from_secs(secs);
            let deadline = self.deadlines.entry(path.to_owned()).or_insert(until);
            *deadline = (*deadline).max(until);
        }
    }

    pub fn stats(&self) -> Stats {
        Stats {
            requests: self
                .counts
                .iter()
                .map(|((method, path, status), count)| EndpointCount {
                    method: method.clone(),
                    path: path.clone(),
                    status: *status,
                    count: *count,
                })
                .collect(),
            session_calls: self.session_calls,
            total: self.total,
            faults_served: self.faults_served,
            early_requests: self.early_requests,
        }
    }

    pub fn requests(&self) -> Vec<LoggedRequest> {
        self.log.iter().cloned().collect()
    }

    pub fn reset(&mut self) {
        self.counts.clear();
        self.session_calls = 0;
        self.total = 0;
        self.faults_served = 0;
        self.early_requests = 0;
        self.deadlines.clear();
        self.log.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_and_bounded_log() {
        let mut o = Observer::new(2);
        o.count("GET", "/session", 200);
        o.count("GET", "/session", 401);
        o.count("POST", "/server/devices", 200);
        let s = o.stats();
        assert_eq!(s.session_calls, 2);
        assert_eq!(s.count("GET", "/session"), 2);
        assert_eq!(s.count_status("GET", "/session", 401), 1);
        assert_eq!(s.total, 3);
        for path in ["/a", "/b", "/c"] {
            o.log(LoggedRequest {
                method: "GET".into(),
                path: path.into(),
                query: String::new(),
                headers: vec![("User-Agent".into(), "x".into())],
                body: String::new(),
            });
        }
        let log = o.requests();
        assert_eq!(log.len(), 2);
        assert_eq!(log[0].path, "/b");
        assert_eq!(log[0].header("user-agent"), Some("x"));
        o.reset();
        assert_eq!(o.stats(), Stats::default());
        assert!(o.requests().is_empty());
    }
}
