//! `PUT /detect` bodies ("Real logs and captures" issue, items 11 and 12), as the original
//! service (a Rails app) reads them: a body that carries no form fields, whatever its content
//! type or none, is a 422 naming all three blank; a repeated field is the last one, in every
//! encoding; an over-size body is 413 with a JSON error, in every encoding.

use serde_json::{json, Value};

use super::{seed_example, start, Server, StatusCode};

impl Server {
    /// A `PUT /detect` with this content type (none if `None`) and body, as sent.
    async fn put_detect(&self, content_type: Option<&str>, body: &str) -> (StatusCode, Value) {
        let mut req = self.http.put(format!("{}/detect", self.base));
        if let Some(ct) = content_type {
            req = req.header("content-type", ct);
        }
        let r = req.body(body.to_owned()).send().await.unwrap();
        (r.status(), r.json().await.unwrap_or(Value::Null))
    }
}

/// A multipart body with one text part per field, in order, and its content type.
fn multipart(fields: &[(&str, &str)]) -> (String, String) {
    let mut body = String::new();
    for (name, value) in fields {
        body.push_str(&format!(
            "--XyZ\r\ncontent-disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n"
        ));
    }
    body.push_str("--XyZ--\r\n");
    (body, "multipart/form-data; boundary=XyZ".to_owned())
}

fn all_blank() -> Value {
    json!({"errors": {
        "email": ["can't be blank"],
        "event_name": ["can't be blank"],
        "ip": ["can't be blank"],
    }})
}

#[tokio::test]
async fn a_body_without_form_fields_names_all_three_blank() {
    let s = start("", |_| {}).await;
    let form = "email=a%40b.c&event_name=login&ip=192.0.2.1";
    let cases: [(Option<&str>, &str); 10] = [
        (None, ""),
        // A body the service cannot read as form fields is ignored, as Rails ignores it.
        (None, form),
        (Some("text/plain"), form),
        (Some("application/octet-stream"), "\u{0}\u{1}garbage"),
        (Some("application/json"), ""),
        (Some("application/x-www-form-urlencoded"), ""),
        (Some("multipart/form-data; boundary=XyZ"), ""),
        // Multipart without a boundary cannot be split into fields (Rack reads none).
        (Some("multipart/form-data"), form),
        // JSON that is not an object carries no fields (Rails puts it under `_json`).
        (Some("application/json"), "[1, 2]"),
        (Some("application/json"), "\"192.0.2.1\""),
    ];
    for (content_type, body) in cases {
        let (status, answer) = s.put_detect(content_type, body).await;
        assert_eq!(
            (status, answer),
            (StatusCode::UNPROCESSABLE_ENTITY, all_blank()),
            "content type {content_type:?}, body {body:?}"
        );
    }
    // A body of a form type that does not parse is still malformed.
    let (status, answer) = s.put_detect(Some("application/json"), "{\"email\":").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(answer["error"].is_string(), "{answer}");
}

#[tokio::test]
async fn a_repeated_field_is_the_last_one_in_every_encoding() {
    let s = start("", |_| {}).await;
    let invalid_ip = json!({"errors": {"ip": ["is invalid"]}});
    let ok = json!({"detected_attack": false});
    for (first, last, expected) in [
        ("not-an-ip", "192.0.2.5", &ok),
        ("192.0.2.5", "not-an-ip", &invalid_ip),
    ] {
        let fields = [
            ("email", "a@b.c"),
            ("event_name", "login"),
            ("ip", first),
            ("ip", last),
        ];
        let urlencoded = format!("email=a%40b.c&event_name=login&ip={first}&ip={last}");
        let json = format!(
            r#"{{"email": "a@b.c", "event_name": "login", "ip": "{first}", "ip": "{last}"}}"#
        );
        let (multipart, multipart_type) = multipart(&fields);
        for (content_type, body) in [
            ("application/x-www-form-urlencoded", urlencoded.as_str()),
            ("application/json", json.as_str()),
            (multipart_type.as_str(), multipart.as_str()),
        ] {
            let (status, answer) = s.put_detect(Some(content_type), body).await;
            assert_eq!(
                &answer, expected,
                "{content_type}: ip={first} then ip={last}"
            );
            let code = if expected == &ok {
                StatusCode::OK
            } else {
                StatusCode::UNPROCESSABLE_ENTITY
            };
            assert_eq!(status, code, "{content_type}");
        }
    }
    // Every field, not only `ip`: the last email is the one counted, and a later blank blanks.
    let (status, answer) = s
        .put_detect(
            Some("application/x-www-form-urlencoded"),
            "email=a%40b.c&email=&event_name=login&ip=192.0.2.5",
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(answer, json!({"errors": {"email": ["can't be blank"]}}));
}

#[tokio::test]
async fn an_over_size_body_is_413_with_json_in_every_encoding() {
    let s = start(&seed_example(), |c| c.max_body_bytes = 1024).await;
    let long = "x".repeat(4096);
    let urlencoded = format!("email={long}&event_name=login&ip=192.0.2.1");
    let json = format!(r#"{{"email": "{long}", "event_name": "login", "ip": "192.0.2.1"}}"#);
    let (multipart, multipart_type) = multipart(&[("email", &long), ("ip", "192.0.2.1")]);
    for (content_type, body) in [
        (
            Some("application/x-www-form-urlencoded"),
            urlencoded.as_str(),
        ),
        (Some("application/json"), json.as_str()),
        (Some(multipart_type.as_str()), multipart.as_str()),
        (Some("text/plain"), long.as_str()),
        (None, long.as_str()),
    ] {
        let (status, answer) = s.put_detect(content_type, body).await;
        assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{content_type:?}");
        assert_eq!(
            answer,
            json!({"error": "the request body is too large"}),
            "{content_type:?}"
        );
    }
}
