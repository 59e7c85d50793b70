//! Assignment rules: which enrollment profile each device of a DEP name
//! should have, by what it is. Runtime-free: the rule set as the API takes
//! it, its validation, and the compiled form that chooses a device's
//! target.
//!
//! Order of decision for a serial: the exclude list (never assigned), then
//! a pin, then the first rule whose every `match` key holds, then the
//! name's NanoDEP assigner profile when set (the implicit last rule).
//! Text matches ignore case; `model` and `description` are globs with `*`
//! (any run of characters) and `?` (one character).

use serde::{Deserialize, Serialize};
use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap, HashSet};

/// Longest glob and longest list a rule may hold.
const MAX_GLOB: usize = 256;
const MAX_LIST: usize = 10_000;
/// At most this many rules per name.
pub const MAX_RULES: usize = 1_000;

/// A name's rules as `PUT /v1/rules/{name}` takes them.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleSet {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rules: Vec<Rule>,
    /// Serial → a managed profile's name or a profile UUID: overrides the
    /// rules.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub pins: BTreeMap<String, String>,
    /// Serials never assigned (a pin does not override this).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub exclude: Vec<String>,
}

/// One rule: every key present in `match` must hold; then exactly one of
/// `profile_uuid` or `"action": "none"`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    pub name: String,
    #[serde(default, rename = "match")]
    pub matches: Match,
    /// A managed profile, by its local name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub profile: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub profile_uuid: Option<String>,
    /// `"none"`: matching devices are left as they are.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action: Option<String>,
    /// Also take devices whose profile came from elsewhere.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub force: bool,
}

/// What a rule matches on: lists (any value matches) and globs.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Match {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_family: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub os: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub color: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_assigned_by: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub op_type: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub serials: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub serial_prefix: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

/// A rule set that does not hold together; `rule` names the rule (or pin)
/// at fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}{message}", rule.as_ref().map(|r| format!("{r}: ")).unwrap_or_default())]
pub struct RuleError {
    pub rule: Option<String>,
    pub message: String,
}

fn err(rule: impl Into<String>, message: impl Into<String>) -> RuleError {
    RuleError {
        rule: Some(rule.into()),
        message: message.into(),
    }
}

/// Whether `s` looks like an enrollment profile UUID: 32 hex digits,
/// dashes allowed between them.
pub fn looks_like_uuid(s: &str) -> bool {
    let hex: Vec<u8> = s.bytes().filter(|b| *b != b'-').collect();
    hex.len() == 32 && hex.iter().all(u8::is_ascii_hexdigit)
}

/// The attributes of a device that rules look at, borrowed from its JSON
/// where it holds no escapes (reading a million devices allocates little).
/// Matching ignores case without lower-casing them; only the serial is
/// lower-cased, by [`DeviceAttrs::normalized`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct DeviceAttrs<'a> {
    #[serde(default, rename = "serial_number")]
    pub serial: String,
    #[serde(default, borrow)]
    pub device_family: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    pub model: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    pub os: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    pub description: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    pub color: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    pub device_assigned_by: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    pub op_type: Option<Cow<'a, str>>,
}

impl<'a> DeviceAttrs<'a> {
    /// Reads the attributes from a device's JSON as Apple sent it.
    pub fn from_json(json: &'a str) -> DeviceAttrs<'a> {
        serde_json::from_str::<DeviceAttrs<'a>>(json)
            .unwrap_or_default()
            .normalized()
    }

    /// The serial trimmed and lower-cased: what [`Compiled::choose`]
    /// expects.
    pub fn normalized(mut self) -> DeviceAttrs<'a> {
        let serial = self.serial.trim();
        if serial.len() != self.serial.len()
            || self.serial.bytes().any(|b| b.is_ascii_uppercase())
            || !self.serial.is_ascii()
        {
            self.serial = serial.to_lowercase();
        }
        self
    }
}

/// Whether `text` equals lower-case `lower`, ignoring case.
fn eq_folded(lower: &str, text: &str) -> bool {
    if text.is_ascii() {
        lower.len() == text.len()
            && lower
                .bytes()
                .zip(text.bytes())
                .all(|(a, b)| a == b.to_ascii_lowercase())
    } else {
        text.to_lowercase() == lower
    }
}

/// A glob with `*` and `?`, matched ignoring case.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Glob(Vec<char>);

impl Glob {
    fn parse(rule: &str, key: &str, pattern: &str) -> Result<Glob, RuleError> {
        if pattern.is_empty() || pattern.chars().count() > MAX_GLOB {
            return Err(err(
                rule,
                format!("match.{key}: a glob of 1 to {MAX_GLOB} characters"),
            ));
        }
        if let Some(c) = pattern
            .chars()
            .find(|c| matches!(c, '[' | ']' | '{' | '}' | '\\'))
        {
            return Err(err(
                rule,
                format!("match.{key}: {pattern:?}: {c:?} is not glob syntax here (only * and ?)"),
            ));
        }
        Ok(Glob(pattern.chars().flat_map(char::to_lowercase).collect()))
    }

    /// Whether `text` matches, ignoring case. Iterative, with one
    /// backtrack point: linear in practice, never exponential.
    fn matches(&self, text: &str) -> bool {
        if text.is_ascii() {
            glob_match(&self.0, text.as_bytes(), |c, b| {
                c == char::from(b.to_ascii_lowercase())
            })
        } else {
            let t: Vec<char> = text.chars().flat_map(char::to_lowercase).collect();
            glob_match(&self.0, &t, |c, x| c == x)
        }
    }
}

fn glob_match<T: Copy>(p: &[char], t: &[T], eq: impl Fn(char, T) -> bool) -> bool {
    let (mut pi, mut ti) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || (p[pi] != '*' && eq(p[pi], t[ti]))) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some((pi, ti));
            pi += 1;
        } else if let Some((sp, st)) = star {
            pi = sp + 1;
            ti = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|c| *c == '*')
}

#[derive(Debug, Clone, Default)]
struct CompiledMatch {
    device_family: Option<Vec<String>>,
    os: Option<Vec<String>>,
    color: Option<Vec<String>>,
    device_assigned_by: Option<Vec<String>>,
    op_type: Option<Vec<String>>,
    serials: Option<HashSet<String>>,
    serial_prefix: Option<Vec<String>>,
    model: Option<Glob>,
    description: Option<Glob>,
}

fn list(
    rule: &str,
    key: &str,
    v: &Option<Vec<String>>,
) -> Result<Option<HashSet<String>>, RuleError> {
    let Some(v) = v else { return Ok(None) };
    if v.is_empty() || v.len() > MAX_LIST {
        return Err(err(
            rule,
            format!("match.{key}: a list of 1 to {MAX_LIST} values"),
        ));
    }
    if v.iter().any(|s| s.trim().is_empty()) {
        return Err(err(rule, format!("match.{key}: an empty value")));
    }
    Ok(Some(v.iter().map(|s| s.trim().to_lowercase()).collect()))
}

fn holds(set: &Option<Vec<String>>, value: Option<&str>) -> bool {
    match set {
        None => true,
        Some(set) => value.is_some_and(|v| set.iter().any(|s| eq_folded(s, v))),
    }
}

fn into_vec(set: HashSet<String>) -> Vec<String> {
    set.into_iter().collect()
}

impl CompiledMatch {
    fn compile(rule: &str, m: &Match) -> Result<CompiledMatch, RuleError> {
        let prefixes = match &m.serial_prefix {
            None => None,
            Some(v) => Some(
                list(rule, "serial_prefix", &Some(v.clone()))?
                    .unwrap_or_default()
                    .into_iter()
                    .collect(),
            ),
        };
        Ok(CompiledMatch {
            device_family: list(rule, "device_family", &m.device_family)?.map(into_vec),
            os: list(rule, "os", &m.os)?.map(into_vec),
            color: list(rule, "color", &m.color)?.map(into_vec),
            device_assigned_by: list(rule, "device_assigned_by", &m.device_assigned_by)?
                .map(into_vec),
            op_type: list(rule, "op_type", &m.op_type)?.map(into_vec),
            serials: list(rule, "serials", &m.serials)?,
            serial_prefix: prefixes,
            model: m
                .model
                .as_deref()
                .map(|g| Glob::parse(rule, "model", g))
                .transpose()?,
            description: m
                .description
                .as_deref()
                .map(|g| Glob::parse(rule, "description", g))
                .transpose()?,
        })
    }

    fn matches(&self, d: &DeviceAttrs<'_>, serial_lc: &str) -> bool {
        holds(&self.device_family, d.device_family.as_deref())
            && holds(&self.os, d.os.as_deref())
            && holds(&self.color, d.color.as_deref())
            && holds(&self.device_assigned_by, d.device_assigned_by.as_deref())
            && holds(&self.op_type, d.op_type.as_deref())
            && self.serials.as_ref().is_none_or(|s| s.contains(serial_lc))
            && self
                .serial_prefix
                .as_ref()
                .is_none_or(|p| p.iter().any(|p| serial_lc.starts_with(p.as_str())))
            && self
                .model
                .as_ref()
                .is_none_or(|g| d.model.as_deref().is_some_and(|m| g.matches(m)))
            && self
                .description
                .as_ref()
                .is_none_or(|g| d.description.as_deref().is_some_and(|m| g.matches(m)))
    }
}

#[derive(Debug, Clone)]
struct CompiledRule {
    name: String,
    m: CompiledMatch,
    /// `None`: `"action": "none"`.
    target: Option<String>,
    force: bool,
}

/// What decides a device's profile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Choice<'a> {
    /// On the exclude list: never assigned.
    Excluded,
    Pinned(&'a str),
    /// The first rule that matched; `uuid` `None` for `"action": "none"`.
    Rule {
        index: usize,
        name: &'a str,
        uuid: Option<&'a str>,
        force: bool,
    },
    /// No rule matched; the name's NanoDEP assigner profile.
    Assigner(&'a str),
    /// No rule matched and no assigner profile is set.
    Nothing,
}

impl Choice<'_> {
    /// The profile the device should get, if any.
    pub fn target(&self) -> Option<&str> {
        match self {
            Choice::Pinned(u) | Choice::Assigner(u) => Some(u),
            Choice::Rule { uuid, .. } => *uuid,
            Choice::Excluded | Choice::Nothing => None,
        }
    }

    /// Whether the device may be taken from a profile that came from
    /// elsewhere: pins and `force` rules do. (The NanoDEP assigner keeps
    /// its own rules: a new device is a candidate whatever it has; a
    /// profile change moves devices that had the old profile or none.)
    pub fn forced(&self) -> bool {
        match self {
            Choice::Pinned(_) => true,
            Choice::Rule { force, .. } => *force,
            Choice::Assigner(_) | Choice::Excluded | Choice::Nothing => false,
        }
    }

    /// What assignment records show as the chooser: `pin`, `rule:<name>`,
    /// `assigner`.
    pub fn label(&self) -> Option<String> {
        match self {
            Choice::Pinned(_) => Some("pin".into()),
            Choice::Rule { name, .. } => Some(format!("rule:{name}")),
            Choice::Assigner(_) => Some("assigner".into()),
            Choice::Excluded | Choice::Nothing => None,
        }
    }
}

/// A validated rule set with the name's assigner profile: what chooses.
#[derive(Debug, Clone, Default)]
pub struct Compiled {
    rules: Vec<CompiledRule>,
    pins: HashMap<String, String>,
    exclude: HashSet<String>,
    assigner: Option<String>,
    /// Every version of the managed profiles: depd's own profiles too.
    managed: HashSet<String>,
}

impl Compiled {
    /// Only the NanoDEP assigner profile (no rules).
    pub fn assigner_only(assigner: Option<&str>) -> Compiled {
        Compiled {
            assigner: assigner.filter(|p| !p.is_empty()).map(str::to_owned),
            ..Compiled::default()
        }
    }

    /// Whether there is anything but the assigner profile.
    pub fn has_rules(&self) -> bool {
        !self.rules.is_empty() || !self.pins.is_empty() || !self.exclude.is_empty()
    }

    pub fn rule_names(&self) -> impl Iterator<Item = &str> {
        self.rules.iter().map(|r| r.name.as_str())
    }

    /// Every profile UUID these rules hand out (depd's own profiles).
    pub fn uuids(&self) -> HashSet<&str> {
        self.rules
            .iter()
            .filter_map(|r| r.target.as_deref())
            .chain(self.pins.values().map(String::as_str))
            .chain(self.assigner.as_deref())
            .chain(self.managed.iter().map(String::as_str))
            .collect()
    }

    /// The device's chooser (`d` [normalized](DeviceAttrs::normalized)).
    pub fn choose(&self, d: &DeviceAttrs<'_>) -> Choice<'_> {
        let serial = d.serial.as_str();
        if self.exclude.contains(serial) {
            return Choice::Excluded;
        }
        if let Some(uuid) = self.pins.get(serial) {
            return Choice::Pinned(uuid);
        }
        if let Some((index, r)) = self
            .rules
            .iter()
            .enumerate()
            .find(|(_, r)| r.m.matches(d, serial))
        {
            return Choice::Rule {
                index,
                name: &r.name,
                uuid: r.target.as_deref(),
                force: r.force,
            };
        }
        match &self.assigner {
            Some(a) => Choice::Assigner(a),
            None => Choice::Nothing,
        }
    }

    /// Whether rule `index` matches the device, ignoring pins, exclusions
    /// and the rules before it (for the preview's shadowed rules).
    pub fn rule_matches(&self, index: usize, d: &DeviceAttrs<'_>) -> bool {
        self.rules
            .get(index)
            .is_some_and(|r| r.m.matches(d, d.serial.as_str()))
    }

    pub fn rule_count(&self) -> usize {
        self.rules.len()
    }
}

impl RuleSet {
    /// Checks the set and compiles it with the name's assigner profile,
    /// without managed profiles.
    pub fn compile(&self, assigner: Option<&str>) -> Result<Compiled, RuleError> {
        self.compile_with(assigner, &super::profiles::Profiles::new())
    }

    /// Whether a rule or a pin names the managed profile `profile`.
    pub fn references(&self, profile: &str) -> bool {
        self.rules
            .iter()
            .any(|r| r.profile.as_deref() == Some(profile))
            || self.pins.values().any(|p| p == profile)
    }

    /// Checks the set and compiles it with the name's assigner profile and
    /// managed profiles (rules and pins may name them).
    pub fn compile_with(
        &self,
        assigner: Option<&str>,
        profiles: &super::profiles::Profiles,
    ) -> Result<Compiled, RuleError> {
        if self.rules.len() > MAX_RULES {
            return Err(RuleError {
                rule: None,
                message: format!("at most {MAX_RULES} rules"),
            });
        }
        let mut names = HashSet::new();
        let mut rules = Vec::with_capacity(self.rules.len());
        for (i, r) in self.rules.iter().enumerate() {
            let label = if r.name.trim().is_empty() {
                format!("rule {}", i + 1)
            } else {
                format!("rule {:?}", r.name)
            };
            if r.name.trim().is_empty() || r.name.len() > 128 {
                return Err(err(label, "a name of 1 to 128 characters is required"));
            }
            if !names.insert(r.name.as_str()) {
                return Err(err(label, "the name is used by an earlier rule"));
            }
            let target = match (&r.profile, &r.profile_uuid, r.action.as_deref()) {
                (None, Some(u), None) => {
                    if !looks_like_uuid(u) {
                        return Err(err(
                            label,
                            format!("profile_uuid {u:?} is not a profile UUID (32 hex digits)"),
                        ));
                    }
                    Some(u.clone())
                }
                (None, None, Some("none")) => None,
                (None, None, Some(other)) => {
                    return Err(err(
                        label,
                        format!("action {other:?}: only \"none\" is known"),
                    ));
                }
                (Some(p), None, None) => match profiles.get(p) {
                    Some(m) => Some(m.profile_uuid.clone()),
                    None => {
                        return Err(err(
                            label,
                            format!(
                                "profile {p:?}: no managed profile by that name (PUT /v1/profiles/{{name}}/{p} first)"
                            ),
                        ));
                    }
                },
                _ => {
                    return Err(err(
                        label,
                        "needs exactly one of profile, profile_uuid or \"action\": \"none\"",
                    ));
                }
            };
            if target.is_none() && r.force {
                return Err(err(label, "force has no meaning with \"action\": \"none\""));
            }
            rules.push(CompiledRule {
                name: r.name.clone(),
                m: CompiledMatch::compile(&label, &r.matches)?,
                target,
                force: r.force,
            });
        }
        let mut pins = HashMap::new();
        for (serial, target) in &self.pins {
            let label = format!("pin {serial:?}");
            if serial.trim().is_empty() {
                return Err(err(label, "an empty serial"));
            }
            let uuid = match profiles.get(target) {
                Some(m) => m.profile_uuid.clone(),
                None if looks_like_uuid(target) => target.clone(),
                None => {
                    return Err(err(
                        label,
                        format!(
                            "{target:?} is neither a managed profile nor a profile UUID (32 hex digits)"
                        ),
                    ));
                }
            };
            pins.insert(serial.trim().to_lowercase(), uuid);
        }
        if self.exclude.iter().any(|s| s.trim().is_empty()) {
            return Err(RuleError {
                rule: Some("exclude".into()),
                message: "an empty serial".into(),
            });
        }
        Ok(Compiled {
            rules,
            pins,
            exclude: self
                .exclude
                .iter()
                .map(|s| s.trim().to_lowercase())
                .collect(),
            assigner: assigner.filter(|p| !p.is_empty()).map(str::to_owned),
            managed: profiles
                .values()
                .flat_map(|m| m.history.iter().map(|v| v.profile_uuid.clone()))
                .collect(),
        })
    }
}

#[cfg(test)]
mod tests;
