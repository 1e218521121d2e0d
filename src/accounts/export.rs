//! The account list with health and its reasons, as CSV (`GET /t/{tenant}/accounts/export.csv`).
//!
//! One row per account: its name, source, owner, ARR and renewal date, and its latest health
//! snapshot (score, band, the explanation's sentences, the day it was computed). Texts from
//! outside are defused against spreadsheet formulas ([`crate::csv_cell::defuse`]).
//!
//! The console's export is bounded like a page: at most [`MAX_EXPORTED`] accounts (the newest
//! imported), built in memory (a few hundred bytes each, so about 2 MB at the bound); a tenant
//! with more is refused with a message pointing to `rapport accounts export`
//! ([`export_all_accounts`]), which streams every account a page at a time, so its memory stays
//! bounded too. Both are audited as `account.exported` with the number of accounts.

use crate::accounts::Account;
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
    #[error("this tenant has more than {MAX_EXPORTED} accounts, more than one export from the console holds; nothing was exported. `rapport accounts export --tenant <slug>` exports them all")]
    TooBroad,
    /// The file could not be written (not the user's fault).
    #[error("the accounts export could not be written: {0}")]
    Write(String),
}

/// Writes one row per account of `accounts` with its latest health snapshot.
fn write_rows<W: std::io::Write>(
    context: &AppContext,
    tenant: TenantId,
    base: &str,
    accounts: &[Account],
    writer: &mut csv::Writer<W>,
) -> Result<(), ExportError> {
    let health = HealthStore::new(context.store.clone());
    for account in accounts {
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
            .map_err(|error| ExportError::Write(error.to_string()))?;
    }
    Ok(())
}

fn audit(
    context: &AppContext,
    actor: &Actor,
    client: Option<String>,
    tenant: TenantId,
    count: usize,
) -> Result<(), ExportError> {
    context.audit(
        AuditEvent::new(
            Some(tenant),
            actor.clone(),
            AuditAction::AccountsExported,
            format!("accounts export (csv): {count} accounts"),
        )
        .client(client),
    )?;
    Ok(())
}

/// Every account of the tenant (newest imported first) with its latest health, as CSV bytes,
/// at most [`MAX_EXPORTED`] (else [`ExportError::TooBroad`]). Audited. `base` is the console
/// path of the tenant (`/t/{slug}`), for each row's link.
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
    let mut writer = csv::Writer::from_writer(Vec::new());
    writer
        .write_record(EXPORT_COLUMNS)
        .map_err(|error| ExportError::Write(error.to_string()))?;
    write_rows(context, tenant, base, &found.items, &mut writer)?;
    let bytes = writer
        .into_inner()
        .map_err(|error| ExportError::Write(error.to_string()))?;
    audit(context, actor, client, tenant, found.items.len())?;
    Ok(bytes)
}

/// Accounts read per page by [`export_all_accounts`].
const STREAM_PAGE: usize = 1000;

/// Every account of the tenant, oldest imported first, without the console's bound, streamed to
/// `out` a page of [`STREAM_PAGE`] accounts at a time (`rapport accounts export`). Audited.
/// Returns how many accounts were written.
pub fn export_all_accounts(
    context: &AppContext,
    actor: &Actor,
    tenant: TenantId,
    base: &str,
    out: impl std::io::Write,
) -> Result<usize, ExportError> {
    let mut writer = csv::Writer::from_writer(out);
    writer
        .write_record(EXPORT_COLUMNS)
        .map_err(|error| ExportError::Write(error.to_string()))?;
    let mut cursor = None;
    let mut count = 0;
    loop {
        let page =
            context
                .accounts
                .page(tenant, Order::OldestFirst, cursor, STREAM_PAGE, |_| true)?;
        write_rows(context, tenant, base, &page.items, &mut writer)?;
        count += page.items.len();
        match page.next_cursor {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }
    writer
        .flush()
        .map_err(|error| ExportError::Write(error.to_string()))?;
    audit(context, actor, None, tenant, count)?;
    Ok(count)
}
