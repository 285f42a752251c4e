//! The OpenAPI document (`GET /openapi.json`, `sluice openapi`) against the route table
//! the router is built from (`GET /v1/admin/routes`): every route is in the document with
//! the access and body the table gives it, and the document has no route the host does
//! not serve. A route added to the router without its annotation fails here.

use std::process::Command;

use serde_json::{Value, json};

use crate::harness::{Host, guest, sluice_binary};

fn host() -> Host {
    Host::builder()
        .plugin("probe", guest("probe"), Some("[configuration]\nname = \"p\"\n"))
        .start()
}

/// The document's spelling of a router path: `{*rest}` is `{rest}`.
fn document_path(router_path: &str) -> String {
    router_path.replace("{*", "{")
}

/// The methods a table entry stands for in the document.
const ANY_METHODS: [&str; 2] = ["get", "post"];

#[test]
fn every_route_is_in_the_openapi_document_as_the_route_table_says() {
    let host = host();
    let served = host.send(host.client().get(host.url("/openapi.json")));
    assert_eq!(served.status, 200, "public, without the token: {}", served.body);
    assert!(
        served
            .header("content-type")
            .is_some_and(|t| t.starts_with("application/json"))
    );
    let document = served.json();
    assert!(
        document["openapi"].as_str().unwrap().starts_with("3.1"),
        "{}",
        document["openapi"]
    );
    let paths = document["paths"].as_object().unwrap();

    let table = host.api_get("/v1/admin/routes").json()["routes"]
        .as_array()
        .unwrap()
        .clone();
    let mut listed = Vec::new();
    for route in &table {
        let path = document_path(route["path"].as_str().unwrap());
        let item = paths
            .get(&path)
            .unwrap_or_else(|| panic!("{path} is served but not in /openapi.json"));
        let methods: Vec<String> = match route["method"].as_str().unwrap() {
            "ANY" => ANY_METHODS.iter().map(|m| m.to_string()).collect(),
            method => vec![method.to_lowercase()],
        };
        for method in methods {
            let operation = &item[&method];
            assert!(
                operation.is_object(),
                "{method} {path} is served but not in /openapi.json"
            );
            listed.push((method.clone(), path.clone()));
            let security = &operation["security"];
            match route["access"].as_str().unwrap() {
                "api-token" => assert_eq!(security, &json!([{ "apiToken": [] }]), "{method} {path}"),
                "api-token-or-ticket" => assert_eq!(
                    security,
                    &json!([{ "apiToken": [] }, { "streamTicket": [] }]),
                    "{method} {path}"
                ),
                "public" => assert!(
                    security.is_null() || security.as_array().unwrap().contains(&json!({})),
                    "{method} {path} is public: {security}"
                ),
                other => panic!("access {other}"),
            }
            let body = &operation["requestBody"]["content"];
            match route["body"].as_str().unwrap() {
                "none" => assert!(body.is_null(), "{method} {path} reads no body: {body}"),
                kind @ ("json-object" | "plugin-upload") => {
                    // A body the host reads itself: its refusals are documented too.
                    let (content_type, reads) = match kind {
                        "json-object" => ("application/json", "reads JSON"),
                        _ => ("application/wasm", "takes an upload"),
                    };
                    assert!(body[content_type].is_object(), "{method} {path}: {body}");
                    for status in ["400", "413", "415"] {
                        assert!(
                            operation["responses"][status].is_object(),
                            "{method} {path} {reads}, so answers {status}"
                        );
                    }
                }
                "raw" => assert!(
                    body.as_object().is_some_and(|content| !content.is_empty()),
                    "{method} {path} passes any body on: {body}"
                ),
                other => panic!("body {other}"),
            }
            if route["access"] != "public" {
                assert!(operation["responses"]["401"].is_object(), "{method} {path} answers 401");
            }
        }
    }

    // And nothing in the document that the host does not serve.
    for (path, item) in paths {
        for method in item.as_object().unwrap().keys() {
            let served = listed.iter().any(|(m, p)| m == method && p == path)
                || table
                    .iter()
                    .any(|route| route["method"] == "ANY" && &document_path(route["path"].as_str().unwrap()) == path);
            assert!(served, "{method} {path} is in /openapi.json but not served");
        }
    }

    // `sluice openapi` prints the same document.
    let printed = Command::new(sluice_binary()).arg("openapi").output().unwrap();
    assert!(printed.status.success(), "{}", String::from_utf8_lossy(&printed.stderr));
    let printed: Value = serde_json::from_slice(&printed.stdout).unwrap();
    assert_eq!(printed, document);
}
