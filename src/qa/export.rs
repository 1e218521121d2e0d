//! The QA report as CSV (`GET /t/{tenant}/qa/export.csv`), with the QA page's filters.
//!
//! One row per scored interaction, newest first: its id and console link, the date of its first
//! message, channel, agent and agent kind, the effective overall score and auto-fail (overrides
//! applied, as every report), then for each criterion its effective points (`n/a` when not
//! applicable, empty when the interaction was scored without it) and whether a QA lead overrode
//! it. The criteria columns are the tenant's scorecard's, then any other criterion the rows were
//! scored with (an older scorecard's), by id.
//!
//! Bounded like the QA page: at most [`MAX_EXPORTED`] rows and as many scored interactions
//! examined; filters that reach further are refused with a message that says to narrow them.
//! Audited as `qa.exported` with the filters, the count and the exported interactions' ids.

use crate::audit::{Actor, AuditAction, AuditEvent};
use crate::context::AppContext;
use crate::csv_cell::defuse;
use crate::ids::TenantId;
use crate::interactions::query::first_message_time;
use crate::qa::store::QaStore;
use crate::qa::{effective_points, list_scored, override_for, QaError, QaFilter};

/// Rows one export holds at most, and scored interactions it examines at most.
pub const MAX_EXPORTED: usize = crate::records::MAX_SCANNED_PER_PAGE;

/// The columns before the criteria's.
pub const FIXED_COLUMNS: [&str; 9] = [
    "interaction_id",
    "link",
    "date",
    "channel",
    "agent",
    "agent_kind",
    "overall",
    "auto_fail",
    "overridden_criteria",
];

/// Why an export was refused: the filters reach past the bound.
pub const TOO_BROAD: &str = "These filters match more scored interactions than one export holds (5,000, newest first); nothing was exported. Narrow them (an agent, an agent kind, a score range) and export again.";

/// The filters as the audit entry names them (no tenant content besides the agent filter, which
/// the entry keeps sealed like every entry).
fn describe(filter: &QaFilter) -> String {
    let mut parts = Vec::new();
    if let Some(kind) = filter.agent_kind {
        parts.push(format!("agent kind {}", kind.as_str()));
    }
    if let Some(agent) = &filter.agent {
        parts.push(format!("agent {agent}"));
    }
    if let Some(min) = filter.min_score {
        parts.push(format!("score ≥ {min}"));
    }
    if let Some(max) = filter.max_score {
        parts.push(format!("score ≤ {max}"));
    }
    if filter.auto_fail_only {
        parts.push("auto-fail only".to_owned());
    }
    if parts.is_empty() {
        "no filters".to_owned()
    } else {
        parts.join(", ")
    }
}

/// The QA report of the scored interactions that pass `filter`, as CSV bytes; `None` when the
/// filters reach past the bound ([`TOO_BROAD`]). `base` is the tenant's console path
/// (`/t/{slug}`). Audited.
pub fn export_qa(
    context: &AppContext,
    actor: &Actor,
    client: Option<String>,
    tenant: TenantId,
    filter: &QaFilter,
    base: &str,
) -> Result<Option<Vec<u8>>, QaError> {
    let page = list_scored(context, tenant, filter, MAX_EXPORTED, MAX_EXPORTED)?;
    if page.more || page.scan_limit.is_some() {
        return Ok(None);
    }
    let qa_store = QaStore::new(context.store.clone());
    let mut criteria: Vec<String> = qa_store
        .scorecard(tenant)?
        .criteria
        .iter()
        .map(|criterion| criterion.id.clone())
        .collect();
    for row in &page.rows {
        for score in &row.result.criteria {
            if !criteria.contains(&score.criterion) {
                criteria.push(score.criterion.clone());
            }
        }
    }
    let mut header: Vec<String> = FIXED_COLUMNS.iter().map(|&name| name.to_owned()).collect();
    for id in &criteria {
        header.push(format!("{id}_points"));
        header.push(format!("{id}_overridden"));
    }
    // Writing to memory fails only on rows of unequal length, which are built equal here.
    let failed = |error: csv::Error| {
        QaError::Invalid(format!("the QA export could not be written: {error}"))
    };
    let mut writer = csv::Writer::from_writer(Vec::new());
    writer.write_record(&header).map_err(failed)?;
    let mut ids = Vec::with_capacity(page.rows.len());
    for row in &page.rows {
        let overrides = qa_store.overrides(tenant, row.interaction)?;
        let interaction = context.interactions.get(tenant, row.interaction)?;
        let points = effective_points(&row.result, &overrides);
        let mut fields = vec![
            row.interaction.to_string(),
            format!("{base}/interactions/{}", row.interaction),
            interaction
                .as_ref()
                .and_then(|interaction| first_message_time(&interaction.record))
                .map(|time| time.to_rfc3339())
                .unwrap_or_default(),
            interaction
                .as_ref()
                .map(|interaction| interaction.record.channel.as_str().to_owned())
                .unwrap_or_default(),
            defuse(row.result.agent.as_deref().unwrap_or_default()),
            row.result.agent_kind.as_str().to_owned(),
            row.effective
                .score
                .map(|score| format!("{score:.1}"))
                .unwrap_or_default(),
            row.effective.auto_fail.to_string(),
            row.overridden.to_string(),
        ];
        for id in &criteria {
            let found = row
                .result
                .criteria
                .iter()
                .zip(&points)
                .find(|(score, _)| &score.criterion == id);
            if let Some((score, effective)) = found {
                fields.push(effective.map_or_else(|| "n/a".to_owned(), |p| p.to_string()));
                fields.push(override_for(score, &overrides).is_some().to_string());
            } else {
                fields.push(String::new());
                fields.push(String::new());
            }
        }
        writer.write_record(&fields).map_err(failed)?;
        ids.push(row.interaction.to_string());
    }
    let bytes = writer.into_inner().map_err(|error| {
        QaError::Invalid(format!("the QA export could not be written: {error}"))
    })?;
    context.audit(
        AuditEvent::new(
            Some(tenant),
            actor.clone(),
            AuditAction::QaReportExported,
            format!(
                "QA report (csv), {}: {} interactions: [{}]",
                describe(filter),
                ids.len(),
                ids.join(", ")
            ),
        )
        .client(client),
    )?;
    Ok(Some(bytes))
}
