//! `rapport retention preview|run --config PATH --tenant SLUG`: the sweep from the command line
//! (the server must be stopped, as for every command that opens the database). Progress goes to
//! standard error, the report to standard output.

use std::io::Write;

use chrono::Utc;
use clap::Subcommand;

use crate::audit::Actor;
use crate::config::Config;
use crate::context::AppContext;
use crate::retention::{preview, run as run_sweep, Keep, Progress, RunReport, Trigger};
use crate::store::OpenMode;

#[derive(Subcommand)]
pub(crate) enum RetentionCommand {
    /// Show, per data category, what a run now would delete and what legal holds keep. Deletes
    /// nothing and stores nothing.
    Preview {
        #[command(flatten)]
        config: crate::cli::ConfigArg,
        /// The tenant (slug).
        #[arg(long, value_name = "SLUG")]
        tenant: String,
    },
    /// Delete what has outlived the tenant's retention periods (except what legal holds keep),
    /// store the report and audit it as `retention.run`; progress on standard error.
    Run {
        #[command(flatten)]
        config: crate::cli::ConfigArg,
        /// The tenant (slug).
        #[arg(long, value_name = "SLUG")]
        tenant: String,
    },
}

fn open(path: &std::path::Path) -> Result<AppContext, String> {
    let config = Config::load(path).map_err(|error| error.to_string())?;
    AppContext::open(config, OpenMode::ExistingOnly).map_err(|error| error.to_string())
}

fn find(context: &AppContext, slug: &str) -> Result<crate::tenants::Tenant, String> {
    context
        .tenants
        .find_by_slug(slug)
        .map_err(|error| error.to_string())?
        .ok_or_else(|| format!("no tenant with slug {slug:?}"))
}

/// Prints a report as one line per category: `category  keep  deleted  held  note`.
pub fn print_report(out: &mut dyn Write, report: &RunReport) -> std::io::Result<()> {
    let verb = if report.dry_run {
        "would delete"
    } else {
        "deleted"
    };
    writeln!(
        out,
        "{:<18} {:<28} {:>12} {:>10}",
        "category", "keep", verb, "held"
    )?;
    for count in &report.counts {
        let keep = match count.keep {
            Keep::Forever => "life of the tenant".to_owned(),
            Keep::Days(_) => count.keep.describe(),
        };
        write!(
            out,
            "{:<18} {:<28} {:>12} {:>10}",
            count.category.as_str(),
            keep,
            count.deleted,
            count.held
        )?;
        if let Some(note) = &count.note {
            write!(out, "  ({note})")?;
        }
        writeln!(out)?;
    }
    writeln!(
        out,
        "total: {} {verb}, {} held{}",
        report.total_deleted(),
        report.total_held(),
        if report.errors.is_empty() {
            String::new()
        } else {
            format!("; errors: {}", report.errors.join(", "))
        }
    )
}

/// Runs a `rapport retention …` command; the `Err` is the message printed after `error: `.
pub(crate) fn run(command: RetentionCommand) -> Result<(), String> {
    crate::telemetry::init_for_command();
    let mut stdout = std::io::stdout().lock();
    match command {
        RetentionCommand::Preview { config, tenant } => {
            let context = open(&config.path)?;
            let tenant = find(&context, &tenant)?;
            let report = preview(&context, &Actor::cli(), tenant.id, Utc::now())
                .map_err(|error| error.to_string())?;
            print_report(&mut stdout, &report).map_err(|error| error.to_string())
        }
        RetentionCommand::Run { config, tenant } => {
            let context = open(&config.path)?;
            let tenant = find(&context, &tenant)?;
            let mut progress = |step: Progress| {
                eprintln!(
                    "{}: {} examined, {} deleted",
                    step.what, step.examined, step.deleted
                );
            };
            let report = run_sweep(
                &context,
                &Actor::cli(),
                None,
                tenant.id,
                Trigger::CommandLine,
                Utc::now(),
                &mut progress,
            )
            .map_err(|error| error.to_string())?;
            print_report(&mut stdout, &report).map_err(|error| error.to_string())?;
            if report.errors.is_empty() {
                Ok(())
            } else {
                Err(format!(
                    "the run stopped in some categories: {}",
                    report.errors.join(", ")
                ))
            }
        }
    }
}
