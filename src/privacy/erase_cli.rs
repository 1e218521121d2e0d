//! `rapport privacy erase --config PATH --tenant SLUG (--email E | --phone P | --name N |
//! --contact ID) [--request ID] --yes`: erasure for operators' automation (the server must be
//! stopped, as for every command that opens the database). Progress goes to standard error, the
//! report to standard output; nothing printed names the subject except by its token's prefix.

use clap::{Args, Subcommand};

use crate::audit::Actor;
use crate::config::Config;
use crate::context::AppContext;
use crate::ids::RecordId;
use crate::privacy::erasure::{erase_subject_with_progress, ErasureProgress, SubjectRef};
use crate::privacy::ledger;
use crate::store::OpenMode;

#[derive(Subcommand)]
pub(crate) enum PrivacyCommand {
    /// Erase a data subject: delete every record naming them, their derived data and search
    /// entries, and destroy their keys. Refused while a legal hold covers them. Audited as
    /// `privacy.erased`; recorded in the erasure ledger.
    Erase {
        #[command(flatten)]
        config: crate::cli::ConfigArg,
        /// The tenant (slug).
        #[arg(long, value_name = "SLUG")]
        tenant: String,
        #[command(flatten)]
        subject: SubjectArgs,
        /// The data-subject request this erasure completes (its id), kept in the ledger.
        #[arg(long, value_name = "ID")]
        request: Option<String>,
        /// Confirm: erasure cannot be undone.
        #[arg(long)]
        yes: bool,
    },
    /// Re-apply the erasure ledger to this database (after restoring an older backup): erase
    /// again whatever it still holds about erased subjects.
    ReapplyLedger {
        #[command(flatten)]
        config: crate::cli::ConfigArg,
    },
}

/// Exactly one way of naming the subject.
#[derive(Args)]
#[group(required = true, multiple = false)]
pub(crate) struct SubjectArgs {
    #[arg(long, value_name = "ADDRESS")]
    email: Option<String>,
    #[arg(long, value_name = "NUMBER")]
    phone: Option<String>,
    #[arg(long, value_name = "NAME")]
    name: Option<String>,
    /// A contact's id: stands for its e-mail address, phone number and name.
    #[arg(long, value_name = "ID")]
    contact: Option<String>,
}

impl SubjectArgs {
    fn subject(self) -> Result<SubjectRef, String> {
        if let Some(email) = self.email {
            return Ok(SubjectRef::Email(email));
        }
        if let Some(phone) = self.phone {
            return Ok(SubjectRef::Phone(phone));
        }
        if let Some(name) = self.name {
            return Ok(SubjectRef::Name(name));
        }
        let contact = self.contact.unwrap_or_default();
        contact
            .parse::<RecordId>()
            .map(SubjectRef::Contact)
            .map_err(|_| "--contact: not a contact id".to_owned())
    }
}

fn open(path: &std::path::Path) -> Result<AppContext, String> {
    let config = Config::load(path).map_err(|error| error.to_string())?;
    AppContext::open(config, OpenMode::ExistingOnly).map_err(|error| error.to_string())
}

/// Runs a `rapport privacy …` command; the `Err` is the message printed after `error: `.
pub(crate) fn run(command: PrivacyCommand) -> Result<(), String> {
    crate::telemetry::init_for_command();
    match command {
        PrivacyCommand::Erase {
            config,
            tenant,
            subject,
            request,
            yes,
        } => {
            if !yes {
                return Err("erasure cannot be undone: add --yes to confirm".to_owned());
            }
            let subject = subject.subject()?;
            let context = open(&config.path)?;
            let tenant = context
                .tenants
                .find_by_slug(&tenant)
                .map_err(|error| error.to_string())?
                .ok_or_else(|| format!("no tenant with slug {tenant:?}"))?;
            let mut progress = |step: ErasureProgress| {
                eprintln!(
                    "{}: {} of {} deleted",
                    step.kind.as_str(),
                    step.deleted,
                    step.total
                );
            };
            let report = erase_subject_with_progress(
                &context,
                &Actor::cli(),
                tenant.id,
                &subject,
                request.as_deref(),
                &mut progress,
            )
            .map_err(|error| error.to_string())?;
            println!(
                "erased {}: {} interactions, {} contacts, {} signals deleted; {} mentions redacted in other interactions; {} subject keys destroyed",
                report.subject,
                report.interactions,
                report.contacts,
                report.signals,
                report.mentions_redacted,
                report.keys_destroyed
            );
            Ok(())
        }
        PrivacyCommand::ReapplyLedger { config } => {
            let context = open(&config.path)?;
            let report = ledger::reapply(&context).map_err(|error| error.to_string())?;
            println!(
                "{} ledger entries re-applied: {} records deleted again, {} mentions redacted again, {} subject keys destroyed again",
                report.entries, report.records_deleted, report.mentions_redacted, report.keys_destroyed
            );
            Ok(())
        }
    }
}
