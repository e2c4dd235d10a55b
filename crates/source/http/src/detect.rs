//! `PUT /detect`: the credential-stuffing detector, answering as its original service did.

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;

use axum::body::{Body, Bytes};
use axum::extract::multipart::MultipartRejection;
use axum::extract::{FromRequest, Multipart, Request, State};
use axum::http::{header, StatusCode};
use axum::{Form, Json};
use banhammer_core::Event;
use serde::de::{Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::error::{json_rejection, ApiError};
use crate::state::AppState;

/// The form: multipart form-data, urlencoded, or JSON. A repeated field is the last one; a
/// body that carries no fields (empty, another content type, JSON that is not an object)
/// leaves all three blank.
#[derive(Debug, Default, ToSchema)]
pub(crate) struct DetectForm {
    /// The email the client tried.
    email: Option<String>,
    /// What the client did, e.g. `login` (counted apart per event name).
    event_name: Option<String>,
    /// The client's address.
    ip: Option<String>,
}

impl DetectForm {
    /// Where the field `name` goes; `None` for a name the detector does not read.
    fn slot(&mut self, name: &str) -> Option<&mut Option<String>> {
        match name {
            "email" => Some(&mut self.email),
            "event_name" => Some(&mut self.event_name),
            "ip" => Some(&mut self.ip),
            _ => None,
        }
    }
}

/// Reads fields in order, so that a repeated one is the last, as Rails keeps a repeated key
/// (serde's derive refuses it). `null` is blank.
impl<'de> Deserialize<'de> for DetectForm {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(FormVisitor)
    }
}

struct FormVisitor;

/// Anything but a map carries no fields: Rails files a JSON body that is not an object under
/// `_json`, and the detector sees three blanks.
impl<'de> Visitor<'de> for FormVisitor {
    type Value = DetectForm;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("form fields")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<DetectForm, A::Error> {
        let mut form = DetectForm::default();
        while let Some(name) = map.next_key::<String>()? {
            match form.slot(&name) {
                Some(slot) => *slot = map.next_value()?,
                None => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(form)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<DetectForm, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(DetectForm::default())
    }

    fn visit_unit<E>(self) -> Result<DetectForm, E> {
        Ok(DetectForm::default())
    }

    fn visit_bool<E>(self, _: bool) -> Result<DetectForm, E> {
        Ok(DetectForm::default())
    }

    fn visit_i64<E>(self, _: i64) -> Result<DetectForm, E> {
        Ok(DetectForm::default())
    }

    fn visit_u64<E>(self, _: u64) -> Result<DetectForm, E> {
        Ok(DetectForm::default())
    }

    fn visit_f64<E>(self, _: f64) -> Result<DetectForm, E> {
        Ok(DetectForm::default())
    }

    fn visit_str<E>(self, _: &str) -> Result<DetectForm, E> {
        Ok(DetectForm::default())
    }
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
/// the answer is `true` while it is banned. An IPv6 `ip` counts by its network at `[serve]
/// ipv6_prefix` (/64 unless configured), so that rotating addresses within it is one client;
/// an `ip` in `[serve] allow` is never counted and always answered `false`.
#[utoipa::path(put, path = "/detect", tag = "detector",
    request_body(content = DetectForm, content_type = "multipart/form-data",
        description = "Also application/x-www-form-urlencoded and application/json"),
    responses(
        (status = 200, body = DetectResponse, description = "Whether this request is part of an attack"),
        (status = 422, description = "{\"errors\": {\"email\": [\"can't be blank\"], …}} naming every blank field (all three for a body without form fields, whatever its content type), or {\"errors\": {\"ip\": [\"is invalid\"]}}"),
        (status = 400, description = "A malformed form or JSON body"),
        (status = 413, description = "A body over max_body_bytes, whatever its content type"),
    ))]
pub(crate) async fn detect(
    State(state): State<AppState>,
    req: Request,
) -> Result<Json<DetectResponse>, ApiError> {
    let form = read_form(req).await?;
    let (email, event_name, ip) = validate(form)?;
    if state.settings().allows(ip) {
        return Ok(Json(DetectResponse {
            detected_attack: false,
        }));
    }
    let token = state.settings().clients.token_of(ip);
    let metric = format!("detect:{event_name}");
    let attrs = [("email", email.as_str())];
    let rt = state.runtime();
    let event = Event::new(&token, &metric, rt.now()).with_attrs(&attrs);
    let verdict = rt.observe(&event, false).await?;
    Ok(Json(DetectResponse {
        detected_attack: !verdict.passed,
    }))
}

/// How a body carries the form, by its content type.
#[derive(Debug, Clone, Copy)]
enum Encoding {
    Multipart,
    Urlencoded,
    Json,
    /// No content type, or one the detector does not read: the body carries no fields (Rails
    /// parses no params out of it either).
    Other,
}

impl Encoding {
    fn of(req: &Request) -> Self {
        let content_type = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_ascii_lowercase();
        if content_type.starts_with("multipart/form-data") {
            Encoding::Multipart
        } else if content_type.starts_with("application/x-www-form-urlencoded") {
            Encoding::Urlencoded
        } else if content_type.starts_with("application/json") {
            Encoding::Json
        } else {
            Encoding::Other
        }
    }
}

/// The form in `req`. The body is read whole first, within `[serve] max_body_bytes`, so that
/// an over-size body is 413 whatever its encoding; an empty one carries no fields.
async fn read_form(req: Request) -> Result<DetectForm, ApiError> {
    let encoding = Encoding::of(&req);
    let (parts, body) = req.into_parts();
    // The body limit (DefaultBodyLimit) travels in the extensions.
    let mut whole = Request::new(body);
    *whole.extensions_mut() = parts.extensions.clone();
    let bytes = Bytes::from_request(whole, &()).await.map_err(|e| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::TooLarge
        } else {
            ApiError::BadRequest(e.body_text())
        }
    })?;
    if bytes.is_empty() {
        return Ok(DetectForm::default());
    }
    match encoding {
        Encoding::Multipart => read_multipart(Request::from_parts(parts, Body::from(bytes))).await,
        Encoding::Urlencoded => {
            Form::<DetectForm>::from_request(Request::from_parts(parts, Body::from(bytes)), &())
                .await
                .map(|Form(form)| form)
                .map_err(|e| ApiError::BadRequest(e.body_text()))
        }
        Encoding::Json => Json::<DetectForm>::from_bytes(&bytes)
            .map(|Json(form)| form)
            .map_err(|e| json_rejection(&e)),
        Encoding::Other => Ok(DetectForm::default()),
    }
}

/// Multipart fields in order (at most [`MAX_PARTS`]); a repeated one is the last. Without a
/// boundary the body cannot be split into fields, and carries none (as Rack reads it).
async fn read_multipart(req: Request) -> Result<DetectForm, ApiError> {
    let mut multipart = match Multipart::from_request(req, &()).await {
        Ok(m) => m,
        Err(MultipartRejection::InvalidBoundary(_)) => return Ok(DetectForm::default()),
        Err(e) => return Err(ApiError::BadRequest(e.body_text())),
    };
    let mut form = DetectForm::default();
    let mut parts = 0;
    while let Some(field) = multipart.next_field().await.map_err(multipart_error)? {
        parts += 1;
        if parts > MAX_PARTS {
            return Err(ApiError::BadRequest(format!(
                "more than {MAX_PARTS} form fields"
            )));
        }
        let name = field.name().unwrap_or_default().to_owned();
        let value = field.text().await.map_err(multipart_error)?;
        if let Some(slot) = form.slot(&name) {
            *slot = Some(value);
        }
    }
    Ok(form)
}

fn multipart_error(e: axum::extract::multipart::MultipartError) -> ApiError {
    ApiError::BadRequest(e.body_text())
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
