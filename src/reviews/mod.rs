//! Reviews: the review inbox and reply drafts. A review is a signal of kind `review` (imported by
//! the `reviews` format, or written through the API or a webhook); this area adds what people do
//! with it — a workflow status (new, drafted, replied, ignored) and the reply text they edited or
//! sent — and the tenant's reply-draft settings (mode, tone, a template per rating).
//!
//! Reviews share the analysis queue with interactions: a review's job ([`JobSubject::Review`])
//! gets its text's sentiment and topics and, in `suggest` mode or when a person asks, a reply
//! draft ([`analyse`], [`drafts`]), all stored in the analysis store with their provenance.
//! Rapport never posts a reply anywhere: people copy it, or export reviews with their replies as
//! CSV or JSON.
//!
//! - [`store`]: the sealed workflow states and settings;
//! - [`drafts`]: templates, the draft prompt, what is kept of a model's answer;
//! - [`analyse`]: the review jobs of a worker batch;
//! - [`routes`]: the inbox, a review's page, its actions, the export and the settings page.

pub mod analyse;
pub mod drafts;
pub mod routes;
pub mod store;

use std::cell::RefCell;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::analysis::jobs::{EnqueueRequest, JobState, JobSubject, Priority};
use crate::analysis::{Analysis, AnalysisError, AnalysisKind, AnalysisResult};
use crate::audit::{Actor, AuditAction, AuditError, AuditEvent};
use crate::context::AppContext;
use crate::csv_cell::defuse;
use crate::ids::{RecordId, TenantId};
use crate::privacy::Restrictions;
use crate::records::{Order, Page};
use crate::reviews::store::ReviewStore;
use crate::signals::{Signal, StoredSignal};
use crate::store::StoreError;

/// Replies and edited drafts are at most this many characters.
pub const MAX_REPLY_CHARS: usize = 5000;
/// The style instruction and the support contact, at most.
const MAX_STYLE_CHARS: usize = 300;
const MAX_SUPPORT_CHARS: usize = 200;

#[derive(Debug, thiserror::Error)]
pub enum ReviewError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Audit(#[from] AuditError),
    #[error(transparent)]
    Analysis(#[from] AnalysisError),
    #[error("there is no such review in this tenant")]
    NotFound,
    /// Input that is wrong, naming the field.
    #[error("{0}")]
    Invalid(String),
    #[error(
        "reply drafts are off for this tenant (a tenant admin can turn them on under Reply drafts)"
    )]
    DraftsOff,
    /// The export's filters reach past the records one request may examine.
    #[error(
        "Nothing was exported: an export from the console reads at most the {} newest signals of the tenant, and there are more, so the file would be incomplete. Filters do not shorten that read; `rapport reviews export` on the appliance exports them all.",
        crate::records::MAX_SCANNED_PER_PAGE
    )]
    ExportTooBroad,
    /// The export could not be written (not the user's fault).
    #[error("the reviews export could not be written: {0}")]
    Export(String),
    /// The reviewer restricted or objected to processing: nothing may be made from the review.
    #[error("The reviewer has restricted processing of their data, so no reply draft can be made for this review.")]
    Restricted,
}

/// Where a review is in its workflow. The string forms are stable (filters, exports).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReviewStatus {
    #[default]
    New,
    /// Someone saved a reply draft.
    Drafted,
    /// Someone posted the reply on the platform and said so here.
    Replied,
    Ignored,
}

impl ReviewStatus {
    pub const ALL: [Self; 4] = [Self::New, Self::Drafted, Self::Replied, Self::Ignored];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::New => "new",
            Self::Drafted => "drafted",
            Self::Replied => "replied",
            Self::Ignored => "ignored",
        }
    }

    pub fn parse(value: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|status| status.as_str() == value)
    }
}

/// What people decided about one review. Tenant content (the reply text), sealed.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReviewState {
    pub status: ReviewStatus,
    /// The reply as a person edited it (a saved draft), or as they sent it (`replied`).
    pub reply: Option<String>,
    /// Who last changed the state, and when.
    pub changed_by: Option<String>,
    pub changed_at: Option<DateTime<Utc>>,
    pub replied_at: Option<DateTime<Utc>>,
}

/// Whether Rapport drafts replies by itself.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReplyMode {
    /// No drafts.
    #[default]
    Off,
    /// A draft for every new review, and on request.
    Suggest,
}

impl ReplyMode {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Off => "off",
            Self::Suggest => "suggest",
        }
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Formality {
    Formal,
    #[default]
    Friendly,
}

impl Formality {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Formal => "formal",
            Self::Friendly => "friendly",
        }
    }
}

/// A tenant's reply-draft settings.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReviewSettings {
    pub mode: ReplyMode,
    pub formality: Formality,
    /// A short style instruction in the admin's words ("Sign as the Acme team.").
    pub style: String,
    /// How an unhappy reviewer reaches support (an address, a phone number), for `{support}`.
    pub support_contact: String,
    /// The templates for ratings 1 to 5.
    pub templates: Vec<String>,
}

impl Default for ReviewSettings {
    fn default() -> Self {
        Self {
            mode: ReplyMode::Off,
            formality: Formality::Friendly,
            style: String::new(),
            support_contact: String::new(),
            templates: drafts::DEFAULT_TEMPLATES
                .iter()
                .map(|template| (*template).to_owned())
                .collect(),
        }
    }
}

impl ReviewSettings {
    /// The template for `rating` (clamped to 1–5; a missing one is the default).
    pub fn template(&self, rating: u8) -> &str {
        let index = usize::from(rating.clamp(1, 5) - 1);
        self.templates
            .get(index)
            .map_or(drafts::DEFAULT_TEMPLATES[index], String::as_str)
    }

    /// Checks the settings, naming the field a problem is in.
    pub fn validate(&self) -> Result<(), ReviewError> {
        let chars = |text: &str| text.chars().count();
        if chars(&self.style) > MAX_STYLE_CHARS {
            return Err(ReviewError::Invalid(format!(
                "Style: at most {MAX_STYLE_CHARS} characters."
            )));
        }
        if chars(&self.support_contact) > MAX_SUPPORT_CHARS {
            return Err(ReviewError::Invalid(format!(
                "Support contact: at most {MAX_SUPPORT_CHARS} characters."
            )));
        }
        if self.templates.len() != 5 {
            return Err(ReviewError::Invalid(
                "Templates: one per rating, 1 to 5.".to_owned(),
            ));
        }
        for (index, template) in self.templates.iter().enumerate() {
            let rating = index + 1;
            if template.trim().is_empty() {
                return Err(ReviewError::Invalid(format!(
                    "Template for {rating} star(s): must not be empty."
                )));
            }
            if chars(template) > drafts::MAX_TEMPLATE_CHARS {
                return Err(ReviewError::Invalid(format!(
                    "Template for {rating} star(s): at most {} characters.",
                    drafts::MAX_TEMPLATE_CHARS
                )));
            }
        }
        Ok(())
    }
}

/// A review signal, unpacked.
#[derive(Clone, Debug)]
pub struct Review {
    pub stored: StoredSignal,
    pub platform: String,
    pub rating: u8,
    pub text: Option<String>,
    pub reviewer: Option<String>,
    pub location: Option<String>,
    /// A reply the platform's export already carried.
    pub imported_reply: Option<String>,
}

impl Review {
    /// The review in `stored`, when it is a review signal.
    pub fn of(stored: StoredSignal) -> Option<Self> {
        let Signal::Review {
            platform,
            rating,
            text,
            reviewer,
            location,
            reply,
        } = stored.record.signal.clone()
        else {
            return None;
        };
        Some(Self {
            stored,
            platform,
            rating,
            text,
            reviewer,
            location,
            imported_reply: reply,
        })
    }

    pub fn id(&self) -> RecordId {
        self.stored.id
    }

    pub fn has_text(&self) -> bool {
        self.text
            .as_ref()
            .is_some_and(|text| !text.trim().is_empty())
    }
}

/// A review's stored analyses, by kind.
#[derive(Clone, Debug, Default)]
pub struct ReviewAnalyses {
    pub sentiment: Option<Analysis>,
    pub topics: Option<Analysis>,
    pub draft: Option<Analysis>,
}

impl ReviewAnalyses {
    pub fn load(
        context: &AppContext,
        tenant: TenantId,
        review: RecordId,
    ) -> Result<Self, StoreError> {
        let mut found = Self::default();
        for analysis in context.analysis.analyses(tenant, review)? {
            match analysis.kind() {
                AnalysisKind::Sentiment => found.sentiment = Some(analysis),
                AnalysisKind::Topics => found.topics = Some(analysis),
                AnalysisKind::ReplyDraft => found.draft = Some(analysis),
                _ => {}
            }
        }
        Ok(found)
    }

    /// The sentiment label (`positive`, `neutral`, `negative`).
    pub fn sentiment_label(&self) -> Option<&str> {
        match &self.sentiment.as_ref()?.result {
            AnalysisResult::Sentiment { overall, .. } => Some(overall.label.as_str()),
            _ => None,
        }
    }

    pub fn topic_labels(&self) -> &[String] {
        match self.topics.as_ref().map(|analysis| &analysis.result) {
            Some(AnalysisResult::Topics { labels, .. }) => labels,
            _ => &[],
        }
    }

    pub fn draft_text(&self) -> Option<&str> {
        match &self.draft.as_ref()?.result {
            AnalysisResult::ReplyDraft(draft) => Some(draft.text.as_str()),
            _ => None,
        }
    }
}

/// The inbox's filters; every one is optional. Text filters compare case-insensitively.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReviewFilter {
    /// The platform (`google`, `facebook`, …) or the source system the review came from.
    pub source: Option<String>,
    pub rating: Option<u8>,
    pub location: Option<String>,
    pub status: Option<ReviewStatus>,
    /// `positive`, `neutral` or `negative`.
    pub sentiment: Option<String>,
    pub topic: Option<String>,
}

fn nonblank(value: &str) -> Option<String> {
    let value = value.trim();
    (!value.is_empty()).then(|| value.to_owned())
}

impl ReviewFilter {
    /// The filter from the inbox's query fields; a bad value is named.
    pub fn parse(
        source: &str,
        rating: &str,
        location: &str,
        status: &str,
        sentiment: &str,
        topic: &str,
    ) -> Result<Self, ReviewError> {
        let rating = match nonblank(rating) {
            None => None,
            Some(text) => match text.parse::<u8>() {
                Ok(value @ 1..=5) => Some(value),
                _ => {
                    return Err(ReviewError::Invalid(
                        "Rating: choose 1 to 5 stars.".to_owned(),
                    ))
                }
            },
        };
        let status = match nonblank(status) {
            None => None,
            Some(text) => Some(ReviewStatus::parse(&text).ok_or_else(|| {
                ReviewError::Invalid("Status: choose new, drafted, replied or ignored.".to_owned())
            })?),
        };
        let sentiment = nonblank(sentiment).map(|text| text.to_lowercase());
        if let Some(label) = &sentiment {
            if !crate::inference::SENTIMENT_LABELS.contains(&label.as_str()) {
                return Err(ReviewError::Invalid(
                    "Sentiment: choose positive, neutral or negative.".to_owned(),
                ));
            }
        }
        Ok(Self {
            source: nonblank(source),
            rating,
            location: nonblank(location),
            status,
            sentiment,
            topic: nonblank(topic),
        })
    }

    /// The filter as query pairs, for links that keep it (paging, export).
    pub fn query_pairs(&self) -> Vec<(&'static str, String)> {
        let mut pairs = Vec::new();
        let mut push = |name, value: Option<String>| {
            if let Some(value) = value {
                pairs.push((name, value));
            }
        };
        push("source", self.source.clone());
        push("rating", self.rating.map(|rating| rating.to_string()));
        push("location", self.location.clone());
        push(
            "status",
            self.status.map(|status| status.as_str().to_owned()),
        );
        push("sentiment", self.sentiment.clone());
        push("topic", self.topic.clone());
        pairs
    }

    /// Whether the review's own fields pass (no store read).
    fn admits_record(&self, review: &Review) -> bool {
        let same = |wanted: &Option<String>, value: Option<&str>| {
            wanted
                .as_ref()
                .is_none_or(|wanted| value.is_some_and(|value| value.eq_ignore_ascii_case(wanted)))
        };
        (same(&self.source, Some(&review.platform))
            || same(&self.source, Some(&review.stored.record.source_system)))
            && self.rating.is_none_or(|rating| rating == review.rating)
            && same(&self.location, review.location.as_deref())
    }

    fn needs_state(&self) -> bool {
        self.status.is_some()
    }

    fn needs_analyses(&self) -> bool {
        self.sentiment.is_some() || self.topic.is_some()
    }

    fn admits_state(&self, state: &ReviewState) -> bool {
        self.status.is_none_or(|status| status == state.status)
    }

    fn admits_analyses(&self, analyses: &ReviewAnalyses) -> bool {
        self.sentiment
            .as_ref()
            .is_none_or(|wanted| analyses.sentiment_label() == Some(wanted.as_str()))
            && self.topic.as_ref().is_none_or(|wanted| {
                analyses
                    .topic_labels()
                    .iter()
                    .any(|label| label.eq_ignore_ascii_case(wanted))
            })
    }
}

/// One review with what is kept beside it.
#[derive(Clone, Debug)]
pub struct ReviewEntry {
    pub review: Review,
    pub state: ReviewState,
    pub analyses: ReviewAnalyses,
}

impl ReviewEntry {
    fn load(context: &AppContext, tenant: TenantId, review: Review) -> Result<Self, StoreError> {
        let id = review.id();
        Ok(Self {
            state: ReviewStore::new(context.store.clone()).state(tenant, id)?,
            analyses: ReviewAnalyses::load(context, tenant, id)?,
            review,
        })
    }

    /// The reply to show and export: what a person wrote, else the machine's draft.
    pub fn reply_text(&self) -> Option<&str> {
        self.state
            .reply
            .as_deref()
            .or_else(|| self.analyses.draft_text())
    }
}

/// Whether `stored` is a review that passes `filter`. Store errors are kept in `problem` (the
/// page filter cannot return them) and end the scan's matching.
fn admits(
    context: &AppContext,
    tenant: TenantId,
    filter: &ReviewFilter,
    stored: &StoredSignal,
    problem: &RefCell<Option<StoreError>>,
) -> bool {
    if problem.borrow().is_some() || !matches!(stored.record.signal, Signal::Review { .. }) {
        return false;
    }
    let Some(review) = Review::of(stored.clone()) else {
        return false;
    };
    if !filter.admits_record(&review) {
        return false;
    }
    let checked = || -> Result<bool, StoreError> {
        if filter.needs_state() {
            let state = ReviewStore::new(context.store.clone()).state(tenant, review.id())?;
            if !filter.admits_state(&state) {
                return Ok(false);
            }
        }
        if filter.needs_analyses() {
            let analyses = ReviewAnalyses::load(context, tenant, review.id())?;
            if !filter.admits_analyses(&analyses) {
                return Ok(false);
            }
        }
        Ok(true)
    };
    match checked() {
        Ok(admitted) => admitted,
        Err(error) => {
            *problem.borrow_mut() = Some(error);
            false
        }
    }
}

/// One page of the inbox: the reviews that pass `filter`, newest first, after `cursor`.
pub fn inbox_page(
    context: &AppContext,
    tenant: TenantId,
    filter: &ReviewFilter,
    cursor: Option<RecordId>,
    limit: usize,
) -> Result<Page<ReviewEntry>, ReviewError> {
    let problem = RefCell::new(None);
    let page =
        context
            .signals
            .page_stored(tenant, Order::NewestFirst, cursor, limit, |stored| {
                admits(context, tenant, filter, stored, &problem)
            })?;
    if let Some(error) = problem.into_inner() {
        return Err(error.into());
    }
    let mut items = Vec::with_capacity(page.items.len());
    for stored in page.items {
        if let Some(review) = Review::of(stored) {
            items.push(ReviewEntry::load(context, tenant, review)?);
        }
    }
    Ok(Page {
        items,
        next_cursor: page.next_cursor,
        scan_limit_reached: page.scan_limit_reached,
    })
}

/// Whether the review's author (the signal's `contact`) restricted or objected to processing.
/// A review without an e-mail cannot be matched to a restriction.
pub fn restricted(
    context: &AppContext,
    tenant: TenantId,
    review: &Review,
) -> Result<bool, StoreError> {
    match &review.stored.record.contact {
        Some(email) => Ok(Restrictions::new(context.store.clone())
            .of(tenant, email)?
            .is_some()),
        None => Ok(false),
    }
}

/// Every review that passes `filter`, newest first (the export), examining at most the
/// [`crate::records::MAX_SCANNED_PER_PAGE`] newest signals like one inbox page: filters that reach
/// further are refused ([`ReviewError::ExportTooBroad`]) instead of reading the whole tenant in
/// one request. Reviews whose author restricted or objected to processing are left out: an export
/// leaves Rapport.
pub fn matching(
    context: &AppContext,
    tenant: TenantId,
    filter: &ReviewFilter,
) -> Result<Vec<ReviewEntry>, ReviewError> {
    let page = inbox_page(
        context,
        tenant,
        filter,
        None,
        crate::records::MAX_SCANNED_PER_PAGE,
    )?;
    if page.scan_limit_reached || page.next_cursor.is_some() {
        return Err(ReviewError::ExportTooBroad);
    }
    let mut entries = Vec::with_capacity(page.items.len());
    for entry in page.items {
        if !restricted(context, tenant, &entry.review)? {
            entries.push(entry);
        }
    }
    Ok(entries)
}

/// Every review that passes `filter`, newest first, however many signals that takes: the page
/// bound is walked page after page. Only `rapport reviews export` calls it (a command, not a
/// request); restricted reviewers are left out as in [`matching`].
pub fn matching_all(
    context: &AppContext,
    tenant: TenantId,
    filter: &ReviewFilter,
) -> Result<Vec<ReviewEntry>, ReviewError> {
    let mut entries = Vec::new();
    let mut cursor = None;
    loop {
        let page = inbox_page(
            context,
            tenant,
            filter,
            cursor,
            crate::records::MAX_SCANNED_PER_PAGE,
        )?;
        for entry in page.items {
            if !restricted(context, tenant, &entry.review)? {
                entries.push(entry);
            }
        }
        match page.next_cursor {
            Some(next) => cursor = Some(next),
            None => return Ok(entries),
        }
    }
}

/// One review with its state and analyses; `NotFound` for an id that is not a review of this
/// tenant. The caller audits the read.
pub fn review(
    context: &AppContext,
    tenant: TenantId,
    id: RecordId,
) -> Result<ReviewEntry, ReviewError> {
    let review = context
        .signals
        .get(tenant, id)?
        .and_then(Review::of)
        .ok_or(ReviewError::NotFound)?;
    Ok(ReviewEntry::load(context, tenant, review)?)
}

/// Whether a reply draft of the review is queued or being made.
pub fn draft_pending(
    context: &AppContext,
    tenant: TenantId,
    id: RecordId,
) -> Result<bool, StoreError> {
    Ok(context.analysis.job(tenant, id)?.is_some_and(|job| {
        job.subject == JobSubject::Review
            && matches!(job.state, JobState::Queued | JobState::Running)
            && job.kinds.contains(&AnalysisKind::ReplyDraft)
    }))
}

/// The analysis request for a review version: its text's analyses, and its draft in `suggest`.
fn request_for(
    settings: &ReviewSettings,
    version: DateTime<Utc>,
    priority: Priority,
) -> EnqueueRequest {
    let mut kinds = AnalysisKind::REVIEW.to_vec();
    if settings.mode == ReplyMode::Suggest {
        kinds.push(AnalysisKind::ReplyDraft);
    }
    EnqueueRequest {
        subject: JobSubject::Review,
        version,
        kinds,
        priority,
        force: false,
    }
}

/// Queues a signal written through the API or a webhook when it is a review. Returns how many
/// jobs were created or changed (0 for other signals).
pub fn enqueue_review(
    context: &AppContext,
    tenant: TenantId,
    id: RecordId,
    priority: Priority,
) -> Result<usize, StoreError> {
    let Some(review) = context.signals.get(tenant, id)?.and_then(Review::of) else {
        return Ok(0);
    };
    let settings = ReviewStore::new(context.store.clone()).settings(tenant)?;
    context.analysis.enqueue(
        tenant,
        &[(id, request_for(&settings, review.stored.updated, priority))],
    )
}

/// Queues the review signals written since `since` (an import that committed): the import engine
/// does not hand out the ids it wrote, so this walks the tenant's signals once, like interactions.
pub fn enqueue_written_since(
    context: &AppContext,
    tenant: TenantId,
    since: DateTime<Utc>,
) -> Result<crate::analysis::Enqueued, StoreError> {
    let settings = ReviewStore::new(context.store.clone()).settings(tenant)?;
    let mut pending = Vec::new();
    let mut report = crate::analysis::Enqueued::default();
    context.signals.for_each(tenant, |stored| {
        if stored.updated >= since && matches!(stored.record.signal, Signal::Review { .. }) {
            pending.push((
                stored.id,
                request_for(&settings, stored.updated, Priority::Backfill),
            ));
        }
        if pending.len() >= crate::analysis::store::ENQUEUE_CHUNK {
            report.considered += pending.len();
            report.queued += context.analysis.enqueue(tenant, &pending)?;
            pending.clear();
        }
        Ok(())
    })?;
    report.considered += pending.len();
    report.queued += context.analysis.enqueue(tenant, &pending)?;
    Ok(report)
}

/// Who did it, from where: the arguments every audited action takes.
pub struct Acting<'a> {
    pub actor: &'a Actor,
    pub client: Option<String>,
    pub tenant: TenantId,
}

impl Acting<'_> {
    fn event(&self, action: AuditAction, target: String) -> AuditEvent {
        AuditEvent::new(Some(self.tenant), self.actor.clone(), action, target)
            .client(self.client.clone())
    }
}

fn status_event(
    acting: &Acting<'_>,
    id: RecordId,
    from: ReviewStatus,
    to: ReviewStatus,
) -> AuditEvent {
    acting.event(
        AuditAction::ReviewStatusChanged,
        format!("review {id}: {} to {}", from.as_str(), to.as_str()),
    )
}

fn checked_reply(text: &str, field: &str) -> Result<String, ReviewError> {
    let text = text.trim().replace("\r\n", "\n");
    if text.is_empty() {
        return Err(ReviewError::Invalid(format!("{field}: must not be empty.")));
    }
    if text.chars().count() > MAX_REPLY_CHARS {
        return Err(ReviewError::Invalid(format!(
            "{field}: at most {MAX_REPLY_CHARS} characters."
        )));
    }
    Ok(text)
}

/// Changes a review's state with `change`, recording `events` first: a change that cannot be
/// audited is not made.
fn change_state(
    context: &AppContext,
    acting: &Acting<'_>,
    id: RecordId,
    change: impl FnOnce(&ReviewState) -> (ReviewState, Vec<AuditEvent>),
) -> Result<ReviewState, ReviewError> {
    review(context, acting.tenant, id)?;
    let reviews = ReviewStore::new(context.store.clone());
    // Read and write under the tenant's writer lock, so two people's changes do not interleave.
    context
        .store
        .lock_scope(crate::store::Scope::Tenant(acting.tenant))
        .run(|| -> Result<ReviewState, ReviewError> {
            let current = reviews.state(acting.tenant, id)?;
            let (mut next, events) = change(&current);
            next.changed_by = Some(acting.actor.label.clone());
            next.changed_at = Some(Utc::now());
            context.audit_all(events)?;
            reviews.save_state(acting.tenant, id, &next)?;
            Ok(next)
        })
}

/// A person saves their edit of the reply: the review becomes `drafted` (a replied review stays
/// replied, its reply text changed). Audited.
pub fn save_draft(
    context: &AppContext,
    acting: &Acting<'_>,
    id: RecordId,
    text: &str,
) -> Result<ReviewState, ReviewError> {
    let text = checked_reply(text, "Reply draft")?;
    change_state(context, acting, id, |current| {
        let status = if current.status == ReviewStatus::Replied {
            ReviewStatus::Replied
        } else {
            ReviewStatus::Drafted
        };
        let mut events = vec![acting.event(AuditAction::ReviewDraftSaved, format!("review {id}"))];
        if status != current.status {
            events.push(status_event(acting, id, current.status, status));
        }
        (
            ReviewState {
                status,
                reply: Some(text),
                ..current.clone()
            },
            events,
        )
    })
}

/// A person says the reply was posted, with the text they sent. Audited.
pub fn mark_replied(
    context: &AppContext,
    acting: &Acting<'_>,
    id: RecordId,
    text: &str,
) -> Result<ReviewState, ReviewError> {
    let text = checked_reply(text, "Reply sent")?;
    change_state(context, acting, id, |current| {
        let events = vec![status_event(
            acting,
            id,
            current.status,
            ReviewStatus::Replied,
        )];
        (
            ReviewState {
                status: ReviewStatus::Replied,
                reply: Some(text),
                replied_at: Some(Utc::now()),
                ..current.clone()
            },
            events,
        )
    })
}

/// A person ignores a review, or puts it back to `new`. Any other status is reached by saving a
/// draft or marking it replied. Audited.
pub fn set_status(
    context: &AppContext,
    acting: &Acting<'_>,
    id: RecordId,
    status: ReviewStatus,
) -> Result<ReviewState, ReviewError> {
    if !matches!(status, ReviewStatus::New | ReviewStatus::Ignored) {
        return Err(ReviewError::Invalid(
            "Status: save a draft or mark the review replied to reach that status.".to_owned(),
        ));
    }
    change_state(context, acting, id, |current| {
        let events = vec![status_event(acting, id, current.status, status)];
        (
            ReviewState {
                status,
                replied_at: if status == ReviewStatus::New {
                    None
                } else {
                    current.replied_at
                },
                ..current.clone()
            },
            events,
        )
    })
}

/// A person asks for a new reply draft: queued ahead of backfills, and audited. Refused when the
/// tenant's reply drafts are off, and when the reviewer restricted processing (the job could only
/// fail).
pub fn request_draft(
    context: &AppContext,
    acting: &Acting<'_>,
    id: RecordId,
) -> Result<(), ReviewError> {
    let entry = review(context, acting.tenant, id)?;
    let settings = ReviewStore::new(context.store.clone()).settings(acting.tenant)?;
    if settings.mode == ReplyMode::Off {
        return Err(ReviewError::DraftsOff);
    }
    if restricted(context, acting.tenant, &entry.review)? {
        return Err(ReviewError::Restricted);
    }
    context.audit(acting.event(AuditAction::ReviewDraftRequested, format!("review {id}")))?;
    context.analysis.enqueue(
        acting.tenant,
        &[(
            id,
            EnqueueRequest {
                subject: JobSubject::Review,
                version: entry.review.stored.updated,
                kinds: vec![AnalysisKind::ReplyDraft],
                priority: Priority::Live,
                force: true,
            },
        )],
    )?;
    Ok(())
}

/// A tenant admin saves the reply-draft settings. Audited with the mode.
pub fn save_settings(
    context: &AppContext,
    acting: &Acting<'_>,
    settings: &ReviewSettings,
) -> Result<(), ReviewError> {
    settings.validate()?;
    context.audit(acting.event(
        AuditAction::ReviewSettingsChanged,
        format!(
            "reply drafts: mode {}, {}",
            settings.mode.as_str(),
            settings.formality.as_str()
        ),
    ))?;
    ReviewStore::new(context.store.clone()).save_settings(acting.tenant, settings)?;
    Ok(())
}

/// One exported review: what a person needs to post the reply on the platform.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ExportRow {
    pub review_id: String,
    pub source_system: String,
    pub source_id: String,
    pub platform: String,
    pub occurred_at: String,
    pub rating: u8,
    pub reviewer: String,
    pub location: String,
    pub text: String,
    pub status: &'static str,
    pub sentiment: String,
    pub topics: String,
    /// The machine's draft, when there is one.
    pub draft: String,
    /// What a person wrote (a saved draft or the reply they sent).
    pub reply: String,
}

/// The CSV header, in [`ExportRow`]'s order.
pub const EXPORT_COLUMNS: [&str; 14] = [
    "review_id",
    "source_system",
    "source_id",
    "platform",
    "occurred_at",
    "rating",
    "reviewer",
    "location",
    "text",
    "status",
    "sentiment",
    "topics",
    "draft",
    "reply",
];

impl ExportRow {
    fn of(entry: &ReviewEntry) -> Self {
        let review = &entry.review;
        Self {
            review_id: review.id().to_string(),
            source_system: review.stored.record.source_system.clone(),
            source_id: review.stored.record.source_id.clone(),
            platform: review.platform.clone(),
            occurred_at: review.stored.record.occurred_at.to_rfc3339(),
            rating: review.rating,
            reviewer: review.reviewer.clone().unwrap_or_default(),
            location: review.location.clone().unwrap_or_default(),
            text: review.text.clone().unwrap_or_default(),
            status: entry.state.status.as_str(),
            sentiment: entry
                .analyses
                .sentiment_label()
                .unwrap_or_default()
                .to_owned(),
            topics: entry.analyses.topic_labels().join(";"),
            draft: entry.analyses.draft_text().unwrap_or_default().to_owned(),
            reply: entry.state.reply.clone().unwrap_or_default(),
        }
    }

    /// The CSV fields. Texts from outside (the review, names, drafts) are defused against
    /// spreadsheet formulas (see [`crate::csv_cell::defuse`]); the JSON export is unchanged.
    fn fields(&self) -> [String; 14] {
        [
            self.review_id.clone(),
            defuse(&self.source_system),
            defuse(&self.source_id),
            defuse(&self.platform),
            self.occurred_at.clone(),
            self.rating.to_string(),
            defuse(&self.reviewer),
            defuse(&self.location),
            defuse(&self.text),
            self.status.to_owned(),
            self.sentiment.clone(),
            defuse(&self.topics),
            defuse(&self.draft),
            defuse(&self.reply),
        ]
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExportFormat {
    Csv,
    Json,
}

impl ExportFormat {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Csv => "csv",
            Self::Json => "json",
        }
    }
}

/// Exports the reviews that pass `filter` (newest first) with their drafts and replies, audited
/// with the format, the count and the exported reviews' ids. Returns the file's bytes. Refused
/// with [`ReviewError::ExportTooBroad`] when the filters reach past the scan bound.
pub fn export(
    context: &AppContext,
    acting: &Acting<'_>,
    filter: &ReviewFilter,
    format: ExportFormat,
) -> Result<Vec<u8>, ReviewError> {
    let entries = matching(context, acting.tenant, filter)?;
    write_export(context, acting, &entries, format)
}

/// [`export`] without the request's scan bound, for `rapport reviews export`: every review that
/// passes `filter`, audited the same way.
pub fn export_all(
    context: &AppContext,
    acting: &Acting<'_>,
    filter: &ReviewFilter,
    format: ExportFormat,
) -> Result<Vec<u8>, ReviewError> {
    let entries = matching_all(context, acting.tenant, filter)?;
    write_export(context, acting, &entries, format)
}

fn write_export(
    context: &AppContext,
    acting: &Acting<'_>,
    entries: &[ReviewEntry],
    format: ExportFormat,
) -> Result<Vec<u8>, ReviewError> {
    let rows: Vec<ExportRow> = entries.iter().map(ExportRow::of).collect();
    let failed = |error: &dyn std::fmt::Display| ReviewError::Export(error.to_string());
    let bytes = match format {
        ExportFormat::Json => serde_json::to_vec_pretty(&rows).map_err(|error| failed(&error))?,
        ExportFormat::Csv => {
            let mut writer = csv::Writer::from_writer(Vec::new());
            let written = writer.write_record(EXPORT_COLUMNS).and_then(|()| {
                rows.iter()
                    .try_for_each(|row| writer.write_record(row.fields()))
            });
            written.map_err(|error| failed(&error))?;
            writer.into_inner().map_err(|error| failed(&error))?
        }
    };
    let ids: Vec<&str> = rows.iter().map(|row| row.review_id.as_str()).collect();
    context.audit(acting.event(
        AuditAction::ReviewsExported,
        format!(
            "reviews export ({}): {} reviews: [{}]",
            format.as_str(),
            rows.len(),
            ids.join(", ")
        ),
    ))?;
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_are_parsed_and_name_the_bad_field() {
        let filter = ReviewFilter::parse("Google", "1", "", "ignored", "Negative", "").unwrap();
        assert_eq!(filter.rating, Some(1));
        assert_eq!(filter.status, Some(ReviewStatus::Ignored));
        assert_eq!(filter.sentiment.as_deref(), Some("negative"));
        assert_eq!(
            filter.query_pairs(),
            [
                ("source", "Google".to_owned()),
                ("rating", "1".to_owned()),
                ("status", "ignored".to_owned()),
                ("sentiment", "negative".to_owned())
            ]
        );
        let error = ReviewFilter::parse("", "6", "", "", "", "").unwrap_err();
        assert!(error.to_string().starts_with("Rating"), "{error}");
        let error = ReviewFilter::parse("", "", "", "done", "", "").unwrap_err();
        assert!(error.to_string().starts_with("Status"), "{error}");
        let error = ReviewFilter::parse("", "", "", "", "angry", "").unwrap_err();
        assert!(error.to_string().starts_with("Sentiment"), "{error}");
    }

    #[test]
    fn settings_are_checked_per_field() {
        let mut settings = ReviewSettings::default();
        settings.validate().unwrap();
        settings.templates[2] = "  ".to_owned();
        let error = settings.validate().unwrap_err();
        assert!(error.to_string().contains("3 star"), "{error}");
        let settings = ReviewSettings {
            style: "x".repeat(MAX_STYLE_CHARS + 1),
            ..ReviewSettings::default()
        };
        assert!(settings
            .validate()
            .unwrap_err()
            .to_string()
            .starts_with("Style"));
    }
}
