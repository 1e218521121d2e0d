//! Leads: the sales chats (interactions of channel `sales-chat`) and the interactions a person
//! marked as a lead, each with the lead analyzer's qualification ([`crate::analysis::lead`]), a
//! status (new, contacted, qualified, disqualified) and an assignee, and their hand-off to a CRM.
//!
//! - [`store`]: the sealed trees (lead states, CRM settings, deliveries and their outbox);
//! - [`crm`]: the `HubSpot` and Salesforce CSV exports of qualified leads;
//! - [`webhook`]: the outbound webhook (settings, signed deliveries, retries, the delivery thread);
//! - [`routes`]: the lead inbox, the lead page, the CRM settings and the delivery log.
//!
//! Every change (mark, unmark, status, assignee) and every export is audited, and so is every
//! read of a page that shows leads. A subject under restriction or objection
//! ([`crate::privacy`]) is left out of every export and every delivery; the check is made again
//! when a delivery is sent.

pub mod crm;
pub mod routes;
pub mod store;
pub mod webhook;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::analysis::lead::{intent_group, LeadQualification};
use crate::analysis::{AnalysisError, AnalysisKind, AnalysisResult};
use crate::audit::{Actor, AuditAction, AuditError, AuditEvent};
use crate::auth::Permission;
use crate::context::AppContext;
use crate::ids::{RecordId, TenantId, UserId};
use crate::interactions::{AuthorRole, Channel, Interaction};
use crate::leads::store::LeadStore;
use crate::store::StoreError;
use crate::users::User;

#[derive(Debug, thiserror::Error)]
pub enum LeadError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Audit(#[from] AuditError),
    #[error(transparent)]
    Analysis(#[from] AnalysisError),
    #[error(transparent)]
    User(#[from] crate::users::UserError),
    #[error("there is no such lead in this tenant")]
    NotFound,
    #[error("{field}: {message}")]
    Invalid {
        field: &'static str,
        message: String,
    },
}

/// Where a lead stands in the sales team's work.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LeadStatus {
    #[default]
    New,
    Contacted,
    Qualified,
    Disqualified,
}

impl LeadStatus {
    pub const ALL: [Self; 4] = [
        Self::New,
        Self::Contacted,
        Self::Qualified,
        Self::Disqualified,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::New => "new",
            Self::Contacted => "contacted",
            Self::Qualified => "qualified",
            Self::Disqualified => "disqualified",
        }
    }

    pub fn parse(value: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|status| status.as_str() == value.trim())
    }
}

/// What people recorded about a lead, kept apart from the analysis (which a re-analysis
/// replaces).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeadState {
    /// A person marked the interaction as a lead (a sales chat is one without marking).
    pub marked: bool,
    pub status: LeadStatus,
    /// A tenant user who may work leads.
    pub assignee: Option<UserId>,
    /// The last change, when there was one.
    pub changed: Option<DateTime<Utc>>,
}

/// One lead: its interaction, its qualification (absent until analysed) and its state.
#[derive(Clone, Debug)]
pub struct Lead {
    pub interaction: Interaction,
    pub qualification: Option<LeadQualification>,
    /// The qualification read an older version of the interaction.
    pub stale: bool,
    pub state: LeadState,
}

/// Who the visitor is, as the interaction says: the first customer message with a name or an
/// address.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Visitor {
    pub name: Option<String>,
    pub email: Option<String>,
}

impl Lead {
    pub fn id(&self) -> RecordId {
        self.interaction.id
    }

    pub fn visitor(&self) -> Visitor {
        let customer = || {
            self.interaction
                .record
                .messages
                .iter()
                .filter(|message| message.role == AuthorRole::Customer)
        };
        Visitor {
            name: customer().find_map(|message| message.author_name.clone()),
            email: customer().find_map(|message| message.author_email.clone()),
        }
    }

    /// The time of the conversation: its last message, or when it was first stored.
    pub fn time(&self) -> DateTime<Utc> {
        self.interaction
            .record
            .messages
            .iter()
            .map(|message| message.sent_at)
            .max()
            .unwrap_or(self.interaction.first_imported)
    }

    pub fn score(&self) -> Option<u8> {
        self.qualification.as_ref().map(|lead| lead.score)
    }

    /// The finer intent label (`ready_to_buy`, …), when analysed.
    pub fn intent(&self) -> Option<&str> {
        self.qualification
            .as_ref()
            .map(|lead| lead.intent.label.as_str())
    }

    /// `support`, `buying` or `browsing`, when analysed.
    pub fn intent_group(&self) -> Option<&'static str> {
        self.intent().map(intent_group)
    }

    /// The company: the interaction's account when it has one, or else the domain of the
    /// visitor's address.
    pub fn company(&self) -> Option<String> {
        self.interaction.record.account.clone().or_else(|| {
            self.visitor()
                .email
                .and_then(|email| email.split_once('@').map(|(_, domain)| domain.to_owned()))
        })
    }
}

/// Whether `interaction` is a lead: a sales chat, or marked by a person.
fn is_lead(interaction: &Interaction, state: &LeadState) -> bool {
    interaction.record.channel == Channel::SalesChat || state.marked
}

/// The lead of interaction `id`, or `NotFound` when the interaction does not exist or is not a
/// lead.
pub fn lead(context: &AppContext, tenant: TenantId, id: RecordId) -> Result<Lead, LeadError> {
    let interaction = context
        .interactions
        .get(tenant, id)?
        .ok_or(LeadError::NotFound)?;
    let state = LeadStore::new(context.store.clone()).state(tenant, id)?;
    if !is_lead(&interaction, &state) {
        return Err(LeadError::NotFound);
    }
    Ok(assemble(context, tenant, interaction, state)?)
}

fn assemble(
    context: &AppContext,
    tenant: TenantId,
    interaction: Interaction,
    state: LeadState,
) -> Result<Lead, StoreError> {
    let analysis = context
        .analysis
        .analysis(tenant, interaction.id, AnalysisKind::Lead)?;
    let (qualification, outdated) = match analysis {
        Some(analysis) => {
            let outdated = analysis.is_stale(interaction.updated);
            match analysis.result {
                AnalysisResult::Lead(lead) => (Some(lead), outdated),
                _ => (None, false),
            }
        }
        None => (None, false),
    };
    Ok(Lead {
        interaction,
        qualification,
        stale: outdated,
        state,
    })
}

/// At most this many lead interactions are read (each one decrypted) for one inbox page or one
/// export: the cap of the other listings ([`crate::records::MAX_SCANNED_PER_PAGE`]).
pub const MAX_SCANNED: usize = crate::records::MAX_SCANNED_PER_PAGE;

/// The leads [`all`] read, and whether it stopped at its cap (older leads were not read).
#[derive(Clone, Debug, Default)]
pub struct LeadList {
    pub leads: Vec<Lead>,
    pub limit_reached: bool,
}

/// Every lead of the tenant, newest first, up to [`MAX_SCANNED`]: the interactions with a lead
/// qualification, and those a person marked, that are still leads. Reads the lead analyses'
/// keys, the lead states, and each lead's interaction.
pub fn all(context: &AppContext, tenant: TenantId) -> Result<LeadList, LeadError> {
    all_up_to(context, tenant, MAX_SCANNED)
}

/// [`all`] with another cap: at most `cap` interactions are read.
pub fn all_up_to(
    context: &AppContext,
    tenant: TenantId,
    cap: usize,
) -> Result<LeadList, LeadError> {
    let store = LeadStore::new(context.store.clone());
    let mut ids = context
        .analysis
        .interactions_with(tenant, AnalysisKind::Lead)?;
    ids.extend(store.marked(tenant)?);
    // Record ids grow with time: the newest first, so the cap leaves out the oldest.
    ids.sort_unstable_by(|a, b| b.cmp(a));
    ids.dedup();
    let mut list = LeadList::default();
    for (read, id) in ids.into_iter().enumerate() {
        if read >= cap {
            list.limit_reached = true;
            break;
        }
        let Some(interaction) = context.interactions.get(tenant, id)? else {
            continue;
        };
        let state = store.state(tenant, id)?;
        if is_lead(&interaction, &state) {
            list.leads
                .push(assemble(context, tenant, interaction, state)?);
        }
    }
    Ok(list)
}

/// How the inbox is sorted.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum LeadSort {
    #[default]
    ScoreDescending,
    ScoreAscending,
    NewestFirst,
    OldestFirst,
}

impl LeadSort {
    pub const ALL: [Self; 4] = [
        Self::ScoreDescending,
        Self::ScoreAscending,
        Self::NewestFirst,
        Self::OldestFirst,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::ScoreDescending => "score",
            Self::ScoreAscending => "score-asc",
            Self::NewestFirst => "time",
            Self::OldestFirst => "time-asc",
        }
    }

    pub fn parse(value: &str) -> Self {
        Self::ALL
            .into_iter()
            .find(|sort| sort.as_str() == value)
            .unwrap_or_default()
    }
}

/// The inbox's filters; `None` shows all.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LeadFilter {
    pub status: Option<LeadStatus>,
    /// `Some(None)`: leads nobody is assigned to.
    pub assignee: Option<Option<UserId>>,
    /// An intent group (`buying`) or a finer label (`ready_to_buy`).
    pub intent: Option<String>,
}

impl LeadFilter {
    fn keeps(&self, lead: &Lead) -> bool {
        self.status.is_none_or(|status| lead.state.status == status)
            && self
                .assignee
                .is_none_or(|assignee| lead.state.assignee == assignee)
            && self.intent.as_deref().is_none_or(|intent| {
                lead.intent() == Some(intent) || lead.intent_group() == Some(intent)
            })
    }
}

/// One page of the inbox and where it sits among all the matching leads.
#[derive(Clone, Debug)]
pub struct LeadPage {
    pub leads: Vec<Lead>,
    /// Leads matching the filter, on every page.
    pub matching: usize,
    /// 1-based.
    pub page: usize,
    pub pages: usize,
    /// Only the newest [`MAX_SCANNED`] leads were read.
    pub limit_reached: bool,
}

/// The inbox: the tenant's leads that `filter` keeps, sorted, page `page` (1-based) of
/// `page_size`. Leads not yet analysed sort after every scored one.
pub fn inbox(
    context: &AppContext,
    tenant: TenantId,
    filter: &LeadFilter,
    sort: LeadSort,
    page: usize,
    page_size: usize,
) -> Result<LeadPage, LeadError> {
    let list = all(context, tenant)?;
    let limit_reached = list.limit_reached;
    let mut leads: Vec<Lead> = list
        .leads
        .into_iter()
        .filter(|lead| filter.keeps(lead))
        .collect();
    match sort {
        LeadSort::ScoreDescending => leads.sort_by(|a, b| {
            (b.score().is_some(), b.score(), b.time()).cmp(&(
                a.score().is_some(),
                a.score(),
                a.time(),
            ))
        }),
        LeadSort::ScoreAscending => leads.sort_by(|a, b| {
            (b.score().is_some(), a.score(), b.time()).cmp(&(
                a.score().is_some(),
                b.score(),
                a.time(),
            ))
        }),
        LeadSort::NewestFirst => leads.sort_by_key(|lead| std::cmp::Reverse(lead.time())),
        LeadSort::OldestFirst => leads.sort_by_key(Lead::time),
    }
    let page_size = page_size.max(1);
    let matching = leads.len();
    let pages = matching.div_ceil(page_size).max(1);
    let page = page.clamp(1, pages);
    let leads = leads
        .into_iter()
        .skip((page - 1) * page_size)
        .take(page_size)
        .collect();
    Ok(LeadPage {
        leads,
        matching,
        page,
        pages,
        limit_reached,
    })
}

fn audit(
    context: &AppContext,
    actor: &Actor,
    client: Option<String>,
    tenant: TenantId,
    action: AuditAction,
    target: String,
) -> Result<(), LeadError> {
    context.audit(AuditEvent::new(Some(tenant), actor.clone(), action, target).client(client))?;
    Ok(())
}

/// A person marks an interaction as a lead: it joins the inbox, and the lead analysis is queued
/// for it (ahead of backfills). Audited.
pub fn mark(
    context: &AppContext,
    actor: &Actor,
    client: Option<String>,
    tenant: TenantId,
    id: RecordId,
) -> Result<(), LeadError> {
    if context.interactions.get(tenant, id)?.is_none() {
        return Err(LeadError::NotFound);
    }
    LeadStore::new(context.store.clone()).update(tenant, id, |state| {
        state.marked = true;
        state.changed = Some(Utc::now());
    })?;
    crate::analysis::enqueue_interaction(
        context,
        tenant,
        id,
        crate::analysis::jobs::Priority::Live,
        true,
    )?;
    audit(
        context,
        actor,
        client,
        tenant,
        AuditAction::LeadMarked,
        format!("interaction {id}"),
    )
}

/// Takes a person's mark off: a sales chat stays a lead, any other interaction leaves the
/// inbox (its status and assignee are kept, should it be marked again). Audited.
pub fn unmark(
    context: &AppContext,
    actor: &Actor,
    client: Option<String>,
    tenant: TenantId,
    id: RecordId,
) -> Result<(), LeadError> {
    if context.interactions.get(tenant, id)?.is_none() {
        return Err(LeadError::NotFound);
    }
    LeadStore::new(context.store.clone()).update(tenant, id, |state| {
        state.marked = false;
        state.changed = Some(Utc::now());
    })?;
    audit(
        context,
        actor,
        client,
        tenant,
        AuditAction::LeadUnmarked,
        format!("interaction {id}"),
    )
}

/// Sets a lead's status. A lead that becomes `qualified` gets a webhook delivery queued when the
/// tenant's webhook is on, in the same commit as the status; so does a lead set to `qualified`
/// again that never had one. Audited with the old and new status.
pub fn set_status(
    context: &AppContext,
    actor: &Actor,
    client: Option<String>,
    tenant: TenantId,
    id: RecordId,
    status: LeadStatus,
) -> Result<(), LeadError> {
    lead(context, tenant, id)?;
    let store = LeadStore::new(context.store.clone());
    let settings = store.settings(tenant)?;
    let now = Utc::now();
    let (before, after, _) = store.update_and_queue(
        tenant,
        id,
        |state| {
            state.status = status;
            state.changed = Some(now);
        },
        |before, delivered| {
            (before.status != LeadStatus::Qualified || !delivered)
                .then(|| webhook::new_delivery(&settings, id, now))
                .flatten()
        },
    )?;
    audit(
        context,
        actor,
        client,
        tenant,
        AuditAction::LeadStatusChanged,
        format!(
            "lead {id}: {} to {}",
            before.status.as_str(),
            after.status.as_str()
        ),
    )
}

/// The tenant's users a lead may be assigned to: enabled, with a role that works leads.
pub fn assignable_users(context: &AppContext, tenant: TenantId) -> Result<Vec<User>, LeadError> {
    let users = context.users.list(Some(tenant))?;
    Ok(users
        .into_iter()
        .filter(|user| !user.disabled && user.role.grants(Permission::WorkLeads))
        .collect())
}

/// Assigns a lead to a user who may work leads, or to nobody. Audited with the user's id.
pub fn assign(
    context: &AppContext,
    actor: &Actor,
    client: Option<String>,
    tenant: TenantId,
    id: RecordId,
    assignee: Option<UserId>,
) -> Result<(), LeadError> {
    lead(context, tenant, id)?;
    if let Some(user) = assignee {
        if !assignable_users(context, tenant)?
            .iter()
            .any(|candidate| candidate.id == user)
        {
            return Err(LeadError::Invalid {
                field: "Assignee",
                message: "choose a user of this tenant who works leads".to_owned(),
            });
        }
    }
    LeadStore::new(context.store.clone()).update(tenant, id, |state| {
        state.assignee = assignee;
        state.changed = Some(Utc::now());
    })?;
    audit(
        context,
        actor,
        client,
        tenant,
        AuditAction::LeadAssigned,
        match assignee {
            Some(user) => format!("lead {id} to user {user}"),
            None => format!("lead {id} to nobody"),
        },
    )
}
