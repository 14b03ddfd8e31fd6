//! Outbound HTTP for sink plugins, through the host.
//!
//! The host owns the client: only hosts listed in the stage's `allowed_hosts` are reached,
//! private addresses only when listed explicitly, redirects are not followed, and the
//! response size and the time are capped. A plugin never opens sockets itself.

use crate::Error;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub method: String,
    pub url: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Request {
    /// `POST` a JSON body.
    pub fn post_json(url: &str, body: &serde_json::Value) -> Self {
        Request {
            method: "POST".into(),
            url: url.into(),
            headers: vec![("content-type".into(), "application/json".into())],
            body: body.to_string().into_bytes(),
        }
    }

    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// The usual reading of a status: 2xx is delivered; 408, 429 and 5xx may succeed later;
    /// anything else will not.
    pub fn into_result(self) -> Result<Response, Error> {
        match self.status {
            200..=299 => Ok(self),
            408 | 429 | 500..=599 => Err(Error::retryable(format!("HTTP {}", self.status))),
            status => Err(Error::fatal(format!("HTTP {status}"))),
        }
    }
}

/// Why the host did not return a response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HttpError {
    /// Refused by the host: host not allowed, private address, bad URL or method.
    Denied(String),
    Timeout(String),
    /// Connection or protocol failure.
    Failed(String),
    /// The response body was larger than the host accepts.
    TooLarge(String),
}

impl std::fmt::Display for HttpError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HttpError::Denied(m) => write!(f, "denied: {m}"),
            HttpError::Timeout(m) => write!(f, "timeout: {m}"),
            HttpError::Failed(m) => write!(f, "failed: {m}"),
            HttpError::TooLarge(m) => write!(f, "response too large: {m}"),
        }
    }
}

impl std::error::Error for HttpError {}

/// Timeouts and connection failures are retryable; a refusal or an oversized answer is not.
impl From<HttpError> for Error {
    fn from(e: HttpError) -> Self {
        match e {
            HttpError::Timeout(_) | HttpError::Failed(_) => Error::retryable(e.to_string()),
            HttpError::Denied(_) | HttpError::TooLarge(_) => Error::fatal(e.to_string()),
        }
    }
}

/// Send a request through the host. Outside a sink it is always `Denied`.
pub fn send(request: &Request) -> Result<Response, HttpError> {
    crate::host::http_send(request)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_map_to_stage_errors() {
        let r = |status| Response {
            status,
            headers: vec![],
            body: vec![],
        };
        assert!(r(204).into_result().is_ok());
        assert!(matches!(r(503).into_result(), Err(Error::Retryable(_))));
        assert!(matches!(r(404).into_result(), Err(Error::Fatal(_))));
        assert!(matches!(
            Error::from(HttpError::Denied("x".into())),
            Error::Fatal(_)
        ));
    }

    #[test]
    fn outside_a_sink_http_is_denied() {
        let req = Request::post_json("https://example.invalid/", &serde_json::json!({}));
        assert!(matches!(send(&req), Err(HttpError::Denied(_))));
    }
}
