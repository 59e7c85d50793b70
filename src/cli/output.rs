//! Answers as text for people: objects as `key: value` lines, lists of
//! objects (and maps of them, like Apple's devices by serial) as aligned
//! tables. `--json` bypasses all of this and prints the answer as sent.

use serde_json::{Map, Value};

/// The answer as text, or as it came with `--json`.
pub fn print(json: bool, raw: &[u8], value: &Value) {
    if json {
        println!("{}", String::from_utf8_lossy(raw).trim_end());
    } else {
        print!("{}", render(value));
    }
}

/// Renders any JSON answer as text lines.
pub fn render(value: &Value) -> String {
    let mut out = String::new();
    match value {
        Value::Object(map) => object(&mut out, map, 0),
        Value::Array(items) if items.iter().all(Value::is_object) && !items.is_empty() => {
            out.push_str(&table(&rows_of(items)));
        }
        other => {
            out.push_str(&scalar(other));
            out.push('\n');
        }
    }
    out
}

fn object(out: &mut String, map: &Map<String, Value>, indent: usize) {
    let pad = " ".repeat(indent);
    for (key, value) in map {
        match value {
            Value::Object(inner) if !inner.is_empty() && inner.values().all(Value::is_object) => {
                out.push_str(&format!("{pad}{key}:\n"));
                let rows: Vec<(String, &Map<String, Value>)> = inner
                    .iter()
                    .filter_map(|(k, v)| v.as_object().map(|o| (k.clone(), o)))
                    .collect();
                out.push_str(&indented(&table(&keyed_rows(&rows)), indent + 2));
            }
            Value::Object(inner) if !inner.is_empty() => {
                out.push_str(&format!("{pad}{key}:\n"));
                object(out, inner, indent + 2);
            }
            Value::Array(items) if !items.is_empty() && items.iter().all(Value::is_object) => {
                out.push_str(&format!("{pad}{key}:\n"));
                out.push_str(&indented(&table(&rows_of(items)), indent + 2));
            }
            other => out.push_str(&format!("{pad}{key}: {}\n", scalar(other))),
        }
    }
}

/// A value on one line: strings bare, lists comma-separated, the rest JSON.
fn scalar(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Null => "-".into(),
        Value::Array(items) if items.is_empty() => "-".into(),
        Value::Array(items) => items.iter().map(scalar).collect::<Vec<_>>().join(", "),
        Value::Object(map) if map.is_empty() => "-".into(),
        other => other.to_string(),
    }
}

/// A header row and data rows.
pub type Rows = (Vec<String>, Vec<Vec<String>>);

fn rows_of(items: &[Value]) -> Rows {
    let objects: Vec<(Option<String>, &Map<String, Value>)> = items
        .iter()
        .filter_map(|v| v.as_object().map(|o| (None, o)))
        .collect();
    columns(&objects, None)
}

/// Rows of a map of objects: its keys (serial numbers) come first, unless
/// every object repeats its key in a field (Apple's `serial_number`).
fn keyed_rows(rows: &[(String, &Map<String, Value>)]) -> Rows {
    let repeated = rows
        .iter()
        .all(|(k, o)| o.values().any(|v| v.as_str() == Some(k.as_str())));
    let objects: Vec<(Option<String>, &Map<String, Value>)> = rows
        .iter()
        .map(|(k, o)| ((!repeated).then(|| k.clone()), *o))
        .collect();
    columns(&objects, (!repeated).then_some("key"))
}

fn columns(objects: &[(Option<String>, &Map<String, Value>)], key: Option<&str>) -> Rows {
    let mut header: Vec<String> = key.map(|k| vec![k.to_owned()]).unwrap_or_default();
    for (_, o) in objects {
        for k in o.keys() {
            if !header.contains(k) {
                header.push(k.clone());
            }
        }
    }
    let data = objects
        .iter()
        .map(|(k, o)| {
            header
                .iter()
                .enumerate()
                .map(|(i, col)| match (i, key, k) {
                    (0, Some(_), Some(k)) => k.clone(),
                    _ => o.get(col).map(scalar).unwrap_or_else(|| "-".into()),
                })
                .collect()
        })
        .collect();
    (header, data)
}

/// Aligned columns, two spaces apart, headers upper-case.
pub fn table((header, data): &Rows) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in data {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<String>| {
        let mut text = String::new();
        for (i, (cell, w)) in cells.iter().zip(&widths).enumerate() {
            if i + 1 == cells.len() {
                text.push_str(cell);
            } else {
                text.push_str(&format!("{cell:<w$}  "));
            }
        }
        text.trim_end().to_owned() + "\n"
    };
    let mut out = line(header.iter().map(|h| h.to_uppercase()).collect());
    for row in data {
        out.push_str(&line(row.clone()));
    }
    out
}

fn indented(text: &str, indent: usize) -> String {
    let pad = " ".repeat(indent);
    text.lines().map(|l| format!("{pad}{l}\n")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn objects_become_lines_and_lists_become_tables() {
        let v = json!({
            "server_name": "acme",
            "admin_ids": ["a@x", "b@x"],
            "org": {"name": "Acme", "id": 7},
            "devices": {"SN1": {"model": "Mac", "status": "ok"}, "SN2": {"status": "gone"}},
            "serials": {"S1": {"serial_number": "S1", "os": "iOS"}},
            "rows": [{"a": "1", "b": null}],
        });
        // serde_json keeps keys sorted, so the text is stable.
        assert_eq!(
            render(&v),
            "admin_ids: a@x, b@x\n\
             devices:\n  KEY  MODEL  STATUS\n  SN1  Mac    ok\n  SN2  -      gone\n\
             org:\n  id: 7\n  name: Acme\n\
             rows:\n  A  B\n  1  -\n\
             serials:\n  OS   SERIAL_NUMBER\n  iOS  S1\n\
             server_name: acme\n"
        );
    }

    #[test]
    fn a_list_of_objects_is_one_table() {
        let v = json!([{"name": "a", "n": 1}, {"name": "bbb", "n": 22}]);
        assert_eq!(render(&v), "N   NAME\n1   a\n22  bbb\n");
        assert_eq!(render(&json!("x")), "x\n");
    }
}
