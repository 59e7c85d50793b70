//! Faults injected at runtime: canned responses, per-serial assignment
//! results, latency, a repeated cursor, and the beta-enrollment switch.

use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::time::Duration;

/// The next `count` responses (to `path`, and `method`, when given) are
/// replaced by this one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResponseFault {
    pub status: u16,
    /// Sent as is: Apple's errors are bare codes such as `T_C_NOT_SIGNED`.
    #[serde(default)]
    pub body: String,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    #[serde(default = "one")]
    pub count: u32,
    /// An Apple path such as `/session` (without the simulator's prefix).
    #[serde(default)]
    pub path: Option<String>,
    #[serde(default)]
    pub method: Option<String>,
}

fn one() -> u32 {
    1
}

impl ResponseFault {
    /// A fault answering `status` with body `code` once, on any path.
    pub fn new(status: u16, code: &str) -> Self {
        ResponseFault {
            status,
            body: code.to_owned(),
            headers: BTreeMap::new(),
            count: 1,
            path: None,
            method: None,
        }
    }

    pub fn on_path(mut self, path: &str) -> Self {
        self.path = Some(path.to_owned());
        self
    }

    pub fn times(mut self, count: u32) -> Self {
        self.count = count;
        self
    }

    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.insert(name.to_owned(), value.to_owned());
        self
    }

    fn matches(&self, method: &str, path: &str) -> bool {
        self.path.as_deref().is_none_or(|p| p == path)
            && self
                .method
                .as_deref()
                .is_none_or(|m| m.eq_ignore_ascii_case(method))
    }
}

/// A share of requests (to `path`, when given) answered with this fault
/// instead of the simulator: Apple's bad minutes. The draw comes from a
/// generator seeded with `seed`, so a run repeats.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RateFault {
    /// 1 to 100.
    pub percent: u8,
    pub status: u16,
    #[serde(default)]
    pub body: String,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    #[serde(default)]
    pub path: Option<String>,
    #[serde(default)]
    pub seed: u64,
}

/// A per-serial assignment result other than `SUCCESS`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum AssignOutcome {
    Failed,
    Throttled,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AssignFault {
    pub serial: String,
    pub result: AssignOutcome,
    /// Reported (protocol 10+) with `THROTTLED`.
    #[serde(default)]
    pub retry_after_seconds: Option<u64>,
    /// How many assignment attempts it affects; absent: until cleared.
    #[serde(default)]
    pub count: Option<u32>,
}

/// Added latency, for one Apple path or (no path) for all.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LatencyFault {
    #[serde(default)]
    pub path: Option<String>,
    pub millis: u64,
}

#[derive(Debug, Default)]
pub struct Faults {
    responses: VecDeque<ResponseFault>,
    assign: HashMap<String, AssignFault>,
    latency: HashMap<Option<String>, u64>,
    repeat_cursor: u32,
    beta_enrollment_off: bool,
    /// The rate fault and its generator's state.
    rate: Option<(RateFault, u64)>,
}

/// What the faults currently pending are, for the admin API.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FaultsView {
    pub responses: Vec<ResponseFault>,
    pub assign: Vec<AssignFault>,
    pub latency: Vec<LatencyFault>,
    pub repeat_cursor: u32,
    pub beta_enrollment_off: bool,
    #[serde(default)]
    pub rate: Option<RateFault>,
}

/// SplitMix64: small, fast and good enough to pick which requests fail.
fn next_random(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

impl Faults {
    /// Sets (or, with `percent` 0, removes) the rate fault.
    pub fn set_rate(&mut self, fault: RateFault) {
        self.rate = (fault.percent > 0).then(|| {
            let seed = fault.seed;
            (fault, seed)
        });
    }

    pub fn add_response(&mut self, fault: ResponseFault) {
        if fault.count > 0 {
            self.responses.push_back(fault);
        }
    }

    /// The fault answering this request instead of the simulator, if any:
    /// a queued one first, else the rate fault's draw.
    pub fn take_response(&mut self, method: &str, path: &str) -> Option<ResponseFault> {
        let Some(at) = self.responses.iter().position(|f| f.matches(method, path)) else {
            return self.draw_rate(path);
        };
        let fault = self.responses.get_mut(at)?;
        fault.count -= 1;
        let out = fault.clone();
        if fault.count == 0 {
            self.responses.remove(at);
        }
        Some(out)
    }

    fn draw_rate(&mut self, path: &str) -> Option<ResponseFault> {
        let (fault, state) = self.rate.as_mut()?;
        if fault.path.as_deref().is_some_and(|p| p != path) {
            return None;
        }
        (next_random(state) % 100 < u64::from(fault.percent)).then(|| ResponseFault {
            status: fault.status,
            body: fault.body.clone(),
            headers: fault.headers.clone(),
            count: 1,
            path: Some(path.to_owned()),
            method: None,
        })
    }

    pub fn add_assign(&mut self, fault: AssignFault) {
        self.assign.insert(fault.serial.clone(), fault);
    }

    /// The forced result of assigning `serial`, spending one use.
    pub fn take_assign(&mut self, serial: &str) -> Option<(AssignOutcome, Option<u64>)> {
        let fault = self.assign.get_mut(serial)?;
        let out = (fault.result, fault.retry_after_seconds);
        match fault.count.as_mut() {
            Some(n) if *n <= 1 => {
                self.assign.remove(serial);
            }
            Some(n) => *n -= 1,
            None => {}
        }
        Some(out)
    }

    pub fn set_latency(&mut self, fault: LatencyFault) {
        if fault.millis == 0 {
            self.latency.remove(&fault.path);
        } else {
            self.latency.insert(fault.path, fault.millis);
        }
    }

    /// The path's own latency, else the global one.
    pub fn latency(&self, path: &str) -> Duration {
        let millis = self
            .latency
            .get(&Some(path.to_owned()))
            .or_else(|| self.latency.get(&None))
            .copied()
            .unwrap_or(0);
        Duration::from_millis(millis)
    }

    pub fn repeat_cursor(&mut self, count: u32) {
        self.repeat_cursor = count;
    }

    pub fn take_repeat_cursor(&mut self) -> bool {
        if self.repeat_cursor == 0 {
            return false;
        }
        self.repeat_cursor -= 1;
        true
    }

    pub fn set_beta_enrollment_off(&mut self, off: bool) {
        self.beta_enrollment_off = off;
    }

    pub fn beta_enrollment_off(&self) -> bool {
        self.beta_enrollment_off
    }

    pub fn clear(&mut self) {
        *self = Faults::default();
    }

    pub fn view(&self) -> FaultsView {
        let mut assign: Vec<_> = self.assign.values().cloned().collect();
        assign.sort_by(|a, b| a.serial.cmp(&b.serial));
        let mut latency: Vec<_> = self
            .latency
            .iter()
            .map(|(path, millis)| LatencyFault {
                path: path.clone(),
                millis: *millis,
            })
            .collect();
        latency.sort_by(|a, b| a.path.cmp(&b.path));
        FaultsView {
            responses: self.responses.iter().cloned().collect(),
            assign,
            latency,
            repeat_cursor: self.repeat_cursor,
            beta_enrollment_off: self.beta_enrollment_off,
            rate: self.rate.as_ref().map(|(f, _)| f.clone()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn response_faults_count_and_match_paths() {
        let mut f = Faults::default();
        f.add_response(ResponseFault::new(403, "T_C_NOT_SIGNED").on_path("/session"));
        f.add_response(ResponseFault::new(500, "").times(2));
        assert_eq!(
            f.take_response("GET", "/session").map(|r| r.status),
            Some(403)
        );
        assert_eq!(
            f.take_response("GET", "/session").map(|r| r.status),
            Some(500)
        );
        assert_eq!(
            f.take_response("POST", "/account").map(|r| r.status),
            Some(500)
        );
        assert_eq!(f.take_response("POST", "/account"), None);
    }

    #[test]
    fn rate_faults_hit_about_their_share_and_repeat_with_the_seed() {
        let fault = |seed| RateFault {
            percent: 25,
            status: 503,
            body: String::new(),
            headers: BTreeMap::from([("Retry-After".to_owned(), "1".to_owned())]),
            path: None,
            seed,
        };
        let hits = |f: &mut Faults| {
            (0..4000)
                .map(|_| f.take_response("POST", "/server/devices").is_some())
                .collect::<Vec<bool>>()
        };
        let (mut a, mut b) = (Faults::default(), Faults::default());
        a.set_rate(fault(7));
        b.set_rate(fault(7));
        let (ha, hb) = (hits(&mut a), hits(&mut b));
        assert_eq!(ha, hb, "the same seed gives the same run");
        let n = ha.iter().filter(|h| **h).count();
        assert!((850..1150).contains(&n), "{n} of 4000");
        // Queued faults come first; a path filter limits the draw.
        a.add_response(ResponseFault::new(500, "X"));
        assert_eq!(
            a.take_response("GET", "/account").map(|r| r.status),
            Some(500)
        );
        let mut only = fault(1);
        only.path = Some("/session".into());
        only.percent = 100;
        a.set_rate(only);
        assert_eq!(a.take_response("GET", "/account"), None);
        assert_eq!(
            a.take_response("GET", "/session").map(|r| r.status),
            Some(503)
        );
        a.set_rate(RateFault {
            percent: 0,
            ..fault(1)
        });
        assert_eq!(a.take_response("GET", "/session"), None);
    }

    #[test]
    fn assign_faults_latency_and_repeats() {
        let mut f = Faults::default();
        f.add_assign(AssignFault {
            serial: "S1".into(),
            result: AssignOutcome::Throttled,
            retry_after_seconds: Some(60),
            count: Some(2),
        });
        assert_eq!(
            f.take_assign("S1"),
            Some((AssignOutcome::Throttled, Some(60)))
        );
        assert!(f.take_assign("S1").is_some());
        assert_eq!(f.take_assign("S1"), None);
        f.set_latency(LatencyFault {
            path: None,
            millis: 5,
        });
        f.set_latency(LatencyFault {
            path: Some("/account".into()),
            millis: 9,
        });
        assert_eq!(f.latency("/account"), Duration::from_millis(9));
        assert_eq!(f.latency("/session"), Duration::from_millis(5));
        f.repeat_cursor(1);
        assert!(f.take_repeat_cursor());
        assert!(!f.take_repeat_cursor());
        f.clear();
        assert_eq!(f.view(), FaultsView::default());
    }
}
