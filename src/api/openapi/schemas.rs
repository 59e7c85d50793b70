//! The document's component schemas: every body depd takes or answers.

use super::*;

pub(super) fn schemas() -> Value {
    let count_map = json!({ "type": "object", "additionalProperties": { "type": "integer" } });
    let text = json!({ "type": "string" });
    let str_list =
        json!({ "type": "array", "minItems": 1, "items": { "type": "string", "minLength": 1 } });
    let time = json!({ "type": "string", "format": "date-time" });
    // Holds a character that is not white space (as Rust's `trim` sees it).
    let token_text = json!({
        "type": "string", "minLength": 1,
        "pattern": r"[^\t\n\u000b\f\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]",
    });
    let time_or_null = json!({ "type": "string", "format": "date-time", "nullable": true });
    let sync_status = json!({ "type": "object", "properties": {
                    "auto": { "type": "boolean" }, "phase": text, "running": { "type": "boolean" },
                    "cursor_age_secs": { "type": "integer", "nullable": true },
                    "last_cycle": { "type": "object", "nullable": true },
                    "next_sync": time_or_null,
                    "last_error": { "type": "object", "nullable": true, "properties": {
                        "at": time, "message": text, "apple_status": { "type": "integer" },
                        "apple_code": text, "retry_at": time_or_null,
                    } },
                    "retry_waits_ms": { "type": "object", "additionalProperties": { "type": "integer", "minimum": 0 }, "description": "Milliseconds the name's own requests waited before being sent (for a retry, or behind Apple's Retry-After), by Apple endpoint, since start." },
                    "retries": { "type": "integer", "minimum": 0, "description": "The name's own requests to Apple sent again after a transient failure (5xx, 429, timeout, connection error), since start." },
                    "last_upstream_error": { "type": "object", "nullable": true, "description": "The last of the name's own requests to Apple that failed; next_attempt_at is when it is sent again (absent: given up, or it went through since).", "properties": {
                        "at": time, "endpoint": text, "message": text,
                        "failures": { "type": "integer", "minimum": 1 }, "next_attempt_at": time_or_null,
                    } },
                } });
    json!({
        "Error": {
            "type": "object",
            "required": ["error", "code"],
            "properties": {
                "error": { "type": "string", "description": "A message for people." },
                "code": { "type": "string", "description": "A stable kebab-case code." },
                "apple_status": { "type": "integer", "description": "session-failed: Apple's status." },
                "apple_body": { "description": "session-failed: Apple's answer." },
            },
        },
        "Version": { "type": "object", "required": ["version"], "properties": { "version": text } },
        "Health": { "type": "object", "required": ["status"], "properties": { "status": { "type": "string", "enum": ["ok", "ready"] } } },
        "NotReady": {
            "type": "object",
            "properties": { "status": { "type": "string", "enum": ["not-ready"] }, "error": text, "code": text },
        },
        "DepNames": {
            "type": "object", "required": ["dep_names"],
            "properties": { "dep_names": { "type": "array", "items": text } },
        },
        "Tokens": {
            "type": "object",
            "required": ["consumer_key", "consumer_secret", "access_token", "access_secret", "access_token_expiry"],
            "description": "Every member is required and holds more than white space; other members are ignored.",
            "properties": {
                "consumer_key": token_text, "consumer_secret": token_text, "access_token": token_text,
                "access_secret": token_text, "access_token_expiry": time,
            },
        },
        "Config": {
            "type": "object", "additionalProperties": false,
            "properties": { "base_url": { "type": "string", "description": "http(s) URL with a host and no query or fragment; empty: the configured default." } },
        },
        "Assigner": {
            "type": "object", "required": ["profile_uuid", "modified_at"],
            "properties": { "profile_uuid": text, "modified_at": time },
        },
        "BypassCode": {
            "type": "object", "required": ["raw", "code", "hash"],
            "properties": { "raw": text, "code": text, "hash": { "type": "string", "description": "The escrow key, hex." } },
        },
        "Status": {
            "type": "object",
            "required": ["dep_name", "token_health"],
            "properties": {
                "dep_name": text,
                "base_url": text,
                "token_health": { "type": "string", "enum": ["missing", "ok", "terms-not-signed", "token-rejected", "expired"] },
                "tokens": { "type": "object", "nullable": true, "properties": {
                    "consumer_key": text, "access_token_expiry": time, "days_left": { "type": "integer" },
                } },
                "session": { "type": "object", "properties": {
                    "state": { "type": "string", "enum": ["none", "opening", "active", "failed"] },
                    "since": time_or_null, "opened": { "type": "integer" },
                } },
                "last_error": { "type": "object", "nullable": true, "properties": {
                    "at": time, "message": text, "apple_status": { "type": "integer" },
                    "apple_code": text, "retry_at": time_or_null,
                } },
                "sync": sync_status,
                "devices": { "type": "object", "properties": {
                    "total": { "type": "integer" }, "deleted": { "type": "integer" },
                    "by_op_type": count_map, "by_profile_status": count_map,
                } },
                "assignments": { "type": "object", "properties": {
                    "by_result": count_map, "cooling_down": { "type": "integer" },
                    "gave_up": { "type": "integer" }, "next_pass": time_or_null,
                } },
                "webhook": { "type": "object", "properties": {
                    "urls": { "type": "integer" }, "backlog": { "type": "integer" }, "next_retry": time_or_null,
                } },
            },
        },
        "ManagedProfile": {
            "type": "object", "required": ["name", "profile_uuid", "definition", "history"],
            "properties": {
                "name": text, "profile_uuid": text,
                "definition": { "type": "object", "description": "Apple's profile JSON as given." },
                "history": { "type": "array", "items": { "type": "object", "properties": {
                    "profile_uuid": text, "defined_at": text,
                } } },
            },
        },
        "RuleSet": {
            "type": "object", "additionalProperties": false,
            "properties": {
                "rules": { "type": "array", "items": {
                    "type": "object", "required": ["name"], "additionalProperties": false,
                    "properties": {
                        "name": { "type": "string", "minLength": 1, "maxLength": 128 },
                        "match": { "type": "object", "additionalProperties": false, "properties": {
                            "device_family": str_list, "os": str_list, "color": str_list,
                            "device_assigned_by": str_list, "op_type": str_list,
                            "serials": str_list, "serial_prefix": str_list,
                            "model": { "type": "string", "nullable": true, "minLength": 1 },
                            "description": { "type": "string", "nullable": true, "minLength": 1 },
                        } },
                        "profile": { "type": "string", "nullable": true, "pattern": "^[A-Za-z0-9._-]{1,64}$", "description": "A managed profile's local name." },
                        "profile_uuid": { "type": "string", "nullable": true, "pattern": "^[0-9A-Fa-f-]{32,36}$" },
                        "action": { "type": "string", "nullable": true, "enum": ["none"] },
                        "force": { "type": "boolean" },
                    },
                } },
                "pins": { "type": "object", "additionalProperties": { "type": "string", "minLength": 1, "description": "A managed profile's name or a profile UUID." } },
                "exclude": { "type": "array", "items": { "type": "string", "minLength": 1 } },
            },
        },
        "RulesPreview": {
            "type": "object", "required": ["rules", "moves", "unmatched", "shadowed"],
            "properties": {
                "rules": { "type": "array", "items": { "type": "object", "properties": {
                    "name": text, "devices": { "type": "integer" }, "sample": { "type": "array", "items": text },
                } } },
                "moves": { "type": "array", "items": { "type": "object", "properties": {
                    "from": text, "to": text, "devices": { "type": "integer" },
                } } },
                "unmatched": { "type": "array", "items": text },
                "shadowed": { "type": "array", "items": text },
                "pinned": { "type": "integer" }, "excluded": { "type": "integer" },
                "assigner": { "type": "integer" }, "unchosen": { "type": "integer" },
                "queued": { "type": "integer" }, "cancelled": { "type": "integer" },
            },
        },
        "StatusList": {
            "type": "object", "required": ["dep_names"],
            "properties": {
                "dep_names": { "type": "array", "items": schema_ref("Status") },
                "push_topics": { "type": "array", "description": "With the MDM service on: every push certificate's topic.", "items": {
                    "type": "object", "required": ["topic", "not_after", "days_left", "environment", "state"],
                    "properties": {
                        "topic": text, "not_after": text, "days_left": { "type": "integer" },
                        "environment": { "type": "string", "enum": ["production", "sandbox"] },
                        "state": { "type": "string", "enum": ["connected", "idle", "failed"] },
                        "last_error": { "type": "string", "nullable": true },
                        "failed_since": { "type": "string", "nullable": true },
                        "max_streams": { "type": "integer", "nullable": true },
                        "delivered": { "type": "integer" }, "failed": { "type": "integer" },
                    },
                } },
            },
        },
        "SyncStarted": { "type": "object", "required": ["started"], "properties": { "started": { "type": "boolean" } } },
        "SyncReport": {
            "type": "object",
            "required": ["dep_name", "outcome", "pages", "devices", "assignments", "webhook_backlog"],
            "properties": {
                "dep_name": text,
                "outcome": { "type": "string", "enum": ["complete", "repeated_cursor", "failed", "skipped"] },
                "error": text,
                "pages": { "type": "integer" },
                "devices": count_map,
                "assignments": count_map,
                "webhook_backlog": { "type": "integer" },
            },
        },
        "SyncAll": {
            "type": "object", "required": ["started", "reports", "skipped"],
            "properties": {
                "started": { "type": "array", "items": text },
                "reports": { "type": "array", "items": schema_ref("SyncReport") },
                "skipped": { "type": "array", "items": text },
            },
        },
        "Device": {
            "type": "object",
            "description": "Apple's device JSON as sent (unknown keys kept) plus `depd`.",
            "additionalProperties": true,
            "properties": {
                "serial_number": text,
                "depd": { "type": "object", "properties": {
                    "first_seen": time, "last_event": time, "op_date": time_or_null,
                    "deleted": { "type": "boolean" },
                    "assignment": { "allOf": [schema_ref("Assignment")], "nullable": true },
                    "mdm": { "type": "object", "description": "When the MDM service is on and a device channel authenticated with this serial number: its enrollment IDs (GET /v1/enrollments/{id}).", "properties": {
                        "enrollment_ids": { "type": "array", "items": { "type": "string" } },
                    } },
                } },
            },
        },
        "Devices": {
            "type": "object", "required": ["total", "devices"],
            "properties": { "total": { "type": "integer" }, "devices": { "type": "array", "items": schema_ref("Device") } },
        },
        "Assignment": {
            "type": "object",
            "properties": {
                "serial_number": text, "profile_uuid": text,
                "result": { "type": "string", "enum": ["PENDING", "SUCCESS", "NOT_ACCESSIBLE", "FAILED", "THROTTLED", "CANCELLED"] },
                "attempts": { "type": "integer" }, "failures": { "type": "integer" },
                "last_attempt": time_or_null, "next_retry": time_or_null, "gave_up": { "type": "boolean" },
                "rule": { "type": "string", "nullable": true, "description": "What chose the profile: `pin`, `rule:<name>`, `assigner`." },
            },
        },
        "Assignments": {
            "type": "object", "required": ["assignments", "next"],
            "properties": {
                "assignments": { "type": "array", "items": schema_ref("Assignment") },
                "next": { "type": "string", "nullable": true },
            },
        },
    })
}
