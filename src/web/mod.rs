//! The HTTP server: routes, middleware order, TLS, and the pages every area shares.

pub mod assets;
pub mod pages;
pub mod tls;

use std::net::TcpListener;
use std::time::Instant;

use actix_web::body::MessageBody;
use actix_web::dev::{Server, ServiceRequest, ServiceResponse};
use actix_web::middleware::{from_fn, DefaultHeaders, Next};
use actix_web::web::{self, Data};
use actix_web::{App, HttpServer};

use crate::auth::guard::session_layer;
use crate::context::AppContext;

/// Body size limit for forms; uploads (a later feature) get their own, larger limit.
const FORM_LIMIT_BYTES: usize = 64 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("cannot listen on {address}: {source}")]
    Bind {
        address: String,
        source: std::io::Error,
    },
    #[error(transparent)]
    Tls(#[from] tls::TlsError),
    #[error(transparent)]
    Metrics(#[from] crate::metrics::MetricsError),
}

/// Registers every route. Each handler's guard type states who may call it.
pub fn routes(config: &mut web::ServiceConfig) {
    config
        .configure(pages::routes)
        .configure(assets::routes)
        .configure(crate::auth::routes::routes)
        .configure(crate::tenants::routes::routes)
        .configure(crate::users::routes::routes)
        .configure(crate::audit::routes::routes)
        .configure(crate::search::routes::routes)
        .configure(crate::interactions::routes::routes)
        .configure(crate::accounts::routes::routes)
        .configure(crate::signals::routes::routes)
        .configure(crate::ingest::routes::routes)
        .configure(crate::inference::routes::routes)
        .configure(crate::analysis::routes::routes)
        .configure(crate::privacy::routes::routes)
        .configure(crate::qa::routes::routes)
        .configure(crate::feedback::routes::routes)
        .configure(crate::alerts::routes::routes)
        .configure(crate::leads::routes::routes)
        .configure(crate::reviews::routes::routes)
        .configure(crate::health::routes::routes)
        .configure(crate::retention::routes::routes)
        .configure(crate::insights::routes::routes)
        .configure(crate::offboarding::routes::routes)
        .configure(crate::api::routes)
        .configure(crate::metrics::routes);
}

fn security_headers(tls: bool) -> DefaultHeaders {
    let mut headers = DefaultHeaders::new()
        .add((
            "Content-Security-Policy",
            "default-src 'none'; script-src 'self'; connect-src 'self'; style-src 'self'; img-src 'self'; \
             form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ))
        .add(("X-Content-Type-Options", "nosniff"))
        .add(("X-Frame-Options", "DENY"))
        .add(("Referrer-Policy", "no-referrer"))
        .add(("Cross-Origin-Opener-Policy", "same-origin"))
        .add(("Cross-Origin-Resource-Policy", "same-origin"))
        .add((
            "Permissions-Policy",
            "camera=(), microphone=(), geolocation=()",
        ))
        // Pages show personal data: no cache keeps them. Assets set their own long lifetime.
        .add(("Cache-Control", "no-store"));
    if tls {
        headers = headers.add(("Strict-Transport-Security", "max-age=31536000"));
    }
    headers
}

/// Logs method, route pattern, status and duration — never the path's values or the query,
/// which can carry tenant names or search words.
async fn access_log(
    request: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let started = Instant::now();
    let method = request.method().clone();
    let pattern = request
        .match_pattern()
        .unwrap_or_else(|| "(unmatched)".to_owned());
    let metrics = request.app_data::<Data<crate::metrics::Metrics>>().cloned();
    let response = next.call(request).await?;
    if let Some(metrics) = metrics {
        metrics.observe_request(
            (pattern != "(unmatched)").then_some(pattern.as_str()),
            response.status().as_u16(),
            started.elapsed().as_secs_f64(),
        );
    }
    tracing::info!(
        method = %method,
        route = %pattern,
        status = response.status().as_u16(),
        millis = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
        "request"
    );
    Ok(response)
}

/// Builds the server on an already bound listener (tests bind port 0).
pub fn serve(context: Data<AppContext>, listener: TcpListener) -> Result<Server, ServeError> {
    let tls = context.config.server.tls.clone();
    let uses_tls = tls.is_some();
    let workers = match context.config.server.workers {
        0 => std::thread::available_parallelism().map_or(2, std::num::NonZero::get),
        n => n,
    };
    let address = listener
        .local_addr()
        .map_or_else(|_| "the listener".to_owned(), |a| a.to_string());
    let metrics = Data::new(crate::metrics::Metrics::from_config(
        &context.config.metrics,
    )?);
    let server = HttpServer::new(move || {
        App::new()
            .app_data(context.clone())
            .app_data(metrics.clone())
            .app_data(web::FormConfig::default().limit(FORM_LIMIT_BYTES))
            .app_data(web::PayloadConfig::new(FORM_LIMIT_BYTES))
            .wrap(from_fn(session_layer))
            .wrap(security_headers(uses_tls))
            .wrap(from_fn(access_log))
            .configure(routes)
            .default_service(web::to(pages::not_found))
    })
    .workers(workers);
    let server = match tls {
        Some(files) => {
            let config = tls::server_config(&files)?;
            server.listen_rustls_0_23(listener, config)
        }
        None => server.listen(listener),
    }
    .map_err(|source| ServeError::Bind { address, source })?;
    Ok(server.run())
}
