//! The MDM service's operations: NanoMDM's paths and answer shapes, which
//! are not depd's JSON errors (devices get plain text; the API NanoMDM's
//! result JSON).

use super::*;

fn device_text(description: &str) -> Value {
    text_answer(description, "text/plain")
}

fn api_result(description: &str) -> Value {
    json_answer(description, schema_ref("MdmApiResult"))
}

fn mdm_error(description: &str) -> Value {
    json_answer(description, schema_ref("MdmError"))
}

fn ids_param() -> Value {
    json!({
        "name": "ids", "in": "path", "required": true,
        "description": "Enrollment IDs, comma-separated (percent-encoded as needed).",
        "schema": { "type": "string", "minLength": 1 },
    })
}

fn enrollment_id_param() -> Value {
    json!({
        "name": "id", "in": "path", "required": true,
        "description": "An enrollment ID (`UDID`, `UDID:UserID`, `EnrollmentID`, …), percent-encoded.",
        "schema": { "type": "string", "minLength": 1 },
    })
}

fn device_op(summary: &'static str, description: &'static str) -> Op {
    Op::new(summary, description)
        .body(json!({
            "required": true,
            "content": {
                "application/x-apple-aspen-mdm-checkin": { "schema": { "type": "string", "format": "binary" } },
                "application/x-apple-aspen-mdm": { "schema": { "type": "string", "format": "binary" } },
                "application/octet-stream": { "schema": { "type": "string", "format": "binary" } },
            },
        }))
        .answer(200, json!({
            "description": "Handled: empty, or a plist (the next command, a token, a challenge), or Declarative Management's JSON",
            "content": {
                "application/xml": { "schema": { "type": "string" } },
                "application/json": { "schema": { "type": "string" } },
            },
        }))
        .answer(400, device_text("`Bad Request`: no or untrusted identity certificate, bad signature, undecodable plist, unknown MessageType, report without Status, unresolvable enrollment ID"))
        .answer(404, device_text("`Not Found`: the MDM service (or /checkin) is not enabled"))
        .answer(410, device_text("`Gone`: UserAuthenticate declined"))
        .answer(413, device_text("`Payload Too Large`: beyond `[mdm] body_limit`"))
        .answer(500, device_text("`Internal Server Error`: certificate binding refused, storage failure, Declarative Management or GetToken failure"))
}

fn api_any(summary: &'static str, description: &'static str) -> Op {
    Op::new(summary, description)
        .param(ids_param())
        .answer(200, api_result("Every ID succeeded"))
        .answer(207, api_result("Some IDs failed (see `status`)"))
        .answer(400, api_result("Bad IDs or command"))
        .answer(404, mdm_error("The MDM service is not enabled"))
        .answer(409, api_result("The command UUID was enqueued before"))
        .answer(413, device_text("The body is beyond `[mdm] body_limit`"))
        .answer(
            414,
            mdm_error("The ID list is longer than 48 KiB: use `POST /v1/push`"),
        )
        .answer(500, api_result("Every ID failed, or a top-level error"))
}

pub(super) fn operation(path: &str, method: &str) -> Option<Op> {
    let op = match (path, method) {
        ("/mdm", _) => device_op(
            "MDM check-ins and command reports (devices)",
            "NanoMDM-compatible. Device identity from `Mdm-Signature` (or `[mdm] cert_header`), checked against `[mdm] ca_file`. Check-ins by Content-Type `application/x-apple-aspen-mdm-checkin` unless `[mdm] checkin_endpoint`, when /mdm takes reports only.",
        ),
        ("/checkin", _) => device_op(
            "MDM check-ins (devices), with `[mdm] checkin_endpoint`",
            "As /mdm, check-ins only. 404 unless `[mdm] checkin_endpoint` was set at start.",
        ),
        ("/migration", _) => Op::new(
            "Raw check-ins from another MDM server (NanoMDM's nano2nano)",
            "With `[mdm] migration`. No identity, certificate binding or webhook. Answers as a device check-in.",
        )
        .body(json!({ "required": true, "content": {
            "application/x-apple-aspen-mdm-checkin": { "schema": { "type": "string", "format": "binary" } },
            "application/octet-stream": { "schema": { "type": "string", "format": "binary" } },
        } }))
        .answer(200, json!({ "description": "Handled", "content": { "application/xml": { "schema": { "type": "string" } } } }))
        .answer(400, device_text("Undecodable check-in"))
        .answer(404, mdm_error("The MDM service or migration is not enabled"))
        .answer(410, device_text("UserAuthenticate declined"))
        .answer(413, device_text("Beyond `[mdm] body_limit`"))
        .answer(500, device_text("Storage failure")),
        ("/authproxy/{path}", _) => Op::new(
            "Reverse proxy for Declarative Management assets, device-authenticated",
            "With `[mdm] auth_proxy_url`. The device identity is checked as for /mdm and must be bound to an enrollment, whose ID goes upstream as `X-Enrollment-ID` (with `X-Trace-ID` and `X-Forwarded-For`; `Mdm-Signature` is removed). The rest of the path is appended to the target's.",
        )
        .param(json!({ "name": "path", "in": "path", "required": true, "schema": { "type": "string" } }))
        .answer(200, json!({ "description": "The upstream's answer, as sent (any status)" }))
        .answer(400, device_text("No, bad or untrusted identity (`Bad Request`), or an identity bound to no enrollment (`Unauthorized`)"))
        .answer(404, device_text("The MDM service or the auth proxy is not enabled"))
        .answer(413, device_text("Beyond `[mdm] body_limit`"))
        .answer(500, device_text("Storage failure"))
        .answer(502, json!({ "description": "The upstream did not answer" })),
        ("/v1/enrollments", "GET") => Op::new(
            "List MDM enrollments (depd extension)",
            "One entry per channel that sent a TokenUpdate, in ID order, with a total. Filters combine.",
        )
        .param(query("type", "Enrollment type.", json!({ "type": "string", "enum": ["Device", "User", "User Enrollment (Device)", "User Enrollment", "Shared iPad"] })))
        .param(query("enabled", "Enabled or not.", json!({ "type": "string", "enum": ["true", "false", "1", "0"] })))
        .param(query("topic", "APNs topic.", json!({ "type": "string" })))
        .param(query("seen_since", "Last seen at or after (RFC 3339).", json!({ "type": "string", "format": "date-time" })))
        .param(query("seen_before", "Last seen before (RFC 3339).", json!({ "type": "string", "format": "date-time" })))
        .param(limit(1000))
        .param(offset())
        .answer(200, json_answer("A page of enrollments", schema_ref("Enrollments")))
        .errors(&[(400, &["bad-query"]), (404, &["mdm-disabled"])]),
        ("/v1/enrollments/{id}", "GET") => Op::new(
            "One enrollment: identity, device and user fields, tokens present, queue length, DEP link (depd extension)",
            "",
        )
        .param(enrollment_id_param())
        .answer(200, json_answer("The enrollment", schema_ref("Enrollment")))
        .errors(&[(404, &["mdm-disabled", "unknown-enrollment"])]),
        ("/v1/enrollments/{id}/commands", "GET") => Op::new(
            "An enrollment's queue and results (depd extension)",
            "The outstanding commands in order and the latest result of every command it reported; `raw=1` adds the command and result plists.",
        )
        .param(enrollment_id_param())
        .param(flag("raw", "Include the raw plists."))
        .answer(200, json_answer("Queue and results", schema_ref("EnrollmentCommands")))
        .errors(&[(400, &["bad-query"]), (404, &["mdm-disabled", "unknown-enrollment"])]),
        ("/v1/enrollments/{id}/queue", "DELETE") => Op::new(
            "Drop an enrollment's outstanding commands (depd extension)",
            "Results stay.",
        )
        .param(enrollment_id_param())
        .answer(200, json_answer("Removed", json!({ "type": "object", "properties": { "id": { "type": "string" }, "removed": { "type": "integer" } } })))
        .errors(&[(404, &["mdm-disabled", "unknown-enrollment"])]),
        ("/v1/enqueue/{ids}", _) => api_any(
            "Enqueue a raw command plist (NanoMDM)",
            "Any method (NanoMDM's docs say PUT, its tests POST). `CommandUUID` and `Command.RequestType` are required. `nopush` with any non-empty value (even `0`) suppresses pushes. An empty body means push only; empty with `nopush` is 400. Unknown IDs fail one by one.",
        )
        .param(query("nopush", "Any non-empty value: do not push.", json!({ "type": "string" })))
        .body(json!({ "required": false, "content": {
            "application/xml": { "schema": { "type": "string" } },
            "application/octet-stream": { "schema": { "type": "string", "format": "binary" } },
        } })),
        ("/v1/push/{ids}", _) => api_any(
            "Push to enrollments (NanoMDM)",
            "Any method. One APNs push per ID (duplicates once), through the topic's push certificate; per ID the `apns-id` as `push_result` or NanoMDM's `push_error` text. Answers when all are done or after `[mdm] push_deadline_secs`, with the IDs still in flight under `pending`. The path is limited to 48 KiB (414 beyond): longer lists go to `POST /v1/push`.",
        ),
        ("/v1/push", "POST") => Op::new(
            "Push to enrollments listed in a JSON body (depd extension)",
            "As `/v1/push/{ids}`, without a URL length limit. Replaces NanoMDM's redirect from `/v1/push` to `/v1/push/`.",
        )
        .body(json!({ "required": true, "content": { "application/json": { "schema": {
            "type": "object", "required": ["ids"], "additionalProperties": false,
            "properties": { "ids": { "type": "array", "items": { "type": "string", "minLength": 1 }, "minItems": 1 } },
        } } } }))
        .answer(200, api_result("Every ID succeeded (or is pending)"))
        .answer(207, api_result("Some IDs failed (see `status`)"))
        .answer(400, mdm_error("Not `{\"ids\": [...]}`, or no IDs"))
        .answer(404, mdm_error("The MDM service is not enabled"))
        .answer(413, device_text("The body is beyond `[mdm] body_limit`"))
        .answer(500, api_result("Every ID failed, or a top-level error")),
        ("/v1/pushcert", "PUT") => Op::new(
            "Store an APNs MDM push certificate and its key (NanoMDM)",
            "PEM certificate then unencrypted PEM key (`RSA PRIVATE KEY`, `EC PRIVATE KEY` or `PRIVATE KEY`). The topic is the subject's UID and must start with `com.apple.mgmt`. The key is sealed at rest. The topic's push actor takes the new pair at once; pushes under way finish on the old connection. `environment` picks APNs production or sandbox for this topic (default `[mdm] apns_environment`).",
        )
        .param(query("environment", "`production` or `sandbox`.", json!({ "type": "string", "enum": ["production", "sandbox"] })))
        .body(json!({ "required": true, "content": {
            "application/x-pem-file": { "schema": { "type": "string" } },
            "text/plain": { "schema": { "type": "string" } },
        } }))
        .answer(200, json_answer("Stored", schema_ref("PushCert")))
        .answer(400, mdm_error("Not a certificate and key pair, an unknown PEM block, an encrypted key, or not an MDM topic"))
        .answer(404, mdm_error("The MDM service is not enabled"))
        .answer(413, device_text("Beyond 1 MiB"))
        .answer(500, mdm_error("Storage failure")),
        ("/v1/pushcert", "GET") => Op::new("A stored push certificate's topic and expiry (NanoMDM)", "")
            .param(query("topic", "The push topic.", json!({ "type": "string" })))
            .answer(200, json_answer("Stored", schema_ref("PushCert")))
            .answer(400, mdm_error("`missing required query parameter: topic`"))
            .answer(404, mdm_error("No certificate for the topic, or the MDM service is not enabled"))
            .answer(500, mdm_error("Storage failure")),
        _ => return None,
    };
    Some(op)
}

/// The MDM service's component schemas.
pub(super) fn schemas() -> Vec<(&'static str, Value)> {
    let text = json!({ "type": "string" });
    vec![
        (
            "MdmApiResult",
            json!({ "type": "object", "description": "NanoMDM's API result: every key left out when empty.", "properties": {
                "status": { "type": "object", "additionalProperties": { "type": "object", "properties": {
                    "push_result": text, "push_error": text, "command_error": text,
                } } },
                "no_push": { "type": "boolean" }, "push_error": text, "command_error": text,
                "command_uuid": text, "request_type": text,
                "pending": { "type": "array", "items": text, "description": "depd: IDs whose pushes were still in flight at the deadline." },
            } }),
        ),
        (
            "Enrollment",
            json!({ "type": "object", "required": ["id"], "properties": {
                "id": text, "type": { "type": "string", "nullable": true }, "parent_id": { "type": "string", "nullable": true },
                "device_id": text, "user_id": { "type": "string", "nullable": true }, "topic": text,
                "enabled": { "type": "boolean" }, "token_update_tally": { "type": "integer" },
                "last_seen": text, "last_seen_secs_ago": { "type": "integer" },
                "enrolled_at": { "type": "string", "nullable": true }, "push_token_present": { "type": "boolean" },
                "push_token_invalid": { "type": "object", "nullable": true, "description": "APNs refused the current token (BadDeviceToken, Unregistered): no pushes until a new TokenUpdate.", "properties": { "reason": text, "since": text } },
                "queue_length": { "type": "integer" }, "device": { "type": "object" }, "user": { "type": "object" },
                "dep": { "type": "array", "items": { "type": "object", "properties": { "dep_name": text, "serial_number": text } } },
            } }),
        ),
        (
            "Enrollments",
            json!({ "type": "object", "required": ["total", "enrollments"], "properties": {
                "total": { "type": "integer" }, "enrollments": { "type": "array", "items": schema_ref("Enrollment") },
            } }),
        ),
        (
            "EnrollmentCommands",
            json!({ "type": "object", "required": ["id", "queue", "results"], "properties": {
                "id": text,
                "queue": { "type": "array", "items": { "type": "object" } },
                "results": { "type": "array", "items": { "type": "object" } },
            } }),
        ),
        (
            "MdmError",
            json!({ "type": "object", "required": ["error"], "properties": { "error": text } }),
        ),
        (
            "PushCert",
            json!({ "type": "object", "required": ["not_after", "topic"], "properties": {
                "not_after": { "type": "string", "format": "date-time" }, "topic": text,
            } }),
        ),
    ]
}
