//! `PUT /detect`: the credential-stuffing detector, answering as its original service did.

use std::collections::BTreeMap;
use std::net::IpAddr;

use axum::extract::{FromRequest, Multipart, Request, State};
use axum::http::header;
use axum::{Form, Json};
use banhammer_core::Event;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::error::{json_rejection, ApiError};
use crate::state::AppState;

/// The form: multipart form-data, urlencoded, or JSON.
#[derive(Debug, Default, Deserialize, ToSchema)]
pub(crate) struct DetectForm {
    /// The email the client tried.
    #[serde(default)]
    email: Option<String>,
    /// What the client did, e.g. `login` (counted apart per event name).
    #[serde(default)]
    event_name: Option<String>,
    /// The client's address.
    #[serde(default)]
    ip: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct DetectResponse {
    /// True while the IP is banned for credential stuffing.
    detected_attack: bool,
}

/// Longest field accepted, in bytes (an email is at most 320).
const MAX_FIELD: usize = 320;
/// Most multipart fields read.
const MAX_PARTS: usize = 16;

/// `PUT /detect`: per IP and event name, more than `IP_REQUESTS_LIMIT` requests or more than
/// `IP_EMAILS_LIMIT` distinct emails within `SAMPLE_PERIOD` ban the IP for `IP_BAN_TIME`;
/// the answer is `true` while it is banned.
#[utoipa::path(put, path = "/detect", tag = "detector",
    request_body(content = DetectForm, content_type = "multipart/form-data",
        description = "Also application/x-www-form-urlencoded and application/json"),
    responses(
        (status = 200, body = DetectResponse),
        (status = 422, description = "{\"errors\": {\"email\": [\"can't be blank\"], …}} naming every blank field, or {\"errors\": {\"ip\": [\"is invalid\"]}}"),
        (status = 415, description = "Not a form or JSON"),
    ))]
pub(crate) async fn detect(
    State(state): State<AppState>,
    req: Request,
) -> Result<Json<DetectResponse>, ApiError> {
    let form = read_form(req).await?;
    let (email, event_name, ip) = validate(form)?;
    let token = ip.to_string();
    let metric = format!("detect:{event_name}");
    let attrs = [("email", email.as_str())];
    let rt = state.runtime();
    let event = Event::new(&token, &metric, rt.now()).with_attrs(&attrs);
    let verdict = rt.observe(&event, false).await?;
    Ok(Json(DetectResponse {
        detected_attack: !verdict.passed,
    }))
}

async fn read_form(req: Request) -> Result<DetectForm, ApiError> {
    let content_type = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_ascii_lowercase();
    if content_type.starts_with("multipart/form-data") {
        let mut multipart = Multipart::from_request(req, &())
            .await
            .map_err(|e| ApiError::BadRequest(e.body_text()))?;
        let mut form = DetectForm::default();
        let mut parts = 0;
        while let Some(field) = multipart
            .next_field()
            .await
            .map_err(|e| multipart_error(&e))?
        {
            parts += 1;
            if parts > MAX_PARTS {
                return Err(ApiError::BadRequest(format!(
                    "more than {MAX_PARTS} form fields"
                )));
            }
            let name = field.name().unwrap_or_default().to_owned();
            let value = field.text().await.map_err(|e| multipart_error(&e))?;
            match name.as_str() {
                "email" => form.email = Some(value),
                "event_name" => form.event_name = Some(value),
                "ip" => form.ip = Some(value),
                _ => {}
            }
        }
        Ok(form)
    } else if content_type.starts_with("application/x-www-form-urlencoded") {
        let Form(form) = Form::<DetectForm>::from_request(req, &())
            .await
            .map_err(|e| ApiError::BadRequest(e.body_text()))?;
        Ok(form)
    } else if content_type.starts_with("application/json") {
        let Json(form) = Json::<DetectForm>::from_request(req, &())
            .await
            .map_err(|e| json_rejection(&e))?;
        Ok(form)
    } else {
        Err(ApiError::UnsupportedMediaType(
            "send multipart/form-data, application/x-www-form-urlencoded or application/json"
                .to_owned(),
        ))
    }
}

fn multipart_error(e: &axum::extract::multipart::MultipartError) -> ApiError {
    if e.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
        ApiError::TooLarge
    } else {
        ApiError::BadRequest(e.body_text())
    }
}

/// Every blank field is named, and only those; an IP that does not parse is invalid.
fn validate(form: DetectForm) -> Result<(String, String, IpAddr), ApiError> {
    let mut errors: BTreeMap<&'static str, Vec<&'static str>> = BTreeMap::new();
    let mut field = |name: &'static str, value: Option<String>| {
        let value = value.map(|v| v.trim().to_owned()).unwrap_or_default();
        if value.is_empty() {
            errors.entry(name).or_default().push("can't be blank");
        } else if value.len() > MAX_FIELD {
            errors.entry(name).or_default().push("is too long");
        }
        value
    };
    let email = field("email", form.email).to_lowercase();
    let event_name = field("event_name", form.event_name);
    let ip_text = field("ip", form.ip);
    let ip = ip_text.parse::<IpAddr>().ok().map(|ip| ip.to_canonical());
    if ip.is_none() && !errors.contains_key("ip") {
        errors.entry("ip").or_default().push("is invalid");
    }
    match ip {
        Some(ip) if errors.is_empty() => Ok((email, event_name, ip)),
        _ => Err(ApiError::Fields(errors)),
    }
}
