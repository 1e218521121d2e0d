//! Static assets compiled into the binary and served under a content-hash version, so they can be
//! cached for a year and still change with each release.

use std::sync::LazyLock;

use actix_web::http::header;
use actix_web::{web, HttpResponse};

struct Asset {
    name: &'static str,
    content_type: &'static str,
    bytes: &'static [u8],
}

const ASSETS: &[Asset] = &[
    Asset {
        name: "rapport.css",
        content_type: "text/css; charset=utf-8",
        bytes: include_bytes!("../../static/rapport.css"),
    },
    Asset {
        name: "upload.js",
        content_type: "text/javascript; charset=utf-8",
        bytes: include_bytes!("../../static/upload.js"),
    },
    Asset {
        name: "favicon.svg",
        content_type: "image/svg+xml",
        bytes: include_bytes!("../../static/favicon.svg"),
    },
];

/// Short hash of every asset together; part of each asset URL.
pub static VERSION: LazyLock<String> = LazyLock::new(|| {
    let parts: Vec<&[u8]> = ASSETS.iter().map(|asset| asset.bytes).collect();
    hex::encode(&crate::crypto::sha256(&parts)[..6])
});

pub fn routes(config: &mut web::ServiceConfig) {
    config.route("/static/{version}/{name}", web::get().to(asset));
}

async fn asset(path: web::Path<(String, String)>) -> HttpResponse {
    let (version, name) = path.into_inner();
    match ASSETS.iter().find(|asset| asset.name == name) {
        Some(found) if version == *VERSION => HttpResponse::Ok()
            .insert_header((header::CONTENT_TYPE, found.content_type))
            .insert_header((header::CACHE_CONTROL, "public, max-age=31536000, immutable"))
            .body(found.bytes),
        _ => HttpResponse::NotFound().finish(),
    }
}
