//! Legal holds: a privacy officer suspends deletion of part of a tenant's data — all of it, one
//! account's, one data subject's, one tag's, or one date range's — with a reason, an owner and an
//! optional end date. A held record is never deleted by retention; offboarding will ask the same
//! question through [`ActiveHolds::is_held`].
//!
//! Holds live in the tenant's scope, sealed (`legal_holds`, by [`HoldId`]). A subject hold keeps
//! the subject's e-mail address inside the sealed value and compares records by the address's
//! keyed token (`legal_hold_subjects`, the blind-index approach of `privacy`), so checking a
//! record never needs an address in clear outside a sealed value. The audit log names a hold by
//! its id and kind, never by its subject.

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};

use crate::audit::{Actor, AuditAction, AuditEvent};
use crate::context::AppContext;
use crate::ids::{HoldId, TenantId};
use crate::interactions::InteractionRecord;
use crate::privacy::normalise_email;
use crate::retention::RetentionError;
use crate::signals::SignalRecord;
use crate::store::{BlindIndex, Collection, Scope, StoreError};

const COLLECTION: &str = "legal_holds";
const SUBJECT_INDEX: &str = "legal_hold_subjects";
const MAX_TEXT_CHARS: usize = 500;
const MAX_VALUE_CHARS: usize = 200;

/// What a hold covers.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum HoldScope {
    /// Every record of the tenant.
    Tenant,
    /// Records of one account (its source id or domain, as records name it; compared without
    /// regard to case).
    Account { account: String },
    /// Records in which the subject wrote (any message's author address), or signals naming the
    /// subject as contact or lead e-mail. `token` is the address's keyed token.
    Subject { email: String, token: [u8; 32] },
    /// Interactions carrying the tag (compared without regard to case).
    Tag { tag: String },
    /// Records whose time (see `retention::record_time`) falls on or between the two days (UTC).
    DateRange { from: NaiveDate, to: NaiveDate },
}

impl HoldScope {
    pub fn kind_str(&self) -> &'static str {
        match self {
            Self::Tenant => "tenant",
            Self::Account { .. } => "account",
            Self::Subject { .. } => "subject",
            Self::Tag { .. } => "tag",
            Self::DateRange { .. } => "date range",
        }
    }

    /// What the hold covers, as the holds page shows it (tenant content: pages escape it).
    pub fn describe(&self) -> String {
        match self {
            Self::Tenant => "all of the tenant's data".to_owned(),
            Self::Account { account } => format!("account {account}"),
            Self::Subject { email, .. } => format!("subject {email}"),
            Self::Tag { tag } => format!("tag {tag}"),
            Self::DateRange { from, to } => format!("records dated {from} to {to}"),
        }
    }
}

/// One legal hold.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LegalHold {
    pub id: HoldId,
    pub scope: HoldScope,
    /// Why (the matter's reference); the privacy officer's words.
    pub reason: String,
    /// Who answers for the hold (a person or team, as typed).
    pub owner: String,
    /// The last day the hold applies (UTC), when it ends by itself.
    pub ends: Option<NaiveDate>,
    pub created_by: String,
    pub created_at: DateTime<Utc>,
    /// When and by whom it was released; a released hold is kept for the record.
    pub released: Option<(DateTime<Utc>, String)>,
}

impl LegalHold {
    /// Whether the hold applies at `now`: not released, and not past its end date.
    pub fn is_active(&self, now: DateTime<Utc>) -> bool {
        self.released.is_none() && self.ends.is_none_or(|ends| now.date_naive() <= ends)
    }
}

/// What a hold looks at in a record.
#[derive(Clone, Debug)]
pub struct HeldFacts<'a> {
    pub account: Option<&'a str>,
    pub emails: Vec<&'a str>,
    pub tags: &'a [String],
    pub time: DateTime<Utc>,
}

impl<'a> HeldFacts<'a> {
    /// An interaction's facts: its account, every message author's address, its tags, and its
    /// time (the latest message's).
    pub fn of_interaction(record: &'a InteractionRecord, time: DateTime<Utc>) -> Self {
        Self {
            account: record.account.as_deref(),
            emails: record
                .messages
                .iter()
                .filter_map(|message| message.author_email.as_deref())
                .collect(),
            tags: &record.tags,
            time,
        }
    }

    /// A signal's facts: its account, its contact (and a lead's e-mail), and `occurred_at`.
    pub fn of_signal(record: &'a SignalRecord) -> Self {
        let mut emails: Vec<&str> = record.contact.iter().map(String::as_str).collect();
        if let crate::signals::Signal::Lead {
            email: Some(email), ..
        } = &record.signal
        {
            emails.push(email);
        }
        Self {
            account: record.account.as_deref(),
            emails,
            tags: &[],
            time: record.occurred_at,
        }
    }
}

/// The holds of one tenant that apply now, loaded once per sweep.
pub struct ActiveHolds {
    holds: Vec<LegalHold>,
    index: BlindIndex<()>,
}

impl ActiveHolds {
    pub fn load(
        context: &AppContext,
        tenant: TenantId,
        now: DateTime<Utc>,
    ) -> Result<Self, StoreError> {
        let holds = collection(context, tenant)?
            .scan()
            .map(|entry| entry.map(|(_, hold)| hold))
            .filter(|hold| hold.as_ref().map_or(true, |hold| hold.is_active(now)))
            .collect::<Result<_, _>>()?;
        Ok(Self {
            holds,
            index: subject_index(context, tenant)?,
        })
    }

    pub fn is_empty(&self) -> bool {
        self.holds.is_empty()
    }

    /// How many holds apply now (offboarding names the number when it refuses).
    pub fn len(&self) -> usize {
        self.holds.len()
    }

    /// Whether any active hold covers a record with these facts: such a record is never deleted
    /// by retention (nor, later, by offboarding).
    pub fn is_held(&self, facts: &HeldFacts<'_>) -> bool {
        self.holding(facts).is_some()
    }

    /// The first active hold covering a record with these facts (erasure names it in its refusal).
    pub fn holding(&self, facts: &HeldFacts<'_>) -> Option<&LegalHold> {
        let mut tokens: Option<Vec<[u8; 32]>> = None;
        self.holds.iter().find(|hold| match &hold.scope {
            HoldScope::Tenant => true,
            HoldScope::Account { account } => facts
                .account
                .is_some_and(|theirs| theirs.trim().eq_ignore_ascii_case(account)),
            HoldScope::Tag { tag } => facts
                .tags
                .iter()
                .any(|theirs| theirs.trim().eq_ignore_ascii_case(tag)),
            HoldScope::DateRange { from, to } => {
                let day = facts.time.date_naive();
                *from <= day && day <= *to
            }
            HoldScope::Subject { token, .. } => tokens
                .get_or_insert_with(|| {
                    facts
                        .emails
                        .iter()
                        .filter_map(|email| normalise_email(email))
                        .map(|email| self.index.pseudonym(&email))
                        .collect()
                })
                .contains(token),
        })
    }

    /// The first active hold on the data subject with address `email` itself (a subject hold).
    pub fn holding_subject(&self, email: &str) -> Option<&LegalHold> {
        let token = self.index.pseudonym(&normalise_email(email)?);
        self.holds.iter().find(
            |hold| matches!(&hold.scope, HoldScope::Subject { token: held, .. } if *held == token),
        )
    }
}

fn collection(
    context: &AppContext,
    tenant: TenantId,
) -> Result<Collection<HoldId, LegalHold>, StoreError> {
    context.store.collection(Scope::Tenant(tenant), COLLECTION)
}

fn subject_index(context: &AppContext, tenant: TenantId) -> Result<BlindIndex<()>, StoreError> {
    context
        .store
        .blind_index(Scope::Tenant(tenant), SUBJECT_INDEX)
}

/// A new hold as typed in the form or on the command line, before validation.
#[derive(Clone, Debug, Default)]
pub struct NewHold {
    /// `tenant`, `account`, `subject`, `tag` or `date_range`.
    pub kind: String,
    /// The account, e-mail address or tag (unused for `tenant` and `date_range`).
    pub value: String,
    /// `YYYY-MM-DD`, for `date_range`.
    pub from: String,
    pub to: String,
    pub reason: String,
    pub owner: String,
    /// `YYYY-MM-DD` or empty.
    pub ends: String,
}

fn invalid(field: &'static str, message: impl Into<String>) -> RetentionError {
    RetentionError::Invalid {
        field,
        message: message.into(),
    }
}

fn parse_day(field: &'static str, text: &str) -> Result<NaiveDate, RetentionError> {
    NaiveDate::parse_from_str(text.trim(), "%Y-%m-%d")
        .map_err(|_| invalid(field, "give a date as YYYY-MM-DD"))
}

fn short_value(field: &'static str, text: &str) -> Result<String, RetentionError> {
    let text = text.trim();
    if text.is_empty()
        || text.chars().count() > MAX_VALUE_CHARS
        || text.chars().any(char::is_control)
    {
        return Err(invalid(
            field,
            format!("must be 1 to {MAX_VALUE_CHARS} characters, without control characters"),
        ));
    }
    Ok(text.to_owned())
}

fn parse_scope(
    context: &AppContext,
    tenant: TenantId,
    new: &NewHold,
) -> Result<HoldScope, RetentionError> {
    Ok(match new.kind.as_str() {
        "tenant" => HoldScope::Tenant,
        "account" => HoldScope::Account {
            account: short_value("Account", &new.value)?,
        },
        "tag" => HoldScope::Tag {
            tag: short_value("Tag", &new.value)?,
        },
        "subject" => {
            let email = normalise_email(&new.value).ok_or_else(|| {
                invalid(
                    "Subject",
                    "give the subject's e-mail address, such as name@example.com",
                )
            })?;
            let token = subject_index(context, tenant)?.pseudonym(&email);
            HoldScope::Subject { email, token }
        }
        "date_range" => {
            let from = parse_day("From", &new.from)?;
            let to = parse_day("To", &new.to)?;
            if to < from {
                return Err(invalid("To", "must not be before From"));
            }
            HoldScope::DateRange { from, to }
        }
        _ => {
            return Err(invalid(
                "Kind",
                "choose tenant, account, subject, tag or date range",
            ))
        }
    })
}

/// Places a legal hold; it applies to the next sweep on. Audited as `legal_hold.created` with
/// the hold's id and kind (never its subject).
pub fn create(
    context: &AppContext,
    actor: &Actor,
    client: Option<String>,
    tenant: TenantId,
    new: &NewHold,
) -> Result<LegalHold, RetentionError> {
    let scope = parse_scope(context, tenant, new)?;
    let reason = new.reason.trim();
    if reason.is_empty() || reason.chars().count() > MAX_TEXT_CHARS {
        return Err(invalid(
            "Reason",
            format!("say why (the matter's reference), in at most {MAX_TEXT_CHARS} characters"),
        ));
    }
    let owner = short_value("Owner", &new.owner)?;
    let ends = if new.ends.trim().is_empty() {
        None
    } else {
        let ends = parse_day("Ends", &new.ends)?;
        if ends < Utc::now().date_naive() {
            return Err(invalid("Ends", "must not be in the past"));
        }
        Some(ends)
    };
    let hold = LegalHold {
        id: HoldId::new(),
        scope,
        reason: reason.to_owned(),
        owner,
        ends,
        created_by: actor.label.clone(),
        created_at: Utc::now(),
        released: None,
    };
    collection(context, tenant)?.insert(&hold.id, &hold)?;
    context.audit(
        AuditEvent::new(
            Some(tenant),
            actor.clone(),
            AuditAction::LegalHoldCreated,
            format!(
                "legal hold {} ({}){}",
                hold.id,
                hold.scope.kind_str(),
                hold.ends
                    .map(|ends| format!(", ends {ends}"))
                    .unwrap_or_default()
            ),
        )
        .client(client),
    )?;
    Ok(hold)
}

/// Releases a hold: retention may delete what it kept from the next sweep on. The hold is kept,
/// marked released. Audited as `legal_hold.released`.
pub fn release(
    context: &AppContext,
    actor: &Actor,
    client: Option<String>,
    tenant: TenantId,
    id: HoldId,
) -> Result<(), RetentionError> {
    let holds = collection(context, tenant)?;
    let mut hold = holds.get(&id)?.ok_or(RetentionError::NotFound)?;
    if hold.released.is_some() {
        return Err(invalid("Hold", "is already released"));
    }
    hold.released = Some((Utc::now(), actor.label.clone()));
    holds.insert(&id, &hold)?;
    context.audit(
        AuditEvent::new(
            Some(tenant),
            actor.clone(),
            AuditAction::LegalHoldReleased,
            format!("legal hold {} ({})", id, hold.scope.kind_str()),
        )
        .client(client),
    )?;
    Ok(())
}

/// Every hold of the tenant, active ones first, each group newest first.
pub fn list(context: &AppContext, tenant: TenantId) -> Result<Vec<LegalHold>, StoreError> {
    let now = Utc::now();
    let mut all: Vec<LegalHold> = collection(context, tenant)?
        .scan()
        .map(|entry| entry.map(|(_, hold)| hold))
        .collect::<Result<_, _>>()?;
    all.sort_by_key(|hold| (!hold.is_active(now), std::cmp::Reverse(hold.id)));
    Ok(all)
}

/// Whether an active hold covers the interaction (for the "On legal hold" mark on its page).
pub fn interaction_is_held(
    context: &AppContext,
    tenant: TenantId,
    stored: &crate::records::Stored<InteractionRecord>,
) -> Result<bool, StoreError> {
    let holds = ActiveHolds::load(context, tenant, Utc::now())?;
    Ok(!holds.is_empty()
        && holds.is_held(&HeldFacts::of_interaction(
            &stored.record,
            crate::retention::interaction_time(stored),
        )))
}

/// Whether an active hold covers the signal (for the "On legal hold" mark in signal lists).
pub fn signal_is_held(holds: &ActiveHolds, record: &SignalRecord) -> bool {
    !holds.is_empty() && holds.is_held(&HeldFacts::of_signal(record))
}
