//! Request ids, request logging, security headers, request metrics, and `Connection:
//! close` while the server drains.
//!
//! SECURITY: the request log records method, path (never the query string), status,
//! latency and client address; never headers, cookies or bodies, so credentials cannot
//! reach the logs through it.

use std::future::{Ready, ready};
use std::rc::Rc;
use std::time::Instant;

use actix_web::body::MessageBody;
use actix_web::dev::{Service, ServiceRequest, ServiceResponse, Transform, forward_ready};
use actix_web::http::ConnectionType;
use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::middleware::{DefaultHeaders, Next};
use actix_web::web;
use futures_util::future::LocalBoxFuture;
use tracing::Instrument;
use uuid::Uuid;

use crate::app::AppState;
use crate::telemetry::REQUEST_ID;

pub const REQUEST_ID_HEADER: &str = "x-request-id";

/// The Content-Security-Policy of every HTML page (DESIGN.md principle 5). Pages whose
/// forms post elsewhere extend `form-action` themselves.
pub const PAGE_CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
     img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// Security headers for every response; a handler's own value for a header wins.
pub fn security_headers(https: bool) -> DefaultHeaders {
    let mut headers = DefaultHeaders::new()
        .add(("Content-Security-Policy", PAGE_CSP))
        .add(("X-Content-Type-Options", "nosniff"))
        .add(("Referrer-Policy", "no-referrer"))
        .add(("X-Frame-Options", "DENY"))
        .add(("Cross-Origin-Opener-Policy", "same-origin"))
        .add(("Cross-Origin-Resource-Policy", "same-origin"))
        .add((
            "Permissions-Policy",
            "camera=(), microphone=(), geolocation=(), payment=(), usb=()",
        ))
        .add(("Cache-Control", "no-store"));
    if https {
        headers = headers.add((
            "Strict-Transport-Security",
            "max-age=31536000; includeSubDomains",
        ));
    }
    headers
}

/// While the server drains (see `crate::shutdown`), every response closes its connection
/// (`Connection: close`, RFC 9112 §9.6): a keep-alive client finishes its current request
/// here and opens its next connection elsewhere. Checked after the handler, so a request
/// in flight when the drain starts gets it too. (Handlers turn their errors into
/// responses, which pass here; only a failing middleware returns an error instead.)
pub async fn close_while_draining(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let draining = req
        .app_data::<web::Data<AppState>>()
        .map(|state| state.draining.clone());
    let mut res = next.call(req).await?;
    if draining.is_some_and(|d| d.is_draining()) {
        res.response_mut()
            .head_mut()
            .set_connection_type(ConnectionType::Close);
    }
    Ok(res)
}

/// Middleware on the public server: counts every answer by route pattern in
/// `crate::metrics::Metrics`.
pub async fn track(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let started = Instant::now();
    let metrics = req
        .app_data::<web::Data<AppState>>()
        .map(|s| std::sync::Arc::clone(&s.metrics));
    let method = method_label(req.method());
    let result = next.call(req).await;
    if let Some(metrics) = metrics {
        // The route is known once the router has run: read it from the answered request.
        let (route, status) = match &result {
            Ok(response) => (
                response
                    .request()
                    .match_pattern()
                    .unwrap_or_else(|| "(unmatched)".to_owned()),
                response.status().as_u16(),
            ),
            Err(e) => (
                "(error)".to_owned(),
                e.as_response_error().status_code().as_u16(),
            ),
        };
        metrics.observe(route, method, status, started.elapsed().as_secs_f64());
    }
    result
}

fn method_label(method: &actix_web::http::Method) -> &'static str {
    use actix_web::http::Method;
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        _ => "OTHER",
    }
}

/// Gives each request an id (also in the `X-Request-Id` response header), runs it inside
/// a tracing span carrying that id, and logs one line when it completes.
pub struct RequestContext;

impl<S, B> Transform<S, ServiceRequest> for RequestContext
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = actix_web::Error> + 'static,
    B: MessageBody + 'static,
{
    type Response = ServiceResponse<B>;
    type Error = actix_web::Error;
    type Transform = RequestContextMiddleware<S>;
    type InitError = ();
    type Future = Ready<Result<Self::Transform, Self::InitError>>;

    fn new_transform(&self, service: S) -> Self::Future {
        ready(Ok(RequestContextMiddleware {
            service: Rc::new(service),
        }))
    }
}

pub struct RequestContextMiddleware<S> {
    service: Rc<S>,
}

impl<S, B> Service<ServiceRequest> for RequestContextMiddleware<S>
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = actix_web::Error> + 'static,
    B: MessageBody + 'static,
{
    type Response = ServiceResponse<B>;
    type Error = actix_web::Error;
    type Future = LocalBoxFuture<'static, Result<Self::Response, Self::Error>>;

    forward_ready!(service);

    fn call(&self, req: ServiceRequest) -> Self::Future {
        let request_id = Uuid::new_v4().simple().to_string();
        let method = req.method().to_string();
        let path = req.path().to_owned();
        let peer = req
            .peer_addr()
            .map(|a| a.ip().to_string())
            .unwrap_or_default();
        let span = tracing::info_span!("request", request_id = %request_id);
        let service = Rc::clone(&self.service);
        let started = Instant::now();
        let id_for_header = request_id.clone();
        let fut = async move {
            let result = service.call(req).await;
            let latency_ms = started.elapsed().as_secs_f64() * 1000.0;
            match &result {
                Ok(res) => tracing::info!(
                    target: "portcullis::http",
                    %method, %path, status = res.status().as_u16(), latency_ms, client = %peer,
                    "request completed"
                ),
                Err(error) => tracing::warn!(
                    target: "portcullis::http",
                    %method, %path, latency_ms, client = %peer, error = %error,
                    "request failed"
                ),
            }
            result.map(|mut res| {
                if let Ok(value) = HeaderValue::from_str(&id_for_header) {
                    res.headers_mut()
                        .insert(HeaderName::from_static(REQUEST_ID_HEADER), value);
                }
                res
            })
        };
        Box::pin(REQUEST_ID.scope(request_id, fut.instrument(span)))
    }
}

/// Runs every request with the process's main runtime as the current Tokio runtime, so
/// what a request opens — database connections above all, and timers — is registered
/// with a runtime that outlives the workers. Each actix worker has a runtime of its own
/// and a graceful stop ends the idle workers first: a pooled connection opened on one of
/// them broke ("a Tokio 1.x context was found, but it is being shutdown") under the
/// requests still in flight on the others.
pub struct OnRuntime<F> {
    runtime: tokio::runtime::Handle,
    inner: std::pin::Pin<Box<F>>,
}

impl<F: std::future::Future> OnRuntime<F> {
    pub fn new(runtime: tokio::runtime::Handle, inner: F) -> Self {
        Self {
            runtime,
            inner: Box::pin(inner),
        }
    }
}

impl<F: std::future::Future> std::future::Future for OnRuntime<F> {
    type Output = F::Output;

    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<F::Output> {
        let this = &mut *self;
        // Entered for this poll only, so guards never outlive it or cross each other.
        let _entered = this.runtime.enter();
        this.inner.as_mut().poll(cx)
    }
}
