//! `rapport tenant offboard --config PATH --tenant SLUG [--wind-down-days N] --export DIR`, and
//! `… --cancel` and `… --status` (the server must be stopped, as for every command that opens
//! the database). The purge itself is the scheduler's, in `rapport serve`.

use std::io::Write;
use std::path::PathBuf;

use chrono::Utc;
use clap::Args;

use crate::audit::Actor;
use crate::config::Config;
use crate::context::AppContext;
use crate::offboarding::{self, Offboarding, OffboardingState, StartRequest};
use crate::store::OpenMode;

#[derive(Args)]
pub(crate) struct OffboardArgs {
    #[command(flatten)]
    config: crate::cli::ConfigArg,
    /// The tenant (slug).
    #[arg(long, value_name = "SLUG")]
    tenant: String,
    /// Days of wind-down before the purge, 1 to 90 (default 30).
    #[arg(long, value_name = "N", conflicts_with_all = ["cancel", "status"])]
    wind_down_days: Option<i64>,
    /// A new directory for the export (mode 0700; files 0600), required to start.
    #[arg(long, value_name = "DIR", required_unless_present_any = ["cancel", "status"], conflicts_with_all = ["cancel", "status"])]
    export: Option<PathBuf>,
    /// Cancel the tenant's wind-down: it works again as before.
    #[arg(long, conflicts_with = "status")]
    cancel: bool,
    /// Print where the tenant's offboarding stands.
    #[arg(long)]
    status: bool,
}

fn open(path: &std::path::Path) -> Result<AppContext, String> {
    let config = Config::load(path).map_err(|error| error.to_string())?;
    AppContext::open(config, OpenMode::ExistingOnly).map_err(|error| error.to_string())
}

fn print_status(out: &mut dyn Write, offboarding: &Offboarding) -> std::io::Result<()> {
    writeln!(
        out,
        "tenant {} ({}): {}",
        offboarding.slug,
        offboarding.tenant,
        offboarding.state_label()
    )?;
    match &offboarding.state {
        OffboardingState::Purged { at, destroyed } => writeln!(
            out,
            "purged {}: {} key(s) destroyed, {} tree(s) with {} record(s) deleted; the slug stays reserved. Rotate the master key (`rapport keys rotate-master`) so that copies of the wrapped keys in old log segments and backups can no longer be unwrapped",
            at.format("%Y-%m-%d %H:%M UTC"),
            destroyed.keys,
            destroyed.trees,
            destroyed.records
        )?,
        _ => writeln!(
            out,
            "locked; purged after {} ({} days of wind-down)",
            offboarding.purge_after_text(),
            offboarding.wind_down_days
        )?,
    }
    writeln!(out, "export {}", offboarding.export.path.display())?;
    for file in &offboarding.export.files {
        writeln!(
            out,
            "  {}  {:>10}  sha256 {}",
            file.name, file.records, file.sha256
        )?;
    }
    writeln!(
        out,
        "manifest sha256 {}",
        offboarding.export.manifest_sha256
    )
}

/// Runs `rapport tenant offboard`; the error is the line to print after `error: `.
pub(crate) fn run(args: OffboardArgs) -> Result<(), String> {
    let context = open(&args.config.path)?;
    let mut out = std::io::stdout().lock();
    let offboarding = if args.status {
        offboarding::status(&context, &args.tenant)
            .map_err(|error| error.to_string())?
            .ok_or_else(|| format!("tenant {} is not being offboarded", args.tenant))?
    } else if args.cancel {
        let cancelled = offboarding::cancel(&context, &Actor::cli(), None, &args.tenant)
            .map_err(|error| error.to_string())?;
        writeln!(
            out,
            "offboarding of {} cancelled: the tenant works as before",
            cancelled.slug
        )
        .map_err(|error| error.to_string())?;
        return Ok(());
    } else {
        let export_dir = args
            .export
            .ok_or("--export DIR is required to start an offboarding")?;
        offboarding::start(
            &context,
            &StartRequest {
                actor: &Actor::cli(),
                client: None,
                slug: &args.tenant,
                wind_down_days: args.wind_down_days,
                export_dir: &export_dir,
            },
            Utc::now(),
        )
        .map_err(|error| error.to_string())?
    };
    print_status(&mut out, &offboarding).map_err(|error| error.to_string())
}
