//! The console's imports: the history with each run's state and counts, one run's report (its
//! rejections by line and field, and live progress while it runs), and the upload form.
//!
//! An upload is streamed, never buffered whole: each part of the multipart body is sealed into a
//! spool file as it arrives ([`crate::ingest::spool`]), then a background thread imports it through
//! the decrypting reader and removes the spool. The handler answers with a redirect to the run's
//! page as soon as the upload is complete; that page refreshes itself until the run is done.

use std::path::Path;

use actix_multipart::Multipart;
use actix_web::http::{header, StatusCode};
use actix_web::web::{self, Data};
use actix_web::{HttpRequest, HttpResponse};
use askama::Template;
use clap::ValueEnum as _;
use futures_util::StreamExt as _;

use crate::audit::Actor;
use crate::auth::guard::policy::ImportTenantData;
use crate::auth::guard::{client_address, TenantAccess};
use crate::context::AppContext;
use crate::error::AppError;
use crate::ids::ImportId;
use crate::ingest::live::LiveImport;
use crate::ingest::spool::{SealedSpool, SpoolWriter};
use crate::ingest::{self, ImportFormat, ImportRequest, ImportRun, ImportState};
use crate::tenants::Tenant;
use crate::web::pages::{audit_personal_read, format_time, render, see_other, Chrome};

/// The largest upload accepted (plaintext bytes of the file).
pub const MAX_UPLOAD_BYTES: u64 = 1024 * 1024 * 1024;
/// Plaintext gathered before it is handed to the blocking pool to be sealed and written.
const SPOOL_BATCH_BYTES: usize = 1024 * 1024;
/// The longest text field of the upload form (format, checkbox).
const MAX_FIELD_BYTES: usize = 1024;

pub fn routes(config: &mut web::ServiceConfig) {
    config
        .route("/t/{tenant}/imports", web::get().to(list))
        .route("/t/{tenant}/imports", web::post().to(upload))
        .route("/t/{tenant}/imports/{id}", web::get().to(show));
}

pub struct FormatChoice {
    pub value: String,
    pub help: String,
}

/// Every format the import engine knows, so new ones appear in the form by themselves.
fn format_choices() -> Vec<FormatChoice> {
    ImportFormat::value_variants()
        .iter()
        .filter_map(clap::ValueEnum::to_possible_value)
        .map(|value| FormatChoice {
            value: value.get_name().to_owned(),
            help: value
                .get_help()
                .map(ToString::to_string)
                .unwrap_or_default(),
        })
        .collect()
}

pub struct RunRow {
    pub url: String,
    pub started: String,
    pub format: &'static str,
    pub source_name: String,
    pub actor: String,
    pub state: String,
    pub imported: u64,
    pub updated: u64,
    pub rejected: u64,
}

fn run_row(base: &str, run: &ImportRun, live: Option<&LiveImport>) -> RunRow {
    RunRow {
        url: format!("{base}/imports/{}", run.id),
        started: format_time(run.started),
        format: run.format.as_str(),
        source_name: run.source_name.clone(),
        actor: run.actor.clone(),
        state: state_text(run.state, live),
        imported: run.imported,
        updated: run.updated,
        rejected: run.rejected,
    }
}

fn state_text(state: ImportState, live: Option<&LiveImport>) -> String {
    match (state, live) {
        (ImportState::Running, Some(live)) => format!("running ({}%)", live.percent()),
        (state, _) => state.as_str().to_owned(),
    }
}

#[derive(Template)]
#[template(path = "imports/list.html")]
struct ListPage {
    chrome: Chrome,
    upload_action: String,
    csrf: String,
    formats: Vec<FormatChoice>,
    max_upload: String,
    live: Vec<(String, LiveImport)>,
    rows: Vec<RunRow>,
}

async fn list(
    request: HttpRequest,
    context: Data<AppContext>,
    access: TenantAccess<ImportTenantData>,
) -> Result<HttpResponse, AppError> {
    let client = client_address(&request).map(|address| address.to_string());
    let page = web::block(move || -> Result<ListPage, AppError> {
        let history = ingest::history(&context, access.tenant.id)?;
        // The history names who imported (users' e-mail addresses).
        audit_personal_read(
            &context,
            &access.session,
            &access.tenant,
            client,
            "import history",
        )?;
        let base = format!("/t/{}", access.tenant.slug);
        let live = context.live_imports.of_tenant(access.tenant.id);
        let rows = history
            .iter()
            .map(|run| {
                let running = live.iter().find(|(id, _)| *id == run.id).map(|(_, l)| l);
                run_row(&base, run, running)
            })
            .collect();
        // Runs still validating have no stored report yet; show them from memory.
        let pending = live
            .into_iter()
            .filter(|(id, _)| !history.iter().any(|run| run.id == *id))
            .map(|(id, entry)| (format!("{base}/imports/{id}"), entry))
            .collect();
        let csrf = access.session.session.csrf_token.clone();
        Ok(ListPage {
            chrome: Chrome::for_session(
                &context,
                &access.session,
                Some(&access.tenant),
                "Imports",
                &format!("{base}/imports"),
            )?,
            upload_action: format!("{base}/imports"),
            csrf,
            formats: format_choices(),
            max_upload: format!("{} MiB", MAX_UPLOAD_BYTES / (1024 * 1024)),
            live: pending,
            rows,
        })
    })
    .await??;
    render(&page, StatusCode::OK)
}

#[derive(Template)]
#[template(path = "imports/show.html")]
struct ShowPage {
    chrome: Chrome,
    base: String,
    id: String,
    run: Option<RunRow>,
    rejections: Vec<ingest::Rejection>,
    more_rejections: u64,
    live: Option<LiveImport>,
    running: bool,
    progress: (u64, u64),
}

async fn show(
    request: HttpRequest,
    context: Data<AppContext>,
    access: TenantAccess<ImportTenantData>,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, AppError> {
    let client = client_address(&request).map(|address| address.to_string());
    let id: ImportId = path.1.parse().map_err(|_| AppError::NotFound)?;
    let page = web::block(move || -> Result<ShowPage, AppError> {
        // Memory first: a run leaves it only after its report is stored, so one of the two has it.
        let live = context.live_imports.get(access.tenant.id, id);
        let stored = ingest::find_run(&context, access.tenant.id, id)?;
        if live.is_none() && stored.is_none() {
            return Err(AppError::NotFound);
        }
        audit_personal_read(
            &context,
            &access.session,
            &access.tenant,
            client,
            format!("import {id}"),
        )?;
        let base = format!("/t/{}", access.tenant.slug);
        // A run stored in a final state is over, even while its live entry lingers a moment: the
        // page then stops refreshing itself (a refresh after "committed" replaced the page under
        // the browser test that had just found it).
        let running = match (&live, &stored) {
            (_, Some(run)) if run.state != ImportState::Running => false,
            (Some(entry), _) => entry.error.is_none(),
            (None, Some(run)) => run.state == ImportState::Running,
            (None, None) => false,
        };
        let rejections = stored
            .as_ref()
            .map(|run| run.rejections.clone())
            .unwrap_or_default();
        let more_rejections = stored.as_ref().map_or(0, |run| {
            run.rejected.saturating_sub(run.rejections.len() as u64)
        });
        Ok(ShowPage {
            chrome: Chrome::for_session(
                &context,
                &access.session,
                Some(&access.tenant),
                "Import",
                &format!("{base}/imports"),
            )?,
            id: id.to_string(),
            run: stored
                .as_ref()
                .map(|run| run_row(&base, run, live.as_ref())),
            rejections,
            more_rejections,
            progress: live.as_ref().map_or((0, 1), LiveImport::overall),
            live,
            running,
            base,
        })
    })
    .await??;
    render(&page, StatusCode::OK)
}

/// What the upload form sent besides the file.
#[derive(Default)]
struct UploadFields {
    format: Option<String>,
    skip_invalid: bool,
    file: Option<(String, SealedSpool)>,
}

fn too_large() -> AppError {
    AppError::TooLarge(format!(
        "The file is larger than the upload limit of {} MiB. Nothing was imported; split the file, or import it with `rapport import` on the appliance.",
        MAX_UPLOAD_BYTES / (1024 * 1024)
    ))
}

fn bad_upload(error: &actix_multipart::MultipartError) -> AppError {
    AppError::BadRequest(format!(
        "The upload could not be read ({error}). Nothing was imported."
    ))
}

/// The last component of the browser's file name, without control characters, at most 200
/// characters (it is shown in the history, never used as a path).
fn clean_file_name(name: Option<&str>) -> String {
    let last = name
        .unwrap_or_default()
        .rsplit(['/', '\\'])
        .next()
        .unwrap_or_default();
    let cleaned: String = last.chars().filter(|c| !c.is_control()).take(200).collect();
    if cleaned.trim().is_empty() {
        "upload".to_owned()
    } else {
        cleaned
    }
}

async fn read_small_field(field: &mut actix_multipart::Field) -> Result<String, AppError> {
    let mut bytes = Vec::new();
    while let Some(chunk) = field.next().await {
        let chunk = chunk.map_err(|error| bad_upload(&error))?;
        if bytes.len() + chunk.len() > MAX_FIELD_BYTES {
            return Err(AppError::BadRequest(
                "A form field of the upload is too long.".to_owned(),
            ));
        }
        bytes.extend_from_slice(&chunk);
    }
    String::from_utf8(bytes)
        .map_err(|_| AppError::BadRequest("A form field of the upload is not text.".to_owned()))
}

/// Streams one file part into a new sealed spool; returns `None` for an empty file part (no file
/// chosen).
async fn spool_file(
    context: &Data<AppContext>,
    field: &mut actix_multipart::Field,
) -> Result<Option<SealedSpool>, AppError> {
    let data_dir = context.config.storage.data_dir.clone();
    let mut writer = web::block(move || SpoolWriter::create(&data_dir))
        .await?
        .map_err(|error| AppError::internal(&error))?;
    let mut batch: Vec<u8> = Vec::with_capacity(SPOOL_BATCH_BYTES);
    let mut received = 0u64;
    loop {
        let chunk = field.next().await;
        let last = chunk.is_none();
        if let Some(chunk) = chunk {
            let chunk = chunk.map_err(|error| bad_upload(&error))?;
            received += chunk.len() as u64;
            if received > MAX_UPLOAD_BYTES {
                return Err(too_large());
            }
            batch.extend_from_slice(&chunk);
        }
        if batch.len() >= SPOOL_BATCH_BYTES || (last && !batch.is_empty()) {
            let pending = std::mem::replace(&mut batch, Vec::with_capacity(SPOOL_BATCH_BYTES));
            writer = web::block(move || writer.write(&pending).map(|()| writer))
                .await?
                .map_err(|error| AppError::internal(&error))?;
        }
        if last {
            break;
        }
    }
    if writer.plaintext_bytes() == 0 {
        return Ok(None);
    }
    let spool = web::block(move || writer.finish())
        .await?
        .map_err(|error| AppError::internal(&error))?;
    Ok(Some(spool))
}

async fn read_upload(
    context: &Data<AppContext>,
    multipart: &mut Multipart,
) -> Result<UploadFields, AppError> {
    // One file and a few small fields: together with the per-file limit this bounds the whole
    // request, also when it arrives chunked without a Content-Length.
    const MAX_PARTS: usize = 8;
    let mut fields = UploadFields::default();
    let mut parts = 0;
    while let Some(field) = multipart.next().await {
        parts += 1;
        if parts > MAX_PARTS {
            return Err(AppError::BadRequest(format!(
                "The upload has more than {MAX_PARTS} form parts; send one file with its format."
            )));
        }
        let mut field = field.map_err(|error| bad_upload(&error))?;
        match field.name().unwrap_or_default() {
            "format" => fields.format = Some(read_small_field(&mut field).await?),
            "skip_invalid" => {
                let value = read_small_field(&mut field).await?;
                fields.skip_invalid = !value.is_empty() && value != "0" && value != "false";
            }
            "file" if fields.file.is_some() => {
                return Err(AppError::BadRequest(
                    "The upload holds more than one file; import one file at a time.".to_owned(),
                ));
            }
            "file" => {
                let name = clean_file_name(
                    field
                        .content_disposition()
                        .and_then(|disposition| disposition.get_filename()),
                );
                if let Some(spool) = spool_file(context, &mut field).await? {
                    fields.file = Some((name, spool));
                }
            }
            // The CSRF field (checked by the session layer before this handler ran) and anything
            // else: read and ignore.
            _ => {
                read_small_field(&mut field).await?;
            }
        }
    }
    Ok(fields)
}

async fn upload(
    request: HttpRequest,
    context: Data<AppContext>,
    access: TenantAccess<ImportTenantData>,
    payload: web::Payload,
) -> Result<HttpResponse, AppError> {
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<u64>().ok());
    // The form's own fields and boundaries add a little to the file's size.
    if declared.is_some_and(|length| length > MAX_UPLOAD_BYTES + 64 * 1024) {
        return Err(too_large());
    }
    let mut multipart = Multipart::new(request.headers(), payload);
    let fields = read_upload(&context, &mut multipart).await?;
    let format = fields
        .format
        .as_deref()
        .and_then(|value| ImportFormat::from_str(value.trim(), true).ok())
        .ok_or_else(|| {
            AppError::BadRequest(format!(
                "Choose the file's format (one of: {}). Nothing was imported.",
                format_choices()
                    .iter()
                    .map(|choice| choice.value.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ))
        })?;
    let Some((name, spool)) = fields.file else {
        return Err(AppError::BadRequest(
            "Choose a file to upload; the one sent was empty. Nothing was imported.".to_owned(),
        ));
    };
    let id = ImportId::new();
    let job = UploadJob {
        id,
        tenant: access.tenant,
        actor: access.session.user.actor(),
        format,
        skip_invalid: fields.skip_invalid,
        name,
        spool,
    };
    let location = format!("/t/{}/imports/{id}", job.tenant.slug);
    context.live_imports.start(
        id,
        job.tenant.id,
        job.name.clone(),
        job.spool.plaintext_bytes(),
    );
    let worker_context = context.clone();
    let started = std::thread::Builder::new()
        .name("console-import".to_owned())
        .spawn(move || run_upload(&worker_context, job));
    if let Err(error) = started {
        context.live_imports.finish(id);
        return Err(AppError::internal(&error));
    }
    Ok(see_other(&location))
}

/// An uploaded file waiting for its import.
struct UploadJob {
    id: ImportId,
    tenant: Tenant,
    actor: Actor,
    format: ImportFormat,
    skip_invalid: bool,
    name: String,
    spool: SealedSpool,
}

/// Imports a sealed upload (on its own thread), then removes the spool before the run leaves
/// the live map, so a page that shows the run finished never has a spool behind it.
fn run_upload(context: &AppContext, job: UploadJob) {
    let UploadJob {
        id,
        tenant,
        actor,
        format,
        skip_invalid,
        name,
        spool,
    } = job;
    let live = context.live_imports.clone();
    let mut progress = |step| live.update(id, step);
    let request = ImportRequest {
        actor: &actor,
        tenant: &tenant,
        format,
        path: Path::new(&name),
        skip_invalid,
    };
    // A panic in a parser must not leave the run half-written and "running" until a restart.
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        ingest::import_from_source(context, &request, &spool, id, &mut progress)
    }));
    drop(spool);
    let failure = match result {
        Ok(Ok(run)) => {
            live.finish(id);
            crate::analysis::enqueue_after_import(context, tenant.id, &run);
            return;
        }
        Ok(Err(error)) => error.kind(),
        Err(_) => {
            if let Err(error) = ingest::roll_back_abandoned(context, &tenant, id) {
                tracing::error!(import = %id, kind = error.kind(), "abandoned import not rolled back");
            }
            "panic"
        }
    };
    tracing::error!(import = %id, kind = failure, "console import failed");
    live.fail(
        id,
        "The import stopped on an error; nothing of it was kept. The operator can find the cause in the service log.".to_owned(),
    );
}
