//! `rapport dsar create|list|show|complete --config PATH --tenant SLUG …`: data-subject requests
//! from the command line (the server must be stopped, as for every command that opens the
//! database). Everything goes through the same workflow functions as the console and the API,
//! audited with the command line as actor.

use std::path::{Path, PathBuf};

use chrono::Utc;
use clap::Subcommand;

use crate::audit::{Actor, AuditAction, AuditEvent};
use crate::config::Config;
use crate::context::AppContext;
use crate::ids::{RequestId, TenantId};
use crate::privacy::requests::package::download;
use crate::privacy::requests::store::RequestStore;
use crate::privacy::requests::workflow::{create, load, transition, By, Change, NewRequest};
use crate::privacy::requests::{PrivacyRequest, RequestKind, RequestState};
use crate::store::OpenMode;

#[derive(Subcommand)]
pub(crate) enum DsarCommand {
    /// Record a request (state received, due in 30 days); prints its id.
    Create {
        #[command(flatten)]
        config: crate::cli::ConfigArg,
        /// The tenant (slug).
        #[arg(long, value_name = "SLUG")]
        tenant: String,
        /// access, portability, rectification, erasure, restriction or objection.
        #[arg(long)]
        kind: String,
        /// The subject's e-mail address.
        #[arg(long, group = "subject")]
        email: Option<String>,
        /// The subject's phone number.
        #[arg(long, group = "subject")]
        phone: Option<String>,
        /// The subject's name.
        #[arg(long, group = "subject")]
        name: Option<String>,
        /// A contact's record id.
        #[arg(long, group = "subject")]
        contact: Option<String>,
        /// When it was received (YYYY-MM-DD); default now.
        #[arg(long, default_value = "")]
        received: String,
        /// How it arrived, a reference.
        #[arg(long, default_value = "")]
        note: String,
    },
    /// List the tenant's requests, newest first: id, kind, state, due date and deadline.
    List {
        #[command(flatten)]
        config: crate::cli::ConfigArg,
        #[arg(long, value_name = "SLUG")]
        tenant: String,
    },
    /// Show one request with its subject and history (a read of personal data, audited).
    Show {
        #[command(flatten)]
        config: crate::cli::ConfigArg,
        #[arg(long, value_name = "SLUG")]
        tenant: String,
        /// The request's id.
        id: String,
    },
    /// Complete a request: from received it is verified (give --method and --verification-note)
    /// and put in progress first. Access and portability write the package's JSON to --out.
    Complete {
        #[command(flatten)]
        config: crate::cli::ConfigArg,
        #[arg(long, value_name = "SLUG")]
        tenant: String,
        /// The request's id.
        id: String,
        /// How identity was verified, when the request is still received:
        /// `known_contact_details`, `identity_document`, `call_back`, `customer_account` or
        /// `other`.
        #[arg(long, default_value = "")]
        method: String,
        #[arg(long, default_value = "")]
        verification_note: String,
        /// Where access and portability write the package (JSON).
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
    },
}

fn open(path: &Path, slug: &str) -> Result<(AppContext, TenantId), String> {
    let config = Config::load(path).map_err(|error| error.to_string())?;
    let context =
        AppContext::open(config, OpenMode::ExistingOnly).map_err(|error| error.to_string())?;
    let tenant = context
        .tenants
        .find_by_slug(slug)
        .map_err(|error| error.to_string())?
        .ok_or_else(|| format!("no tenant with slug {slug:?}"))?;
    Ok((context, tenant.id))
}

fn parse_id(raw: &str) -> Result<RequestId, String> {
    raw.trim()
        .parse()
        .map_err(|_| format!("{raw:?} is not a request id (26 characters)"))
}

fn line(request: &PrivacyRequest) -> String {
    format!(
        "{}  {:<13} {:<11} due {}  {}",
        request.id,
        request.kind.as_str(),
        request.state.as_str(),
        request.due_at.format("%Y-%m-%d"),
        request.urgency(Utc::now()).as_str()
    )
}

fn audit_read(context: &AppContext, tenant: TenantId, target: String) -> Result<(), String> {
    context
        .audit(AuditEvent::new(
            Some(tenant),
            Actor::cli(),
            AuditAction::PersonalDataRead,
            target,
        ))
        .map(drop)
        .map_err(|error| error.to_string())
}

fn complete(
    context: &AppContext,
    tenant: TenantId,
    id: RequestId,
    method: &str,
    verification_note: &str,
    out: Option<&Path>,
) -> Result<(), String> {
    let by = By::cli();
    let request = load(context, tenant, id).map_err(|error| error.to_string())?;
    if request.kind.builds_package() && out.is_none() {
        return Err("access and portability write their package: give --out FILE".to_owned());
    }
    let steps: &[RequestState] = match request.state {
        RequestState::Received => &[
            RequestState::Verified,
            RequestState::InProgress,
            RequestState::Completed,
        ],
        RequestState::Verified => &[RequestState::InProgress, RequestState::Completed],
        _ => &[RequestState::Completed],
    };
    for step in steps {
        let change = Change {
            to: step.as_str().to_owned(),
            method: method.to_owned(),
            verification_note: verification_note.to_owned(),
            reason: String::new(),
        };
        transition(context, &by, tenant, id, &change).map_err(|error| error.to_string())?;
    }
    if let (Some(out), true) = (out, request.kind.builds_package()) {
        let (_, json) = download(
            context,
            &Actor::cli(),
            None,
            tenant,
            id,
            "package.json",
            Utc::now(),
        )
        .map_err(|error| error.to_string())?;
        std::fs::write(out, json)
            .map_err(|error| format!("cannot write {}: {error}", out.display()))?;
        println!("package written to {}", out.display());
    }
    println!("request {id} completed");
    Ok(())
}

/// Runs a `rapport dsar …` command; the `Err` is the message printed after `error: `.
pub(crate) fn run(command: DsarCommand) -> Result<(), String> {
    crate::telemetry::init_for_command();
    match command {
        DsarCommand::Create {
            config,
            tenant,
            kind,
            email,
            phone,
            name,
            contact,
            received,
            note,
        } => {
            let (context, tenant) = open(&config.path, &tenant)?;
            let (subject_kind, subject) = match (email, phone, name, contact) {
                (Some(value), _, _, _) => ("email", value),
                (_, Some(value), _, _) => ("phone", value),
                (_, _, Some(value), _) => ("name", value),
                (_, _, _, Some(value)) => ("contact", value),
                _ => {
                    return Err("name the subject: --email, --phone, --name or --contact".to_owned())
                }
            };
            if RequestKind::parse(&kind).is_none() {
                return Err("--kind must be access, portability, rectification, erasure, restriction or objection".to_owned());
            }
            let new = NewRequest {
                kind,
                subject_kind: subject_kind.to_owned(),
                subject,
                received,
                note,
            };
            let request =
                create(&context, &By::cli(), tenant, &new).map_err(|error| error.to_string())?;
            println!("{}", request.id);
            Ok(())
        }
        DsarCommand::List { config, tenant } => {
            let (context, tenant) = open(&config.path, &tenant)?;
            let requests = RequestStore::new(context.store.clone())
                .list(tenant)
                .map_err(|error| error.to_string())?;
            audit_read(
                &context,
                tenant,
                format!("privacy requests ({} shown)", requests.len()),
            )?;
            for request in &requests {
                println!("{}", line(request));
            }
            Ok(())
        }
        DsarCommand::Show { config, tenant, id } => {
            let (context, tenant) = open(&config.path, &tenant)?;
            let id = parse_id(&id)?;
            let request = load(&context, tenant, id).map_err(|error| error.to_string())?;
            audit_read(&context, tenant, format!("privacy request {id}"))?;
            println!("{}", line(&request));
            println!(
                "subject: {} {}",
                request.subject.kind_str(),
                request.subject.value()
            );
            for step in &request.history {
                println!(
                    "{}  {} -> {}  by {}{}",
                    step.at.format("%Y-%m-%d %H:%M UTC"),
                    step.from.as_str(),
                    step.to.as_str(),
                    step.by,
                    step.note
                        .as_ref()
                        .map(|note| format!(": {note}"))
                        .unwrap_or_default()
                );
            }
            Ok(())
        }
        DsarCommand::Complete {
            config,
            tenant,
            id,
            method,
            verification_note,
            out,
        } => {
            let (context, tenant) = open(&config.path, &tenant)?;
            let id = parse_id(&id)?;
            complete(
                &context,
                tenant,
                id,
                &method,
                &verification_note,
                out.as_deref(),
            )
        }
    }
}
