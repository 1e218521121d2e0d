//! Mentions of an erased subject in other people's conversations.
//!
//! Erasure deletes every conversation the subject wrote in. A conversation someone else wrote
//! may still *mention* the subject — "please copy my colleague jane@example.com" — and there the
//! subject's e-mail addresses and phone numbers are replaced by [`ERASED_MARK`] while the rest of
//! the conversation stays ([`redact_interaction`]). The rewrite goes through the API's write path
//! (`api::resources::write_record`, audited `data.written` via `erasure`), so the search index,
//! the reference index and the dashboards follow; the interaction's analyses, which read the old
//! text (a summary may quote the address), are removed and the new version is queued.
//!
//! What matches is decided by the subject's keyed tokens, never by an address kept in clear: each
//! e-mail address and phone number the PII detector finds in a text is normalised and its token
//! compared with the subject's ([`redact_text`]). So the erasure ledger, which keeps only tokens
//! and record ids, can redact a restored older copy of the same interactions again.

use crate::analysis::AnalysisKind;
use crate::audit::Actor;
use crate::context::AppContext;
use crate::ids::{RecordId, TenantId};
use crate::pii::{Detector, PiiType};
use crate::privacy::subjects::Subject;
use crate::store::StoreError;

/// What replaces a mention of an erased subject.
pub const ERASED_MARK: &str = "[erased]";

/// `text` with every e-mail address and phone number whose keyed token is one of `tokens`
/// replaced by [`ERASED_MARK`]; `None` when nothing in it matched.
pub fn redact_text(
    context: &AppContext,
    tenant: TenantId,
    detector: &Detector,
    text: &str,
    tokens: &[[u8; 32]],
) -> Result<Option<String>, StoreError> {
    let mut redacted = String::with_capacity(text.len());
    let mut copied = 0;
    for finding in detector.detect(text) {
        let value = &text[finding.span.clone()];
        let subject = match finding.kind {
            PiiType::Email => Subject::email(value),
            PiiType::Phone => Subject::phone(value),
            _ => None,
        };
        let Some(subject) = subject else {
            continue;
        };
        if tokens.contains(&context.store.subject_token(tenant, &subject.key_name())?) {
            redacted.push_str(&text[copied..finding.span.start]);
            redacted.push_str(ERASED_MARK);
            copied = finding.span.end;
        }
    }
    if copied == 0 {
        return Ok(None);
    }
    redacted.push_str(&text[copied..]);
    Ok(Some(redacted))
}

/// Replaces the mentions of the subject (by `tokens`) in interaction `id`'s subject line and
/// messages and writes it back; returns whether anything changed (an interaction gone, or no
/// longer mentioning the subject, is left alone).
pub fn redact_interaction(
    context: &AppContext,
    actor: &Actor,
    tenant: TenantId,
    id: RecordId,
    tokens: &[[u8; 32]],
) -> Result<bool, super::erasure::ErasureError> {
    let stored = match context.interactions.get(tenant, id) {
        Ok(Some(stored)) => stored,
        // Gone, or sealed under a key another erasure destroyed: nothing left to redact.
        Ok(None) | Err(StoreError::SubjectErased { .. }) => return Ok(false),
        Err(error) => return Err(error.into()),
    };
    let detector = Detector::default();
    let mut record = stored.record;
    let mut changed = false;
    if let Some(subject) = &record.subject {
        if let Some(redacted) = redact_text(context, tenant, &detector, subject, tokens)? {
            record.subject = Some(redacted);
            changed = true;
        }
    }
    for message in &mut record.messages {
        if let Some(redacted) = redact_text(context, tenant, &detector, &message.text, tokens)? {
            message.text = redacted;
            changed = true;
        }
    }
    if !changed {
        return Ok(false);
    }
    let analyses: Vec<(RecordId, AnalysisKind)> = AnalysisKind::STORED
        .iter()
        .map(|kind| (id, *kind))
        .collect();
    context.analysis.remove_analyses(tenant, &analyses)?;
    crate::api::resources::write_record(context, actor, None, tenant, "erasure", record).map_err(
        |_| super::erasure::ErasureError::Invalid {
            field: "mention",
            message: format!("interaction {id} could not be rewritten without the subject"),
        },
    )?;
    Ok(true)
}
