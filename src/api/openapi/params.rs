//! Building blocks of the document: references, answers, parameters
//! and the patterns the server enforces.

use super::*;

pub(super) fn schema_ref(name: &str) -> Value {
    json!({ "$ref": format!("#/components/schemas/{name}") })
}

pub(super) fn json_answer(description: &str, schema: Value) -> Value {
    json!({
        "description": description,
        "content": { "application/json": { "schema": schema } },
    })
}

pub(super) fn text_answer(description: &str, media: &str) -> Value {
    json!({
        "description": description,
        "content": { media: { "schema": { "type": "string" } } },
    })
}

/// A DEP name exactly as `DepName::parse` takes it: 1 to 128 characters,
/// no `/`, `\`, control characters (Unicode Cc) or `..`, and not `.`. The
/// pattern says "no two dots in a row" without look-ahead: each character
/// other than a dot may follow one dot, and one dot may end the name.
pub(crate) fn dep_name_schema() -> Value {
    json!({
        "type": "string", "minLength": 1, "maxLength": crate::domain::name::MAX_NAME_CHARS,
        "pattern": r"^(\.?[^./\\\u0000-\u001f\u007f-\u009f])+\.?$",
    })
}

pub(super) fn name_param() -> Value {
    json!({
        "name": "name", "in": "path", "required": true,
        "description": "The DEP name: 1 to 128 characters, no `/`, `\\`, control characters or `..`, and not `.`.",
        "schema": dep_name_schema(),
    })
}

pub(super) fn query(name: &str, description: &str, schema: Value) -> Value {
    json!({
        "name": name, "in": "query", "required": false,
        "description": description, "schema": schema,
    })
}

pub(super) fn flag(name: &str, description: &str) -> Value {
    query(
        name,
        description,
        json!({ "type": "string", "enum": ["1", "0", "true", "false", "yes", "no", ""] }),
    )
}

pub(super) fn limit(max: u32) -> Value {
    query(
        "limit",
        "Page size.",
        json!({ "type": "integer", "minimum": 0, "maximum": max, "default": 100 }),
    )
}

pub(super) fn offset() -> Value {
    query(
        "offset",
        "Items to skip, at most 2^53 - 1 (the largest integer every JSON client holds exactly).",
        json!({ "type": "integer", "minimum": 0, "maximum": 9_007_199_254_740_991_u64, "default": 0 }),
    )
}

pub(super) fn uuid_like(name: &str, description: &str, required: bool) -> Value {
    json!({
        "name": name, "in": "query", "required": required, "description": description,
        "schema": { "type": "string", "minLength": 1, "maxLength": 64, "pattern": "^[A-Za-z0-9-]+$" },
    })
}

/// The human form of a bypass code, as `BypassCode::from_code` takes it.
pub(super) fn bypass_code_pattern() -> String {
    let s = "[0-9ACDEFGHJKLMNPQRTUVWXYZacdefghjklmnpqrtuvwxyz]";
    format!("^({s}{{25}}[0-7]|{s}{{5}}-{s}{{5}}-{s}{{4}}-{s}{{4}}-{s}{{4}}-{s}{{3}}[0-7])$")
}

pub(super) fn tokens_body() -> Value {
    json!({
        "required": true,
        "description": "The token JSON (no `Content-Type` is required; at most 64 KiB).",
        "content": { "application/json": { "schema": schema_ref("Tokens") } },
    })
}

pub(super) fn profile_name_param() -> Value {
    json!({
        "name": "profile", "in": "path", "required": true,
        "description": "A managed profile's local name: 1 to 64 letters, digits, `.`, `_` or `-`, not shaped like a profile UUID.",
        "schema": { "type": "string", "pattern": "^[A-Za-z0-9._-]{1,64}$" },
    })
}
