use super::{ROUTES, document};
use actix_web::{App, test as atest, web};
use serde_json::Value;
use std::collections::BTreeSet;

const COMMITTED: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/openapi.json");
const METHODS: &[&str] = &["GET", "PUT", "POST", "DELETE", "PATCH", "HEAD", "OPTIONS"];

fn pretty(doc: &Value) -> String {
    let mut text = serde_json::to_string_pretty(doc).expect("serializable");
    text.push('\n');
    text
}

#[test]
fn every_route_and_only_those_with_their_methods() {
    let doc = document();
    assert_eq!(doc["openapi"], "3.0.3");
    assert_eq!(doc["info"]["version"], env!("CARGO_PKG_VERSION"));
    let paths = doc["paths"].as_object().expect("paths");
    let in_doc: BTreeSet<(String, String)> = paths
        .iter()
        .flat_map(|(p, item)| {
            let methods = item.as_object().expect("path item");
            methods
                .keys()
                .map(|m| (p.clone(), m.to_ascii_uppercase()))
                .collect::<Vec<_>>()
        })
        .collect();
    let in_table: BTreeSet<(String, String)> = ROUTES
        .iter()
        .flat_map(|(p, ms)| ms.iter().map(|m| ((*p).to_owned(), (*m).to_owned())))
        .collect();
    assert_eq!(in_doc, in_table, "the document and ROUTES differ");
    for ((path, method), op) in paths.iter().flat_map(|(p, item)| {
        item.as_object()
            .into_iter()
            .flatten()
            .map(move |(m, op)| ((p.clone(), m.clone()), op))
    }) {
        let responses = op["responses"].as_object().expect("responses");
        assert!(
            responses.keys().any(|s| s.starts_with('2')),
            "{method} {path}: no success answer"
        );
        let secured = !op["security"].as_array().expect("security").is_empty();
        let needs = path.starts_with("/v1/") || path.starts_with("/proxy/") || path == "/migration";
        assert_eq!(secured, needs, "{method} {path}: security");
        if needs {
            assert!(responses.contains_key("401"), "{method} {path}: no 401");
        }
        for param in op["parameters"].as_array().into_iter().flatten() {
            if param["in"] == "path" {
                let name = param["name"].as_str().expect("name");
                assert!(path.contains(&format!("{{{name}}}")), "{path}: {name}");
            }
        }
    }
    // Every reference resolves.
    let text = doc.to_string();
    let schemas = doc["components"]["schemas"].as_object().expect("schemas");
    for part in text.split("#/components/schemas/").skip(1) {
        let name: String = part.chars().take_while(|c| c.is_alphanumeric()).collect();
        assert!(schemas.contains_key(&name), "dangling $ref {name}");
    }
}

/// `configure` registers exactly the routes and methods of ROUTES:
/// each listed method reaches a handler (its answer is not the router's
/// `not-found`/`method-not-allowed`), other methods do not.
#[actix_web::test]
async fn routes_match_what_configure_registers() {
    use crate::settings::{FlagOverrides, Secret, load};
    let flags = FlagOverrides {
        api_key: Some(Secret::new("k")),
        ..Default::default()
    };
    let env = vec![("DEPD_SYNC__AUTO".to_owned(), "false".to_owned())];
    let settings = std::sync::Arc::new(load(None, env, &flags).expect("settings"));
    let store = crate::store::Store::memory();
    let registry = crate::actors::Registry::new(
        store,
        settings.clone(),
        std::sync::Arc::new(crate::domain::clock::SystemClock),
        Vec::new(),
    );
    let directory = registry.directory();
    let registry = actix::Actor::start(registry);
    let state = web::Data::new(super::super::AppState::new(
        registry,
        directory,
        settings,
        std::sync::Arc::new(crate::domain::clock::SystemClock),
    ));
    let app = atest::init_service(
        App::new()
            .app_data(state)
            .configure(super::super::configure),
    )
    .await;
    let auth = format!("Basic {}", openssl::base64::encode_block(b"depserver:k"));
    for (pattern, methods) in ROUTES {
        let uri = pattern
            .replace("{name}", "no-such-name")
            .replace("{path}", "account")
            .replace("{ids}", "A,B")
            .replace("{id}", "A");
        for method in METHODS {
            let req = atest::TestRequest::default()
                .method(method.parse().expect("method"))
                .uri(&uri)
                .insert_header(("Authorization", auth.as_str()))
                .to_request();
            let resp = atest::call_service(&app, req).await;
            let status = resp.status().as_u16();
            let body = atest::read_body(resp).await;
            let code = serde_json::from_slice::<Value>(&body)
                .ok()
                .and_then(|v| v["code"].as_str().map(str::to_owned));
            let routed = match code.as_deref() {
                Some("not-found") | Some("method-not-allowed") => false,
                Some(_) => true,
                // The router's own answers always carry a `code`; the MDM
                // service's (NanoMDM's shapes) never do.
                None => true,
            };
            assert_eq!(
                routed,
                methods.contains(method),
                "{method} {uri}: {status} {code:?}; ROUTES and configure differ"
            );
        }
    }
}

/// docs/openapi.json is the document the code builds.
/// `DEPD_WRITE_OPENAPI=1 cargo test --lib openapi` rewrites it.
#[test]
fn committed_document_is_current() {
    let built = pretty(&document());
    if std::env::var_os("DEPD_WRITE_OPENAPI").is_some() {
        std::fs::write(COMMITTED, &built).expect("write docs/openapi.json");
        return;
    }
    let committed = std::fs::read_to_string(COMMITTED).unwrap_or_default();
    let parsed: Value = serde_json::from_str(&committed).unwrap_or(Value::Null);
    assert!(
        parsed == document() && committed == built,
        "docs/openapi.json differs from the document the code builds; \
         regenerate it with `DEPD_WRITE_OPENAPI=1 cargo test --lib openapi` and commit it"
    );
}
