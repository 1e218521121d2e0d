//! Mentions of an erased subject in other people's conversations.
//!
//! Erasure deletes every conversation the subject wrote in. A conversation someone else wrote
//! may still *mention* the subject — "please copy my colleague jane@example.com", or a quoted
//! "jane@example.com wrote:" — and there the subject's e-mail addresses and phone numbers are
//! replaced by [`ERASED_MARK`], in the subject line and in each message's text, quoted text and
//! signature, while the rest of the conversation stays ([`redact_interaction`]). The rewrite goes through the API's write path
//! (`api::resources::write_record`, audited `data.written` via `erasure`), so the search index,
//! the reference index and the dashboards follow; the interaction's analyses, which read the old
//! text (a summary may quote the address), are removed and the new version is queued.
//!
//! What matches is decided by the subject's keyed tokens, never by an address kept in clear: each
//! e-mail address and phone number the PII detector finds in a text is normalised and its token
//! compared with the subject's ([`redact_text`]). So the erasure ledger, which keeps only tokens
//! and record ids, can redact a restored older copy of the same interactions again.

use crate::analysis::AnalysisKind;
use crate::api::ApiError;
use crate::audit::Actor;
use crate::context::AppContext;
use crate::ids::{RecordId, TenantId};
use crate::pii::{Detector, PiiType};
use crate::privacy::erasure::ErasureError;
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
/// messages (text, quoted text, signature) and writes it back; returns whether anything changed (an interaction gone, or no
/// longer mentioning the subject, is left alone).
pub fn redact_interaction(
    context: &AppContext,
    actor: &Actor,
    tenant: TenantId,
    id: RecordId,
    tokens: &[[u8; 32]],
) -> Result<bool, ErasureError> {
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
        // Quoted text ("jane@example.com wrote:") and signatures are shown with the message.
        for part in [&mut message.quoted, &mut message.signature] {
            if let Some(text) = part.as_deref() {
                if let Some(redacted) = redact_text(context, tenant, &detector, text, tokens)? {
                    *part = Some(redacted);
                    changed = true;
                }
            }
        }
    }
    if !changed {
        return Ok(false);
    }
    // The rewrite first, so that nothing is removed for a rewrite that then fails. It queues the
    // new version for analysis; the analyses of older versions (which read the old text) are
    // removed, not ones the worker may already have made of the new version.
    let (written, _) =
        crate::api::resources::write_record(context, actor, None, tenant, "erasure", record)
            .map_err(|error| rewrite_failed(id, &error))?;
    let stale: Vec<(RecordId, AnalysisKind)> = context
        .analysis
        .analyses(tenant, id)?
        .iter()
        .filter(|analysis| analysis.is_stale(written.updated))
        .map(|analysis| (id, analysis.kind()))
        .collect();
    context.analysis.remove_analyses(tenant, &stale)?;
    Ok(true)
}

/// The error for a mention's rewrite that failed: by then the subject's own records are deleted,
/// so the erasure did not finish (`RequestError::ErasureFailed`, never "refused before anything
/// was erased"). It names the interaction by id and the cause by kind — the schema's field
/// pointers and rules, or the storage error — never the text.
fn rewrite_failed(id: RecordId, error: &ApiError) -> ErasureError {
    let cause = match error {
        ApiError::Invalid(problems) => format!(
            "the redacted record breaks the schema: {}",
            problems
                .iter()
                .map(|problem| format!(
                    "{} {}",
                    problem.pointer.as_deref().unwrap_or("record"),
                    problem.detail
                ))
                .collect::<Vec<_>>()
                .join("; ")
        ),
        ApiError::Internal(cause) => cause.clone(),
        other => other.to_string(),
    };
    ErasureError::Rewrite { id, cause }
}
