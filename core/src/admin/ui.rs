//! `/ui`: the web console — plain HTML, CSS and JavaScript compiled into the binary (no build
//! step, nothing fetched from the network), served by the admin listener.
//!
//! The pages hold no data: everything the console shows it reads from `/api/v1` with the
//! admin token, which it keeps in `sessionStorage` and sends only in the `Authorization`
//! header. So these routes need no token themselves, and a page elsewhere can neither frame
//! them (`frame-ancestors 'none'`) nor inject script into them (`script-src 'self'`, no inline
//! script). See `docs/console.md`.

use axum::Router;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;

const INDEX: &str = include_str!("ui/index.html");
const APP_JS: &str = include_str!("ui/app.js");
const APP_CSS: &str = include_str!("ui/app.css");

/// Everything from this listener, nothing inline, never framed.
pub(crate) const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; \
     img-src 'self' data:; connect-src 'self'; object-src 'none'; base-uri 'none'; \
     form-action 'self'; frame-ancestors 'none'";

pub(super) fn router() -> Router {
    Router::new()
        .route("/ui", get(|| async { Redirect::permanent("/ui/") }))
        .route(
            "/ui/",
            get(|| async { page("text/html; charset=utf-8", INDEX) }),
        )
        .route(
            "/ui/app.js",
            get(|| async { page("text/javascript; charset=utf-8", APP_JS) }),
        )
        .route(
            "/ui/app.css",
            get(|| async { page("text/css; charset=utf-8", APP_CSS) }),
        )
        .layer(axum::middleware::map_response(protect))
}

fn page(content_type: &'static str, body: &'static str) -> Response {
    ([(header::CONTENT_TYPE, content_type)], body).into_response()
}

/// The headers every console response carries, errors included.
async fn protect(mut resp: Response) -> Response {
    let h = resp.headers_mut();
    for (name, value) in [
        (header::CONTENT_SECURITY_POLICY, CSP),
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::REFERRER_POLICY, "no-referrer"),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::CACHE_CONTROL, "no-cache"),
    ] {
        h.insert(name, HeaderValue::from_static(value));
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;
    use tower::ServiceExt;

    async fn get(path: &str) -> Response {
        let req = axum::http::Request::get(path)
            .body(axum::body::Body::empty())
            .expect("request");
        router().oneshot(req).await.expect("answer")
    }

    #[tokio::test]
    async fn pages_are_embedded_and_carry_strict_headers() {
        for (path, kind) in [
            ("/ui/", "text/html"),
            ("/ui/app.js", "text/javascript"),
            ("/ui/app.css", "text/css"),
        ] {
            let resp = get(path).await;
            assert_eq!(resp.status(), 200, "{path}");
            let h = resp.headers();
            let ct = h[header::CONTENT_TYPE].to_str().expect("ascii");
            assert!(ct.starts_with(kind), "{path}: {ct}");
            assert_eq!(h[header::X_FRAME_OPTIONS], "DENY");
            assert_eq!(h[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
            assert_eq!(h[header::REFERRER_POLICY], "no-referrer");
            let csp = h[header::CONTENT_SECURITY_POLICY].to_str().expect("ascii");
            assert!(csp.starts_with("default-src 'self'"), "{csp}");
            assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
            assert!(!csp.contains("unsafe-inline"), "{csp}");
        }
        assert_eq!(get("/ui").await.status(), 308);
    }

    #[test]
    fn the_page_has_no_inline_script_or_style_and_loads_nothing_from_elsewhere() {
        assert!(INDEX.contains(r#"<script src="/ui/app.js" defer></script>"#));
        assert_eq!(INDEX.matches("<script").count(), 1, "one external script");
        assert!(!INDEX.contains("<style") && !INDEX.contains("style="));
        for handler in [
            "onclick=",
            "onload=",
            "onsubmit=",
            "onerror=",
            "javascript:",
        ] {
            assert!(!INDEX.contains(handler), "{handler}");
        }
        for text in [INDEX, APP_JS, APP_CSS] {
            assert!(!text.contains("http://") && !text.contains("https://"));
        }
        // The token travels in a header, never in a URL.
        assert!(!APP_JS.contains("?token") && !APP_JS.contains("&token"));
    }
}
