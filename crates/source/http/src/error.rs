//! `ApiError`: every failure as a status and a JSON body; client faults are not logged,
//! internal ones are, once.

use std::collections::BTreeMap;

use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequest, FromRequestParts, Path, Query, Request};
use axum::http::request::Parts;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use banhammer_runtime::RuntimeError;
use serde::de::DeserializeOwned;
use serde_json::json;

/// A failed request.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ApiError {
    /// 400: the body is not what the route takes.
    #[error("{0}")]
    BadRequest(String),
    /// 401: the admin token is missing or wrong.
    #[error("a valid admin bearer token is required")]
    Unauthorized,
    /// 429: too many failed admin authentications from this client address.
    #[error("too many failed admin authentications from this address: retry in {retry_after} s")]
    TooManyRequests {
        /// Seconds until the address may try again (the `Retry-After` header).
        retry_after: u64,
    },
    /// 404.
    #[error("{0}")]
    NotFound(String),
    /// 405: the route exists, not with this method.
    #[error("{0}")]
    MethodNotAllowed(String),
    /// 409: the request contradicts the configuration (banning a client of `[serve] allow`).
    #[error("{0}")]
    Conflict(String),
    /// 413.
    #[error("the request body is too large")]
    TooLarge,
    /// 415.
    #[error("{0}")]
    UnsupportedMediaType(String),
    /// 422 with one message: the request is well formed but cannot be acted on.
    #[error("{0}")]
    Unprocessable(String),
    /// 422 with messages per field (the detector's shape).
    #[error("invalid fields")]
    Fields(BTreeMap<&'static str, Vec<&'static str>>),
    /// 503: the decision was made but could not be stored, or the store is unreachable.
    #[error("{0}")]
    Unavailable(String),
    /// 500: a fault of this service (the shared store answered what it cannot understand).
    #[error("{0}")]
    Internal(String),
    /// 501: the route is not available with this store.
    #[error("{0}")]
    NotImplemented(String),
}

impl From<RuntimeError> for ApiError {
    fn from(e: RuntimeError) -> Self {
        match e {
            RuntimeError::Event(e) => ApiError::Unprocessable(e.to_string()),
            RuntimeError::Unsupported(why) => ApiError::NotImplemented(why),
            RuntimeError::Protocol(why) => ApiError::Internal(why),
            other => ApiError::Unavailable(other.to_string()),
        }
    }
}

impl ApiError {
    /// The status it is answered with.
    pub(crate) fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized => StatusCode::UNAUTHORIZED,
            ApiError::TooManyRequests { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::Unprocessable(_) | ApiError::Fields(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
            ApiError::NotImplemented(_) => StatusCode::NOT_IMPLEMENTED,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        if status.is_server_error() {
            tracing::error!(error = %banhammer_core::Escaped(&self), "Request failed.");
        }
        let body = match &self {
            ApiError::Fields(errors) => json!({ "errors": errors }),
            other => json!({ "error": other.to_string() }),
        };
        let mut response = (status, Json(body)).into_response();
        match self {
            ApiError::Unauthorized => {
                response.headers_mut().insert(
                    header::WWW_AUTHENTICATE,
                    header::HeaderValue::from_static("Bearer"),
                );
            }
            ApiError::TooManyRequests { retry_after } => {
                response
                    .headers_mut()
                    .insert(header::RETRY_AFTER, header::HeaderValue::from(retry_after));
            }
            _ => {}
        }
        response
    }
}

/// `Json<T>` whose rejections use [`ApiError`]'s JSON shape.
#[derive(Debug)]
pub(crate) struct ApiJson<T>(pub(crate) T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        match Json::<T>::from_request(req, state).await {
            Ok(Json(v)) => Ok(ApiJson(v)),
            Err(e) => Err(json_rejection(&e)),
        }
    }
}

pub(crate) fn json_rejection(e: &JsonRejection) -> ApiError {
    match e {
        JsonRejection::MissingJsonContentType(_) => {
            ApiError::UnsupportedMediaType("expected Content-Type: application/json".to_owned())
        }
        JsonRejection::BytesRejection(b) if b.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            ApiError::TooLarge
        }
        other => ApiError::BadRequest(other.body_text()),
    }
}

/// `Query<T>` whose rejections use [`ApiError`]'s JSON shape (400).
#[derive(Debug)]
pub(crate) struct ApiQuery<T>(pub(crate) T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        match Query::<T>::from_request_parts(parts, state).await {
            Ok(Query(v)) => Ok(ApiQuery(v)),
            Err(e) => Err(ApiError::BadRequest(e.body_text())),
        }
    }
}

/// `Path<T>` whose rejections use [`ApiError`]'s JSON shape (400).
#[derive(Debug)]
pub(crate) struct ApiPath<T>(pub(crate) T);

impl<S: Send + Sync, T: DeserializeOwned + Send> FromRequestParts<S> for ApiPath<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        match Path::<T>::from_request_parts(parts, state).await {
            Ok(Path(v)) => Ok(ApiPath(v)),
            Err(e) => Err(ApiError::BadRequest(e.body_text())),
        }
    }
}

/// The answer to a path no route has: 404 with the JSON shape.
pub(crate) async fn no_route(method: axum::http::Method, uri: axum::http::Uri) -> ApiError {
    ApiError::NotFound(format!(
        "no route for {method} {}: see /openapi.json",
        uri.path()
    ))
}

/// The answer to a route asked with a method it does not take: 405 with the JSON shape.
pub(crate) async fn wrong_method(method: axum::http::Method, uri: axum::http::Uri) -> ApiError {
    ApiError::MethodNotAllowed(format!("{} does not take {method}", uri.path()))
}
