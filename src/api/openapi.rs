//! The OpenAPI 3.0.3 document of the HTTP API, built from the route table
//! (`super::ROUTES`) and kept next to the handlers: parameters, bodies,
//! answers and the error codes each route can answer (as in docs/api.md).
//! Served at `GET /openapi.json`; the same document is committed as
//! `docs/openapi.json` and a test fails when the two drift
//! (`DEPD_WRITE_OPENAPI=1 cargo test --lib openapi` rewrites the file).

use super::ROUTES;
use actix_web::HttpResponse;
use serde_json::{Map, Value, json};
use std::sync::OnceLock;

mod mdm;
mod params;
mod schemas;
use params::*;
use schemas::*;

/// `GET /openapi.json` (no auth).
pub async fn serve() -> HttpResponse {
    static TEXT: OnceLock<String> = OnceLock::new();
    let text = TEXT.get_or_init(|| document().to_string());
    HttpResponse::Ok()
        .content_type("application/json")
        .body(text.as_str())
}

/// Errors every authenticated route can answer.
const AUTH_ERRORS: &[(u16, &[&str])] = &[
    (401, &["unauthorized"]),
    (429, &["too-many-auth-failures"]),
    (500, &["internal"]),
];

/// One operation: what `operation` knows of a route and method.
struct Op {
    summary: &'static str,
    description: &'static str,
    params: Vec<Value>,
    body: Option<Value>,
    answers: Vec<(u16, Value)>,
    errors: Vec<(u16, &'static [&'static str])>,
}

impl Op {
    fn new(summary: &'static str, description: &'static str) -> Self {
        Op {
            summary,
            description,
            params: Vec::new(),
            body: None,
            answers: Vec::new(),
            errors: Vec::new(),
        }
    }

    fn param(mut self, p: Value) -> Self {
        self.params.push(p);
        self
    }

    fn body(mut self, b: Value) -> Self {
        self.body = Some(b);
        self
    }

    fn answer(mut self, status: u16, a: Value) -> Self {
        self.answers.push((status, a));
        self
    }

    fn errors(mut self, e: &[(u16, &'static [&'static str])]) -> Self {
        self.errors.extend_from_slice(e);
        self
    }
}

/// The operation for a route and method, or `None` when the builder does
/// not know it (the tests then fail).
fn operation(path: &str, method: &str) -> Option<Op> {
    const NAME_400: (u16, &[&str]) = (400, &["invalid-dep-name"]);
    const UNKNOWN: (u16, &[&str]) = (404, &["unknown-dep-name"]);
    let op = match (path, method) {
        ("/version", "GET") => Op::new("depd's version", "No auth.")
            .answer(200, json_answer("The version", schema_ref("Version"))),
        ("/healthz", "GET") => Op::new("Liveness", "No auth. The HTTP server answers.")
            .answer(200, json_answer("Alive", schema_ref("Health"))),
        ("/readyz", "GET") => Op::new(
            "Readiness",
            "No auth. Storage is open and the actors run; not while starting or shutting down.",
        )
        .answer(200, json_answer("Ready", schema_ref("Health")))
        .answer(
            503,
            json_answer(
                "Starting or shutting down (`code` = `not-ready`)",
                schema_ref("NotReady"),
            ),
        ),
        ("/metrics", "GET") => Op::new(
            "Prometheus metrics",
            "No auth. Text exposition format 0.0.4; every metric is listed in docs/operations.md.",
        )
        .answer(200, text_answer("The metrics", "text/plain")),
        ("/openapi.json", "GET") => Op::new("This OpenAPI document", "No auth.").answer(
            200,
            json_answer("The OpenAPI 3.0.3 document", json!({ "type": "object" })),
        ),
        ("/v1/dep_names", "GET") => Op::new(
            "List DEP names",
            "Every known name (stored, declared in the configuration, or created by a write), sorted bytewise. Unknown query parameters are 400.",
        )
        .param(json!({
            "name": "dep_name", "in": "query", "required": false,
            "description": "Only these names (repeatable).",
            "style": "form", "explode": true,
            "schema": { "type": "array", "items": dep_name_schema() },
        }))
        .param(limit(1000))
        .param(offset())
        .answer(200, json_answer("A page of names", schema_ref("DepNames")))
        .errors(&[(400, &["bad-query", "invalid-dep-name"])]),
        ("/v1/status", "GET") => Op::new("Status of every name", "")
            .answer(200, json_answer("Every known name's status", schema_ref("StatusList"))),
        ("/v1/status/{name}", "GET") => Op::new("Status of one name", "")
            .param(name_param())
            .answer(200, json_answer("The name's status", schema_ref("Status")))
            .errors(&[NAME_400, UNKNOWN]),
        ("/v1/sync", "POST") => Op::new(
            "Sync every name now",
            "Names without tokens are listed as skipped.",
        )
        .param(flag("wait", "Answer when the cycles are done, with their reports."))
        .answer(200, json_answer("Started, done and skipped names", schema_ref("SyncAll")))
        .errors(&[(400, &["bad-query"])]),
        ("/v1/sync/{name}", "POST") | ("/v1/resync/{name}", "POST") => Op::new(
            if path.starts_with("/v1/resync") {
                "Forget the cursor and sync one name now (full fetch)"
            } else {
                "Sync one name now"
            },
            "A cycle already running is joined (except by resync).",
        )
        .param(name_param())
        .param(flag(
            "wait",
            "Answer when the cycle, the assigner pass and the webhook deliveries are done.",
        ))
        .answer(200, json_answer("The cycle's report (with `wait`)", schema_ref("SyncReport")))
        .answer(202, json_answer("Started (without `wait`)", schema_ref("SyncStarted")))
        .errors(&[
            (400, &["invalid-dep-name", "bad-query"]),
            UNKNOWN,
            (409, &["no-tokens"]),
            (503, &["not-ready"]),
        ]),
        ("/v1/devices/{name}", "GET") => Op::new(
            "The synced inventory",
            "One record per serial: Apple's JSON as sent plus `depd`. Filters are exact matches.",
        )
        .param(name_param())
        .param(query("serial", "Serial number.", json!({ "type": "string" })))
        .param(query("op_type", "Apple's `op_type` (`added`, `modified`, `deleted`).", json!({ "type": "string" })))
        .param(query("profile_status", "Apple's `profile_status`.", json!({ "type": "string" })))
        .param(query("profile_uuid", "Apple's `profile_uuid`.", json!({ "type": "string" })))
        .param(limit(1000))
        .param(offset())
        .answer(200, json_answer("Matching devices", schema_ref("Devices")))
        .errors(&[(400, &["invalid-dep-name", "bad-query"]), UNKNOWN]),
        ("/v1/assignments/{name}", "GET") => Op::new(
            "The assigner's record per serial",
            "In serial order; `next` is the `after` of the following page.",
        )
        .param(name_param())
        .param(query(
            "after",
            "Start after this serial (the `next` of the previous page).",
            json!({ "type": "string", "minLength": 1, "maxLength": 64, "pattern": "^[A-Za-z0-9._-]+$" }),
        ))
        .param(limit(1000))
        .answer(200, json_answer("A page of assignments", schema_ref("Assignments")))
        .errors(&[(400, &["invalid-dep-name", "bad-query"]), UNKNOWN]),
        ("/v1/tokens/{name}", "GET") => Op::new("The name's OAuth tokens", "")
            .param(name_param())
            .answer(200, json_answer("The token JSON", schema_ref("Tokens")))
            .errors(&[NAME_400, (404, &["unknown-dep-name", "no-tokens"])]),
        ("/v1/tokens/{name}", "PUT") => Op::new(
            "Store OAuth tokens",
            "Creates the name. A consumer key different from the stored one is 409 unless `force=1`.",
        )
        .param(name_param())
        .param(flag("force", "Accept a different consumer key."))
        .body(tokens_body())
        .answer(200, json_answer("The stored tokens", schema_ref("Tokens")))
        .errors(&[
            (400, &["invalid-dep-name", "bad-query", "invalid-tokens", "bad-body"]),
            (409, &["consumer-key-mismatch", "too-many-dep-names"]),
            (413, &["body-too-large"]),
        ]),
        ("/v1/config/{name}", "GET") => Op::new("The base URL in effect", "")
            .param(name_param())
            .answer(200, json_answer("The base URL", schema_ref("Config")))
            .errors(&[NAME_400, UNKNOWN]),
        ("/v1/config/{name}", "PUT") => Op::new(
            "Set the base URL",
            "http(s) with a host and no query; a path prefix is kept. Empty: back to the configured default. Creates the name.",
        )
        .param(name_param())
        .body(json!({
            "required": true,
            "content": { "application/json": { "schema": schema_ref("Config") } },
        }))
        .answer(200, json_answer("The base URL now in effect", schema_ref("Config")))
        .errors(&[
            (400, &["invalid-dep-name", "invalid-json", "invalid-base-url", "upstream-not-allowed", "bad-body"]),
            (409, &["too-many-dep-names"]),
            (413, &["body-too-large"]),
        ]),
        ("/v1/profiles/{name}", "GET") => Op::new(
            "The managed profiles",
            "Each managed profile's local name, current UUID, when that version was defined and how many versions there were.",
        )
        .param(name_param())
        .answer(200, json_answer("The profiles", json!({ "type": "object", "required": ["profiles"], "properties": {
            "profiles": { "type": "array", "items": { "type": "object", "properties": {
                "name": { "type": "string" }, "profile_uuid": { "type": "string" },
                "defined_at": { "type": "string", "nullable": true }, "versions": { "type": "integer" },
            } } },
        } })))
        .errors(&[NAME_400, UNKNOWN]),
        ("/v1/profiles/{name}/{profile}", "GET") => Op::new("A managed profile", "Its definition, current UUID and every version at Apple.")
            .param(name_param())
            .param(profile_name_param())
            .answer(200, json_answer("The profile", schema_ref("ManagedProfile")))
            .errors(&[(400, &["invalid-dep-name", "invalid-profile-name"]), (404, &["unknown-dep-name", "unknown-profile"])]),
        ("/v1/profiles/{name}/{profile}", "PUT") => Op::new(
            "Define a managed profile",
            "Apple's profile JSON: `profile_name` and `url` required, `devices` refused, other keys passed to Apple unchanged. depd defines it at Apple (a new version when the definition changed; none when it did not) and answers once Apple did; devices whose rules name the profile move to the new version.",
        )
        .param(name_param())
        .param(profile_name_param())
        .body(json!({ "required": true, "content": { "application/json": { "schema": {
            "type": "object", "required": ["profile_name", "url"],
            "properties": { "profile_name": { "type": "string", "minLength": 1 }, "url": { "type": "string", "minLength": 1 } },
        } } } }))
        .answer(200, json_answer("Defined at Apple", schema_ref("ManagedProfile")))
        .errors(&[
            (400, &["invalid-dep-name", "invalid-profile-name", "invalid-profile", "bad-body"]),
            (404, &["unknown-dep-name"]),
            (409, &["too-many-profiles"]),
            (413, &["body-too-large"]),
            (502, &["apple-error"]),
        ]),
        ("/v1/profiles/{name}/{profile}", "DELETE") => Op::new(
            "Forget a managed profile",
            "Refused while a rule or pin names it. Apple keeps its profiles; devices keep theirs.",
        )
        .param(name_param())
        .param(profile_name_param())
        .answer(200, json_answer("Deleted", json!({ "type": "object", "properties": { "name": { "type": "string" }, "deleted": { "type": "boolean" } } })))
        .errors(&[
            (400, &["invalid-dep-name", "invalid-profile-name"]),
            (404, &["unknown-dep-name", "unknown-profile"]),
            (409, &["profile-in-use"]),
        ]),
        ("/v1/rules/{name}", "GET") => Op::new(
            "The assignment rules",
            "Pins, exclusions and the ordered rules; an empty set when none are stored.",
        )
        .param(name_param())
        .answer(200, json_answer("The rules", schema_ref("RuleSet")))
        .errors(&[NAME_400, UNKNOWN]),
        ("/v1/rules/{name}", "PUT") => Op::new(
            "Replace the assignment rules",
            "Validated as a whole (unknown fields, bad globs, a rule without exactly one of `profile_uuid` or `action: none`): 400 `invalid-rules` naming the rule, nothing changed. Devices whose target profile changes are queued; the others are not touched. An empty set removes the rules. Creates the name.",
        )
        .param(name_param())
        .body(json!({ "required": true, "content": { "application/json": { "schema": schema_ref("RuleSet") } } }))
        .answer(200, json_answer("The stored rules", schema_ref("RuleSet")))
        .errors(&[
            (400, &["invalid-dep-name", "invalid-rules", "bad-body"]),
            (409, &["too-many-dep-names"]),
            (413, &["body-too-large"]),
        ]),
        ("/v1/rules/{name}/preview", "POST") => Op::new(
            "Preview a rule set",
            "What the candidate would choose for the inventory and move if stored; changes nothing.",
        )
        .param(name_param())
        .body(json!({ "required": true, "content": { "application/json": { "schema": schema_ref("RuleSet") } } }))
        .answer(200, json_answer("The preview", schema_ref("RulesPreview")))
        .errors(&[
            (400, &["invalid-dep-name", "invalid-rules", "bad-body"]),
            UNKNOWN,
            (413, &["body-too-large"]),
        ]),
        ("/v1/assigner/{name}", "GET") => Op::new("The assigner profile", "")
            .param(name_param())
            .answer(200, json_answer("The profile", schema_ref("Assigner")))
            .errors(&[NAME_400, (404, &["unknown-dep-name", "no-assigner"])]),
        ("/v1/assigner/{name}", "PUT") => Op::new(
            "Set the assigner profile",
            "`modified_at` changes only when the profile does. Creates the name.",
        )
        .param(name_param())
        .param(uuid_like("profile_uuid", "The profile UUID.", true))
        .answer(200, json_answer("The profile", schema_ref("Assigner")))
        .errors(&[
            (
                400,
                &["invalid-dep-name", "bad-query", "missing-profile-uuid", "invalid-profile-uuid"],
            ),
            (409, &["too-many-dep-names"]),
        ]),
        ("/v1/tokenpki/{name}", "GET") => Op::new(
            "New staging certificate",
            "A new RSA-2048 key and self-signed certificate, stored as the name's staging pair (creating the name). Upload it to the MDM server in Apple Business/School Manager.",
        )
        .param(name_param())
        .param(query(
            "cn",
            "Subject common name (no control characters).",
            json!({
                "type": "string", "minLength": 1, "maxLength": 64, "default": "depserver",
                "pattern": r"^[^\u0000-\u001f\u007f-\u009f]+$",
            }),
        ))
        .param(query(
            "validity_days",
            "Validity in days.",
            json!({ "type": "integer", "minimum": 1, "maximum": 3650, "default": 1 }),
        ))
        .answer(
            200,
            json!({
                "description": "The PEM certificate (`Content-Disposition: attachment; filename=\"<name>.pem\"`)",
                "headers": { "Content-Disposition": { "schema": { "type": "string" } } },
                "content": { "application/x-pem-file": { "schema": { "type": "string" } } },
            }),
        )
        .errors(&[
            (
                400,
                &["invalid-dep-name", "bad-query", "invalid-cn", "invalid-validity-days"],
            ),
            (409, &["too-many-dep-names"]),
        ]),
        ("/v1/tokenpki/{name}", "PUT") => Op::new(
            "Upload Apple's token file (.p7m)",
            "Decrypted with the pair the file is addressed to (by the CMS recipient; staging first for certificates that share issuer and serial). From the staging pair: atomically, the consumer-key check, the staging pair becomes current and the tokens are stored. From the current pair (the yearly renewal, which Apple encrypts to the certificate already registered): the consumer-key check and the tokens are stored; staging is left as it is. Failures change nothing.",
        )
        .param(name_param())
        .param(flag("force", "Accept a different consumer key."))
        .body(json!({
            "required": true,
            "description": "The .p7m from Apple's portal (S/MIME, bare base64, PEM or binary CMS; at most 64 KiB).",
            "content": {
                "application/pkcs7-mime": { "schema": { "type": "string", "format": "binary" } },
                "text/plain": { "schema": { "type": "string" } },
                "application/octet-stream": { "schema": { "type": "string", "format": "binary" } },
            },
        }))
        .answer(200, json_answer("The stored tokens", schema_ref("Tokens")))
        .errors(&[
            (
                400,
                &[
                    "invalid-dep-name",
                    "bad-query",
                    "bad-body",
                    "no-staging-pki",
                    "p7m-not-token-file",
                    "p7m-bad-base64",
                    "p7m-truncated",
                    "p7m-not-cms",
                    "p7m-wrong-certificate",
                    "p7m-decrypt-failed",
                    "p7m-no-message",
                    "p7m-bad-tokens",
                ],
            ),
            (
                409,
                &[
                    "consumer-key-mismatch",
                    "staging-pki-changed",
                    "current-pki-changed",
                ],
            ),
            (413, &["body-too-large"]),
        ]),
        ("/v1/maidjwt/{name}", "GET") => Op::new(
            "MAID JWT",
            "RS256 JWT signed with the name's current key; claims `iss`, `iat`, `jti`, `service_type` = `com.apple.maid`.",
        )
        .param(name_param())
        .param(uuid_like(
            "server_uuid",
            "Server UUID (default: the one known from Apple's `/account`).",
            false,
        ))
        .answer(
            200,
            json!({
                "description": "The JWT",
                "headers": {
                    "X-Server-Uuid": { "schema": { "type": "string" } },
                    "X-Jwt-Jti": { "schema": { "type": "string" } },
                },
                "content": { "application/jwt": { "schema": { "type": "string" } } },
            }),
        )
        .errors(&[
            (400, &["invalid-dep-name", "bad-query", "invalid-server-uuid"]),
            UNKNOWN,
            (409, &["no-current-pki", "server-uuid-unavailable"]),
        ]),
        ("/v1/bypasscode", "GET") => Op::new(
            "Activation Lock bypass code",
            "Random without parameters, else `raw` or `code` converted (not both).",
        )
        .param(query(
            "raw",
            "32 hex digits.",
            json!({ "type": "string", "pattern": "^[0-9A-Fa-f]{32}$" }),
        ))
        .param(query(
            "code",
            "26 symbols of `0123456789ACDEFGHJKLMNPQRTUVWXYZ` (either case), the last one 0-7, in groups of 5-5-4-4-4-4 with dashes, such as `3UM43-PUYVY-QYD1-UVCC-HEHJ-FKA4`, or without any dash.",
            json!({ "type": "string", "pattern": bypass_code_pattern() }),
        ))
        .answer(200, json_answer("The code", schema_ref("BypassCode")))
        .errors(&[(400, &["bad-query", "invalid-bypass-code"])]),
        ("/proxy/{name}/{path}", _) => Op::new(
            "Apple's DEP API through depd's session",
            "Forwards method, path, query, headers and body to the name's base URL with depd's `X-ADM-Auth-Session`; Apple's answer streams back. Replays once on a rejected session.",
        )
        .param(name_param())
        .param(json!({
            "name": "path", "in": "path", "required": true,
            "description": "Apple's path, e.g. `account`, `server/devices`, `profile` (may contain `/`; no `.` or `..` segment, plain or percent-encoded, and no encoded slash).",
            "schema": { "type": "string" },
        }))
        .answer(200, json!({ "description": "Apple's answer, as sent (any status)" }))
        .errors(&[
            (400, &["invalid-dep-name", "invalid-proxy-path", "bad-method"]),
            UNKNOWN,
            (409, &["no-tokens"]),
            (413, &["body-too-large"]),
            (502, &["session-failed", "upstream-unreachable", "upstream-not-allowed", "upstream-failed"]),
            (503, &["not-ready"]),
            (504, &["upstream-timeout"]),
        ]),
        _ => return mdm::operation(path, method),
    };
    Some(op)
}

fn authenticated(path: &str) -> bool {
    path.starts_with("/v1/") || path.starts_with("/proxy/") || path == "/migration"
}

fn operation_json(path: &str, method: &str, op: Op) -> Value {
    let mut errors = op.errors;
    if authenticated(path) {
        errors.extend_from_slice(AUTH_ERRORS);
    }
    // One response per status, its codes merged in order.
    let mut merged: Vec<(u16, Vec<&str>)> = Vec::new();
    for (status, codes) in errors {
        match merged.iter_mut().find(|(s, _)| *s == status) {
            Some((_, list)) => {
                for code in codes {
                    if !list.contains(code) {
                        list.push(code);
                    }
                }
            }
            None => merged.push((status, codes.to_vec())),
        }
    }
    let mut responses = Map::new();
    for (status, answer) in op.answers {
        responses.insert(status.to_string(), answer);
    }
    for (status, codes) in merged {
        // An operation's own answer for a status (the MDM service's
        // NanoMDM shapes) stands.
        if responses.contains_key(&status.to_string()) {
            continue;
        }
        responses.insert(
            status.to_string(),
            json!({
                "description": format!("Error; `code` is one of: {}", codes.join(", ")),
                "content": { "application/json": { "schema": {
                    "allOf": [
                        schema_ref("Error"),
                        { "type": "object", "properties": { "code": { "type": "string", "enum": codes } } },
                    ],
                } } },
            }),
        );
    }
    let id_path: String = path
        .split(['/', '{', '}', '.', '_'])
        .filter(|s| !s.is_empty())
        .map(|s| {
            let mut c = s.chars();
            c.next()
                .map(|f| f.to_ascii_uppercase().to_string() + c.as_str())
                .unwrap_or_default()
        })
        .collect();
    let mut out = Map::new();
    out.insert(
        "operationId".into(),
        format!("{}{id_path}", method.to_ascii_lowercase()).into(),
    );
    out.insert("summary".into(), op.summary.into());
    if !op.description.is_empty() {
        out.insert("description".into(), op.description.into());
    }
    out.insert(
        "tags".into(),
        json!([if path.starts_with("/proxy/") {
            "proxy"
        } else if matches!(path, "/mdm" | "/checkin") || path.starts_with("/authproxy/") {
            "mdm"
        } else if authenticated(path) {
            "v1"
        } else {
            "service"
        }]),
    );
    if !op.params.is_empty() {
        out.insert("parameters".into(), Value::Array(op.params));
    }
    if let Some(body) = op.body {
        out.insert("requestBody".into(), body);
    }
    out.insert("responses".into(), Value::Object(responses));
    out.insert(
        "security".into(),
        if authenticated(path) {
            json!([{ "basicAuth": [] }])
        } else {
            json!([])
        },
    );
    Value::Object(out)
}

/// depd's schemas and the MDM service's.
fn all_schemas() -> Value {
    let mut all = schemas();
    if let Value::Object(map) = &mut all {
        for (name, schema) in mdm::schemas() {
            map.insert(name.to_owned(), schema);
        }
    }
    all
}

/// The whole document.
pub(crate) fn document() -> Value {
    let mut paths = Map::new();
    for (path, methods) in ROUTES {
        let mut item = Map::new();
        for method in *methods {
            if let Some(op) = operation(path, method) {
                item.insert(
                    method.to_ascii_lowercase(),
                    operation_json(path, method, op),
                );
            }
        }
        paths.insert((*path).to_owned(), Value::Object(item));
    }
    json!({
        "openapi": "3.0.3",
        "info": {
            "title": "depd",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "A daemon for Apple's DEP API: token and key management, sync, assignment and a proxy with depd's session. Reference: docs/api.md.",
            "license": { "name": env!("CARGO_PKG_LICENSE") },
        },
        "tags": [
            { "name": "service", "description": "Unauthenticated service endpoints" },
            { "name": "v1", "description": "depd's API (HTTP Basic: user `depserver`, password the API key)" },
            { "name": "proxy", "description": "Apple's DEP API through depd's session" },
            { "name": "mdm", "description": "The MDM service's device endpoints (device identity, no API key)" },
        ],
        "paths": paths,
        "components": {
            "securitySchemes": {
                "basicAuth": {
                    "type": "http", "scheme": "basic",
                    "description": "User `depserver` (or `nanomdm`), password the API key.",
                },
            },
            "schemas": all_schemas(),
        },
    })
}

#[cfg(test)]
mod tests;
