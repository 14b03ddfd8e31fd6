//! A source's own answer to an accepted event: `respond = { status, headers, body }`.
//!
//! ```toml
//! [[sources]]
//! name = "discord"
//! path = "/webhooks/discord"
//! verify = { scheme = "ed25519", public_keys = ["${DISCORD_PUBLIC_KEY}"] }
//! respond = { status = 200, headers = { "Cache-Control" = "no-store" }, body = '''
//! {% if payload.type == 1 %}{"type": 1}{% else %}{"type": 5}{% endif %}''' }
//! ```
//!
//! Some senders read the answer (Discord wants its PING answered with a PONG). The answer is
//! sent only after the event is verified and committed to the journal, never instead of
//! either; a duplicate (an event seen within the dedupe window) gets the same answer,
//! rendered with the first event's id. A request refused or dead-lettered gets the default
//! answer.
//!
//! `body` is a minijinja template with the `template` transform's variables (`payload`,
//! `event` with `id`, `type`, `source`, `received_at`, and `headers`), compiled and checked
//! when the config is loaded. Unless a `Content-Type` header says otherwise it is JSON
//! (`application/json`): inserted values are escaped for JSON and the output must parse.
//! Each render has a budget ([`FUEL`] instructions) and a size limit ([`MAX_BODY`]); a
//! render that fails is logged and the default answer is sent: the event is already
//! accepted. Without `body`, the default JSON answer is sent with the configured status and
//! headers.

use std::collections::BTreeMap;

use axum::body::Body;
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use hookline_builtin::transform::template::{Format, TemplateTransform};
use hookline_plugin_api::Event;
use serde::Deserialize;

/// Instructions one render may run: a response body is a few lines.
pub(crate) const FUEL: u64 = 100_000;
/// The largest rendered body sent.
pub(crate) const MAX_BODY: usize = 64 * 1024;
/// Headers the server computes, or that would change how the answer is framed.
const RESERVED: [&str; 8] = [
    "content-length",
    "transfer-encoding",
    "connection",
    "keep-alive",
    "upgrade",
    "trailer",
    "te",
    "proxy-connection",
];

/// `respond = { ... }` on a `[[sources]]` entry.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RespondConfig {
    /// The status of the answer: 2xx only (the sender must see success). Default `200`.
    #[serde(default = "default_status")]
    pub(crate) status: u16,
    /// Headers of the answer, name to value. Default none (`Content-Type` is
    /// `application/json` unless set here).
    #[serde(default)]
    pub(crate) headers: BTreeMap<String, String>,
    /// A minijinja template over the event. Default: Hookline's own answer.
    pub(crate) body: Option<String>,
}

fn default_status() -> u16 {
    200
}

impl RespondConfig {
    /// One line for `hookline check`: the status, the headers' names and whether a body
    /// template is set.
    pub(crate) fn describe(&self) -> String {
        let mut text = self.status.to_string();
        if !self.headers.is_empty() {
            let names: Vec<&str> = self.headers.keys().map(String::as_str).collect();
            text.push_str(&format!(", headers {}", names.join(", ")));
        }
        text.push_str(match self.body {
            Some(_) => ", body from a template (after the event is journaled)",
            None => ", Hookline's JSON body",
        });
        text
    }
}

/// A source's answer, compiled.
#[derive(Debug)]
pub(crate) struct Responder {
    status: StatusCode,
    headers: HeaderMap,
    body: Option<TemplateTransform>,
}

impl Responder {
    /// Validate the table and compile the body. Errors name the key.
    pub(crate) fn build(c: &RespondConfig) -> Result<Responder, String> {
        let status = StatusCode::from_u16(c.status)
            .ok()
            .filter(StatusCode::is_success)
            .ok_or_else(|| {
                format!(
                    "respond: `status` {} must be a 2xx status: anything else tells the sender the delivery failed",
                    c.status
                )
            })?;
        if c.body.is_some() && matches!(c.status, 204 | 205) {
            return Err(format!(
                "respond: a {} answer has no body: remove `body` or choose another `status`",
                c.status
            ));
        }
        let mut headers = HeaderMap::new();
        for (name, value) in &c.headers {
            let header = HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| format!("respond: `headers`: invalid header name `{name}`"))?;
            if RESERVED.contains(&header.as_str()) {
                return Err(format!(
                    "respond: `headers`: `{name}` is set by the server and cannot be configured"
                ));
            }
            let value = HeaderValue::from_str(value)
                .map_err(|_| format!("respond: `headers`: invalid value for `{name}`"))?;
            headers.insert(header, value);
        }
        let json = headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_none_or(|v| {
                let essence = v
                    .split(';')
                    .next()
                    .unwrap_or("")
                    .trim()
                    .to_ascii_lowercase();
                crate::verify::is_json(&essence)
            });
        let body = match &c.body {
            Some(text) => {
                if !headers.contains_key(header::CONTENT_TYPE) {
                    headers.insert(
                        header::CONTENT_TYPE,
                        HeaderValue::from_static("application/json"),
                    );
                }
                let format = if json { Format::Json } else { Format::Text };
                Some(
                    TemplateTransform::compile(text, format, false, FUEL)
                        .map_err(|e| format!("respond: `body`: {e}"))?,
                )
            }
            None => None,
        };
        Ok(Responder {
            status,
            headers,
            body,
        })
    }

    /// The answer for `event` (already committed); `default` is Hookline's own JSON answer,
    /// sent as the body when none is configured. An error says why the body could not be
    /// rendered: the caller logs it and sends the default answer instead.
    pub(crate) fn answer(
        &self,
        event: &Event,
        default: serde_json::Value,
    ) -> Result<Response, String> {
        let mut response = match &self.body {
            Some(template) => {
                let text = template.render_text(event)?;
                if text.len() > MAX_BODY {
                    return Err(format!(
                        "the rendered body is {} bytes, more than the {MAX_BODY}-byte limit",
                        text.len()
                    ));
                }
                Response::new(Body::from(text))
            }
            None => axum::Json(default).into_response(),
        };
        *response.status_mut() = self.status;
        for (name, value) in &self.headers {
            response.headers_mut().insert(name, value.clone());
        }
        Ok(response)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn responder(table: &str) -> Result<Responder, String> {
        let config: RespondConfig = toml::from_str(table).map_err(|e| e.to_string())?;
        Responder::build(&config)
    }

    fn event(payload: serde_json::Value) -> Event {
        Event {
            id: "evt_1".into(),
            source: "discord".into(),
            event_type: "1".into(),
            received_at: jiff::Timestamp::UNIX_EPOCH,
            headers: vec![("x-thing".into(), "v".into())],
            payload,
        }
    }

    async fn parts(r: Response) -> (u16, HeaderMap, String) {
        let status = r.status().as_u16();
        let headers = r.headers().clone();
        let bytes = http_body_util::BodyExt::collect(r.into_body())
            .await
            .expect("body")
            .to_bytes();
        (
            status,
            headers,
            String::from_utf8_lossy(&bytes).into_owned(),
        )
    }

    const PONG: &str = r#"body = '''{% if payload.type == 1 %}{"type": 1}{% else %}{"type": 5, "id": "{{ event.id }}", "src": "{{ event.source }}", "h": "{{ headers["x-thing"] }}"}{% endif %}'''"#;

    #[tokio::test]
    async fn renders_json_over_the_event() {
        let r = responder(PONG).expect("builds");
        let (status, headers, body) = parts(
            r.answer(&event(json!({"type": 1})), json!({}))
                .expect("renders"),
        )
        .await;
        assert_eq!((status, body.as_str()), (200, r#"{"type": 1}"#));
        assert_eq!(headers[header::CONTENT_TYPE], "application/json");
        let (_, _, body) = parts(
            r.answer(&event(json!({"type": 2})), json!({}))
                .expect("renders"),
        )
        .await;
        let body: serde_json::Value = serde_json::from_str(&body).expect("json");
        assert_eq!(
            body,
            json!({"type": 5, "id": "evt_1", "src": "discord", "h": "v"})
        );
        // Payload text cannot break out of a JSON string.
        let r = responder(r#"body = '{"echo": "{{ payload.s }}"}'"#).expect("builds");
        let (_, _, body) = parts(
            r.answer(&event(json!({"s": "a\", \"x\": \"y"})), json!({}))
                .expect("renders"),
        )
        .await;
        let body: serde_json::Value = serde_json::from_str(&body).expect("json");
        assert_eq!(body, json!({"echo": "a\", \"x\": \"y"}));
    }

    #[tokio::test]
    async fn status_headers_text_and_the_default_body() {
        let r = responder("status = 202\nheaders = { \"Content-Type\" = \"text/plain\", \"X-A\" = \"b\" }\nbody = 'got {{ event.type }}'").expect("builds");
        let (status, headers, body) =
            parts(r.answer(&event(json!({})), json!({})).expect("renders")).await;
        assert_eq!((status, body.as_str()), (202, "got 1"));
        assert_eq!(
            (
                headers[header::CONTENT_TYPE].to_str().ok(),
                headers["x-a"].to_str().ok()
            ),
            (Some("text/plain"), Some("b"))
        );
        let r = responder("status = 201\nheaders = { \"X-A\" = \"b\" }").expect("builds");
        let (status, headers, body) = parts(
            r.answer(&event(json!({})), json!({"received": true}))
                .expect("answers"),
        )
        .await;
        assert_eq!(
            (status, body.as_str(), headers["x-a"].to_str().ok()),
            (201, r#"{"received":true}"#, Some("b"))
        );
    }

    #[test]
    fn render_errors_are_errors_not_panics() {
        // Not JSON once rendered.
        let r = responder("body = '{\"a\": {{ payload.s }}'").expect("builds");
        let err = r
            .answer(&event(json!({"s": "x"})), json!({}))
            .expect_err("not json");
        assert!(err.contains("not valid JSON"), "{err}");
        // Out of fuel.
        let r = responder(
            "body = '{% for a in payload.xs %}{% for b in payload.xs %}{% endfor %}{% endfor %}{}'",
        )
        .expect("builds");
        let xs: Vec<u32> = (0..1000).collect();
        let err = r
            .answer(&event(json!({"xs": xs})), json!({}))
            .expect_err("fuel");
        assert!(err.contains("fuel"), "{err}");
        // Too large.
        let r = responder("headers = { \"Content-Type\" = \"text/plain\" }\nbody = '{{ payload.s }}{{ payload.s }}'").expect("builds");
        let err = r
            .answer(&event(json!({"s": "x".repeat(MAX_BODY)})), json!({}))
            .expect_err("size");
        assert!(err.contains("limit"), "{err}");
    }

    #[test]
    fn config_errors_name_the_key() {
        for (table, expected) in [
            ("status = 302", "`status` 302 must be a 2xx status"),
            ("status = 99", "`status` 99 must be a 2xx status"),
            ("status = 204\nbody = 'x'", "a 204 answer has no body"),
            ("headers = { \"a b\" = \"x\" }", "invalid header name `a b`"),
            (
                "headers = { \"X-A\" = \"x\\ny\" }",
                "invalid value for `X-A`",
            ),
            (
                "headers = { \"Content-Length\" = \"3\" }",
                "`Content-Length` is set by the server",
            ),
            (
                "body = '{{ paylod.x }}'",
                "respond: `body`: unknown variable(s) in template: paylod",
            ),
            ("body = '{% if %}'", "respond: `body`: invalid template"),
            (
                "body = '{{ payload | nosuchfilter }}'",
                "respond: `body`: invalid template",
            ),
            ("bodyy = 'x'", "unknown field `bodyy`"),
        ] {
            let err = responder(table).expect_err(table);
            assert!(err.contains(expected), "{table}: {err}");
        }
        assert!(responder("status = 204").is_ok());
        let c: RespondConfig =
            toml::from_str("status = 202\nheaders = { \"X-A\" = \"1\" }\nbody = '{}'")
                .expect("toml");
        assert_eq!(
            c.describe(),
            "202, headers X-A, body from a template (after the event is journaled)"
        );
    }
}
