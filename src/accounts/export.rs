//! The account list with health and its reasons, as CSV (`GET /t/{tenant}/accounts/export.csv`).
//!
//! One row per account: its name, source, owner, ARR and renewal date, and its latest health
//! snapshot (score, band, the explanation's sentences, the day it was computed). Texts from
//! outside are defused against spreadsheet formulas ([`crate::csv_cell::defuse`]).
//!
//! Bounded like a page: at most [`MAX_EXPORTED`] accounts (the newest imported), read in one
//! request, and a tenant with more is refused with a message rather than read whole in one
//! request; the rows are built in memory (a few hundred bytes each, so about 2 MB at the
//! bound). Audited as `account.exported` with the number of accounts.

use crate::audit::{Actor, AuditAction, AuditError, AuditEvent};
use crate::context::AppContext;
use crate::csv_cell::defuse;
use crate::health::HealthStore;
use crate::ids::TenantId;
use crate::records::Order;
use crate::store::StoreError;

/// Accounts one export holds at most.
pub const MAX_EXPORTED: usize = crate::records::MAX_SCANNED_PER_PAGE;

/// The CSV header.
pub const EXPORT_COLUMNS: [&str; 12] = [
    "account_id",
    "name",
    "source_system",
    "source_id",
    "owner",
    "arr",
    "renewal_date",
    "score",
    "band",
    "explanation",
    "computed_day",
    "link",
];

#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Audit(#[from] AuditError),
    #[error("this tenant has more than {MAX_EXPORTED} accounts, more than one export holds; nothing was exported")]
    TooBroad,
    /// The file could not be written (not the user's fault).
    #[error("the accounts export could not be written: {0}")]
    Write(String),
}

/// Every account of the tenant (newest imported first) with its latest health, as CSV bytes.
/// Audited. `base` is the console path of the tenant (`/t/{slug}`), for each row's link.
pub fn export_accounts(
    context: &AppContext,
    actor: &Actor,
    client: Option<String>,
    tenant: TenantId,
    base: &str,
) -> Result<Vec<u8>, ExportError> {
    let found = context
        .accounts
        .page(tenant, Order::NewestFirst, None, MAX_EXPORTED, |_| true)?;
    if found.next_cursor.is_some() || found.scan_limit_reached {
        return Err(ExportError::TooBroad);
    }
    let health = HealthStore::new(context.store.clone());
    let failed = |error: &dyn std::fmt::Display| ExportError::Write(error.to_string());
    let mut writer = csv::Writer::from_writer(Vec::new());
    writer
        .write_record(EXPORT_COLUMNS)
        .map_err(|error| failed(&error))?;
    for account in &found.items {
        let latest = health.history(tenant, account.id, 1)?.pop();
        let record = &account.record;
        let (score, band, explanation, day) = match &latest {
            Some(snapshot) => (
                snapshot
                    .score
                    .map(|score| format!("{:.1}", (score * 10.0).round() / 10.0))
                    .unwrap_or_default(),
                snapshot
                    .band
                    .map(|band| band.label().to_owned())
                    .unwrap_or_default(),
                snapshot.explanation.sentences().join(" "),
                snapshot.day.to_string(),
            ),
            None => Default::default(),
        };
        writer
            .write_record([
                account.id.to_string(),
                defuse(&record.name),
                defuse(&record.source_system),
                defuse(&record.source_id),
                defuse(record.owner.as_deref().unwrap_or_default()),
                record
                    .arr
                    .map(|arr| format!("{arr:.2}"))
                    .unwrap_or_default(),
                record
                    .renewal_date
                    .map(|date| date.to_string())
                    .unwrap_or_default(),
                score,
                band,
                defuse(&explanation),
                day,
                format!("{base}/accounts/{}", account.id),
            ])
            .map_err(|error| failed(&error))?;
    }
    let bytes = writer.into_inner().map_err(|error| failed(&error))?;
    context.audit(
        AuditEvent::new(
            Some(tenant),
            actor.clone(),
            AuditAction::AccountsExported,
            format!("accounts export (csv): {} accounts", found.items.len()),
        )
        .client(client),
    )?;
    Ok(bytes)
}
