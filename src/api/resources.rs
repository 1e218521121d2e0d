//! The record resources: `interactions`, `accounts`, `contacts` and `signals`, each with create
//! (create-or-update by source system and id), get by id and a filtered, cursor-paginated list.
//!
//! Bodies are the import schema ([`InteractionRecord`] and friends); responses add `id`,
//! `first_imported` and `updated`. The synchronous functions here do the work and the audit (every
//! read of records is `personal_data.read`, every write `data.written`); the handlers, generated
//! per resource by `resource_handlers!` so that each carries its own `OpenAPI` annotation, only
//! extract, move the work to the blocking pool and answer.

use chrono::{DateTime, Utc};
use serde::Serialize;
use utoipa::{IntoParams, ToSchema};

use crate::accounts::{AccountRecord, ContactRecord};
use crate::api::{ApiError, FieldError};
use crate::audit::{Actor, AuditAction, AuditEvent};
use crate::context::AppContext;
use crate::ids::{RecordId, TenantId};
use crate::interactions::query::{in_window, InteractionFilter, TextMatch};
use crate::interactions::{Channel, InteractionRecord};
use crate::records::{Order, RecordStore, SourceRecord, Stored};
use crate::signals::SignalRecord;
use crate::store::StoreError;

/// Page size when `limit` is not given, and the largest allowed.
const DEFAULT_LIMIT: usize = 50;
const MAX_LIMIT: usize = 200;

/// A stored record as the API returns it: the import schema plus Rapport's id and times.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct ApiRecord<R> {
    /// Rapport's id of the record (a ULID).
    #[schema(value_type = String)]
    pub id: RecordId,
    pub first_imported: DateTime<Utc>,
    pub updated: DateTime<Utc>,
    #[serde(flatten)]
    pub record: R,
}

impl<R> From<Stored<R>> for ApiRecord<R> {
    fn from(stored: Stored<R>) -> Self {
        Self {
            id: stored.id,
            first_imported: stored.first_imported,
            updated: stored.updated,
            record: stored.record,
        }
    }
}

/// One page of a list.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct ApiPage<R> {
    pub items: Vec<ApiRecord<R>>,
    /// Pass as `cursor` for the next page; absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

/// The list filters. Each resource accepts only those that apply to it (see its description);
/// any other parameter is refused with 400.
#[derive(Clone, Debug, Default, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// Interactions: `ticket`, `chat`, `email`, `call` or `sales-chat`.
    pub channel: Option<String>,
    /// Interactions: the status, exactly as imported.
    pub status: Option<String>,
    /// Interactions, contacts, signals: the account's source id or domain, as imported.
    pub account: Option<String>,
    /// Interactions: one of its tags.
    pub tag: Option<String>,
    /// Signals: `survey`, `usage`, `bug`, `review`, `lead` or `external`.
    pub kind: Option<String>,
    /// Interactions (time of the first message), signals (`occurred_at`): at or after (RFC 3339).
    pub since: Option<DateTime<Utc>>,
    /// Interactions, signals: before this time (RFC 3339).
    pub until: Option<DateTime<Utc>>,
    /// Page size, 1 to 200 (default 50).
    pub limit: Option<u32>,
    /// The `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

fn time_parameter(name: &str, value: &str) -> Result<DateTime<Utc>, FieldError> {
    DateTime::parse_from_rfc3339(value)
        .map(|time| time.with_timezone(&Utc))
        .map_err(|_| FieldError::parameter(name, "must be an RFC 3339 time"))
}

impl ListQuery {
    /// Parses the query string, naming every bad parameter; `allowed` are the filters that
    /// apply to the resource (paging parameters always do).
    pub fn parse(query: &str, allowed: &[&str]) -> Result<Self, ApiError> {
        let pairs: Vec<(String, String)> = serde_urlencoded::from_str(query).map_err(|_| {
            ApiError::BadRequest("The query string is malformed.".to_owned(), Vec::new())
        })?;
        let mut parsed = Self::default();
        let mut errors = Vec::new();
        for (name, value) in pairs {
            if !allowed.contains(&name.as_str()) && !["limit", "cursor"].contains(&name.as_str()) {
                let known = [
                    "channel", "status", "account", "tag", "kind", "since", "until",
                ]
                .contains(&name.as_str());
                let detail = if known {
                    "does not apply to this resource"
                } else {
                    "is not a known parameter"
                };
                let shown: String = name.chars().take(40).collect();
                errors.push(FieldError::parameter(&shown, detail));
                continue;
            }
            match name.as_str() {
                "channel" => {
                    if Channel::ALL.iter().any(|channel| channel.as_str() == value) {
                        parsed.channel = Some(value);
                    } else {
                        errors.push(FieldError::parameter(
                            "channel",
                            "must be ticket, chat, email, call or sales-chat",
                        ));
                    }
                }
                "kind" => {
                    if crate::signals::KINDS.contains(&value.as_str()) {
                        parsed.kind = Some(value);
                    } else {
                        errors.push(FieldError::parameter(
                            "kind",
                            "must be survey, usage, bug, review, lead or external",
                        ));
                    }
                }
                "status" => parsed.status = Some(value),
                "account" => parsed.account = Some(value),
                "tag" => parsed.tag = Some(value),
                "since" => match time_parameter("since", &value) {
                    Ok(time) => parsed.since = Some(time),
                    Err(error) => errors.push(error),
                },
                "until" => match time_parameter("until", &value) {
                    Ok(time) => parsed.until = Some(time),
                    Err(error) => errors.push(error),
                },
                "limit" => match value.parse::<u32>() {
                    Ok(limit) if (1..=200).contains(&limit) => parsed.limit = Some(limit),
                    _ => errors.push(FieldError::parameter(
                        "limit",
                        "must be a whole number from 1 to 200",
                    )),
                },
                _ => parsed.cursor = Some(value),
            }
        }
        if errors.is_empty() {
            Ok(parsed)
        } else {
            Err(ApiError::BadRequest(
                "Some query parameters are not valid.".to_owned(),
                errors,
            ))
        }
    }

    /// The interaction filter these parameters describe, compared exactly as imported (the
    /// API's documented behaviour; the console's list uses the same filter ignoring case).
    pub fn interaction_filter(&self) -> InteractionFilter {
        InteractionFilter {
            channel: self
                .channel
                .as_deref()
                .and_then(|raw| Channel::ALL.into_iter().find(|c| c.as_str() == raw)),
            status: self.status.clone(),
            account: self.account.clone(),
            tag: self.tag.clone(),
            since: self.since,
            until: self.until,
            text_match: TextMatch::Exact,
        }
    }
}

/// What the API needs to know about a kind of record.
pub trait ApiResource: SourceRecord {
    /// The collection's name in URLs and audit targets (`interactions`).
    const PLURAL: &'static str;
    /// The list filters that apply.
    const FILTERS: &'static [&'static str];
    /// The (already validated) filters in the form records are tested against.
    type Filter;

    fn store(context: &AppContext) -> &RecordStore<Self>;

    fn filter(query: &ListQuery) -> Self::Filter;

    /// Whether the record passes the filter.
    fn matches(&self, filter: &Self::Filter) -> bool;
}

impl ApiResource for InteractionRecord {
    const PLURAL: &'static str = "interactions";
    const FILTERS: &'static [&'static str] =
        &["channel", "status", "account", "tag", "since", "until"];
    type Filter = InteractionFilter;

    fn store(context: &AppContext) -> &RecordStore<Self> {
        &context.interactions
    }

    fn filter(query: &ListQuery) -> InteractionFilter {
        query.interaction_filter()
    }

    fn matches(&self, filter: &InteractionFilter) -> bool {
        filter.matches(self)
    }
}

impl ApiResource for AccountRecord {
    const PLURAL: &'static str = "accounts";
    const FILTERS: &'static [&'static str] = &[];
    type Filter = ();

    fn store(context: &AppContext) -> &RecordStore<Self> {
        &context.accounts
    }

    fn filter(_query: &ListQuery) {}

    fn matches(&self, (): &()) -> bool {
        true
    }
}

impl ApiResource for ContactRecord {
    const PLURAL: &'static str = "contacts";
    const FILTERS: &'static [&'static str] = &["account"];
    /// The account, as imported.
    type Filter = Option<String>;

    fn store(context: &AppContext) -> &RecordStore<Self> {
        &context.contacts
    }

    fn filter(query: &ListQuery) -> Option<String> {
        query.account.clone()
    }

    fn matches(&self, account: &Option<String>) -> bool {
        account
            .as_ref()
            .is_none_or(|account| self.account.as_ref() == Some(account))
    }
}

impl ApiResource for SignalRecord {
    const PLURAL: &'static str = "signals";
    const FILTERS: &'static [&'static str] = &["kind", "account", "since", "until"];
    type Filter = ListQuery;

    fn store(context: &AppContext) -> &RecordStore<Self> {
        &context.signals
    }

    fn filter(query: &ListQuery) -> ListQuery {
        query.clone()
    }

    fn matches(&self, query: &ListQuery) -> bool {
        query
            .kind
            .as_ref()
            .is_none_or(|kind| self.signal.kind_str() == kind)
            && query
                .account
                .as_ref()
                .is_none_or(|account| self.account.as_ref() == Some(account))
            && in_window(Some(self.occurred_at), query.since, query.until)
    }
}

/// Validates and stores `record` (create, or update by source), then audits the write under
/// `via` (`api`, `webhook <id>`). Returns the stored record and whether it was created.
pub fn write_record<R: ApiResource>(
    context: &AppContext,
    actor: &Actor,
    client: Option<String>,
    tenant: TenantId,
    via: &str,
    record: R,
) -> Result<(Stored<R>, bool), ApiError> {
    let problems = record.problems();
    if !problems.is_empty() {
        return Err(ApiError::Invalid(
            problems.into_iter().map(FieldError::from).collect(),
        ));
    }
    let store = R::store(context);
    // Two first deliveries of one source id may race: the loser's claim conflicts, and its
    // second attempt finds the winner's record and updates it.
    let written = match store.upsert(tenant, record.clone()) {
        Err(StoreError::Conflict { .. }) => store.upsert(tenant, record),
        other => other,
    };
    let (stored, created) = written?;
    context.audit(
        AuditEvent::new(
            Some(tenant),
            actor.clone(),
            AuditAction::DataWritten,
            format!(
                "{via}: {} {} {}",
                R::KIND.as_str(),
                stored.id,
                if created { "created" } else { "updated" }
            ),
        )
        .client(client),
    )?;
    crate::analysis::enqueue_written(context, tenant, R::KIND, stored.id, stored.updated);
    crate::alerts::after_write(context, tenant, R::KIND, stored.id, created);
    crate::health::after_write(context, tenant, R::KIND, stored.id);
    crate::insights::refresh_logged(context, tenant, R::KIND, &[stored.id]);
    Ok((stored, created))
}

/// One record by id, audited as a read. Another tenant's id is simply not found.
pub fn read_record<R: ApiResource>(
    context: &AppContext,
    actor: &Actor,
    client: Option<String>,
    tenant: TenantId,
    id: &str,
) -> Result<Stored<R>, ApiError> {
    let id = id.parse::<RecordId>().map_err(|_| ApiError::NotFound)?;
    let stored = R::store(context)
        .get(tenant, id)?
        .ok_or(ApiError::NotFound)?;
    context.audit(
        AuditEvent::new(
            Some(tenant),
            actor.clone(),
            AuditAction::PersonalDataRead,
            format!("api: {} {id}", R::KIND.as_str()),
        )
        .client(client),
    )?;
    Ok(stored)
}

/// One page of the tenant's records in creation order, filtered, through the shared pagination
/// engine ([`RecordStore::page`], at most 5,000 records examined); audited as a read.
pub fn list_records<R: ApiResource>(
    context: &AppContext,
    actor: &Actor,
    client: Option<String>,
    tenant: TenantId,
    query: &ListQuery,
) -> Result<ApiPage<R>, ApiError> {
    let limit = query
        .limit
        .map_or(DEFAULT_LIMIT, |limit| (limit as usize).min(MAX_LIMIT));
    let cursor = match &query.cursor {
        Some(raw) => Some(raw.parse::<RecordId>().map_err(|_| {
            ApiError::BadRequest(
                "Some query parameters are not valid.".to_owned(),
                vec![FieldError::parameter(
                    "cursor",
                    "is not a cursor returned by this list",
                )],
            )
        })?),
        None => None,
    };
    let filter = R::filter(query);
    let found = R::store(context).page(tenant, Order::OldestFirst, cursor, limit, |record| {
        record.matches(&filter)
    })?;
    let items: Vec<ApiRecord<R>> = found.items.into_iter().map(ApiRecord::from).collect();
    let next_cursor = found.next_cursor.map(|id| id.to_string());
    context.audit(
        AuditEvent::new(
            Some(tenant),
            actor.clone(),
            AuditAction::PersonalDataRead,
            format!("api: {} list ({} returned)", R::PLURAL, items.len()),
        )
        .client(client),
    )?;
    Ok(ApiPage { items, next_cursor })
}

/// The create, get and list handlers of one resource, each with its `OpenAPI` annotation.
macro_rules! resource_handlers {
    ($module:ident, $record:ty, $collection:tt, $item:tt, $tag:tt) => {
        pub mod $module {
            use actix_web::http::{header, StatusCode};
            use actix_web::web::{self, Data};
            use actix_web::{HttpRequest, HttpResponse};

            use crate::api::guard::{ApiAccess, ReadScope, WriteScope};
            use crate::api::resources::{
                list_records, read_record, write_record, ApiPage, ApiRecord, ApiResource as _,
                ListQuery,
            };
            use crate::api::{json, parse_json, read_body, ApiError, Problem};
            use crate::context::AppContext;

            #[allow(unused_imports)] // Named in the OpenAPI annotations only.
            use $crate::accounts::{AccountRecord, ContactRecord};
            #[allow(unused_imports)] // Named in the OpenAPI annotations only.
            use $crate::interactions::InteractionRecord;
            #[allow(unused_imports)] // Named in the OpenAPI annotations only.
            use $crate::signals::SignalRecord;

            /// Creates the record, or updates the one with the same `source_system` and
            /// `source_id`. Needs the `write` scope.
            #[utoipa::path(post, path = $collection, tag = $tag, request_body = $record,
                security(("api_key" = ["write"])),
                responses(
                    (status = 201, description = "Created", body = ApiRecord<$record>),
                    (status = 200, description = "Updated (same source system and id)", body = ApiRecord<$record>),
                    (status = 400, description = "Not JSON", body = Problem, content_type = "application/problem+json"),
                    (status = 401, description = "No valid key", body = Problem, content_type = "application/problem+json"),
                    (status = 403, description = "Key lacks the write scope", body = Problem, content_type = "application/problem+json"),
                    (status = 413, description = "Body over 16 MiB", body = Problem, content_type = "application/problem+json"),
                    (status = 422, description = "Invalid record; `errors` names each field", body = Problem, content_type = "application/problem+json"),
                ))]
            pub async fn create(
                context: Data<AppContext>,
                access: ApiAccess<WriteScope>,
                payload: web::Payload,
            ) -> Result<HttpResponse, ApiError> {
                let body = read_body(payload).await?;
                let actor = access.key.actor();
                // Parsing up to 16 MiB of JSON is CPU work: it runs on the blocking pool too.
                let (stored, created) = web::block(move || {
                    let record: $record = parse_json(&body)?;
                    write_record(&context, &actor, access.client, access.key.tenant, "api", record)
                })
                .await??;
                let location = format!("{}/{}", $collection, stored.id);
                let status = if created { StatusCode::CREATED } else { StatusCode::OK };
                let mut response = json(status, &ApiRecord::from(stored))?;
                if let Ok(value) = header::HeaderValue::from_str(&location) {
                    response.headers_mut().insert(header::LOCATION, value);
                }
                Ok(response)
            }

            /// One record by Rapport's id. Needs the `read` scope.
            #[utoipa::path(get, path = $item, tag = $tag,
                params(("id" = String, Path, description = "Rapport's id of the record")),
                security(("api_key" = ["read"])),
                responses(
                    (status = 200, description = "The record", body = ApiRecord<$record>),
                    (status = 401, description = "No valid key", body = Problem, content_type = "application/problem+json"),
                    (status = 403, description = "Key lacks the read scope", body = Problem, content_type = "application/problem+json"),
                    (status = 404, description = "No such record in this tenant", body = Problem, content_type = "application/problem+json"),
                ))]
            pub async fn get(
                context: Data<AppContext>,
                access: ApiAccess<ReadScope>,
                id: web::Path<String>,
            ) -> Result<HttpResponse, ApiError> {
                let actor = access.key.actor();
                let stored = web::block(move || {
                    read_record::<$record>(&context, &actor, access.client, access.key.tenant, &id)
                })
                .await??;
                json(StatusCode::OK, &ApiRecord::from(stored))
            }

            /// The tenant's records in creation order, filtered, one page at a time. Needs the
            /// `read` scope.
            #[utoipa::path(get, path = $collection, tag = $tag, params(ListQuery),
                security(("api_key" = ["read"])),
                responses(
                    (status = 200, description = "One page", body = ApiPage<$record>),
                    (status = 400, description = "A bad or inapplicable parameter; `errors` names it", body = Problem, content_type = "application/problem+json"),
                    (status = 401, description = "No valid key", body = Problem, content_type = "application/problem+json"),
                    (status = 403, description = "Key lacks the read scope", body = Problem, content_type = "application/problem+json"),
                ))]
            pub async fn list(
                request: HttpRequest,
                context: Data<AppContext>,
                access: ApiAccess<ReadScope>,
            ) -> Result<HttpResponse, ApiError> {
                let query = ListQuery::parse(request.query_string(), <$record>::FILTERS)?;
                let actor = access.key.actor();
                let page = web::block(move || {
                    list_records::<$record>(&context, &actor, access.client, access.key.tenant, &query)
                })
                .await??;
                json(StatusCode::OK, &page)
            }
        }
    };
}

resource_handlers!(
    interactions,
    InteractionRecord,
    "/api/v1/interactions",
    "/api/v1/interactions/{id}",
    "interactions"
);
resource_handlers!(
    accounts,
    AccountRecord,
    "/api/v1/accounts",
    "/api/v1/accounts/{id}",
    "accounts"
);
resource_handlers!(
    contacts,
    ContactRecord,
    "/api/v1/contacts",
    "/api/v1/contacts/{id}",
    "contacts"
);
resource_handlers!(
    signals,
    SignalRecord,
    "/api/v1/signals",
    "/api/v1/signals/{id}",
    "signals"
);

/// The resources' routes, relative to `/api/v1`.
pub fn routes(config: &mut actix_web::web::ServiceConfig) {
    use crate::api::resource;
    use actix_web::web;
    config
        .service(
            resource("/interactions")
                .route(web::post().to(interactions::create))
                .route(web::get().to(interactions::list)),
        )
        .service(resource("/interactions/{id}").route(web::get().to(interactions::get)))
        .service(
            resource("/accounts")
                .route(web::post().to(accounts::create))
                .route(web::get().to(accounts::list)),
        )
        .service(resource("/accounts/{id}").route(web::get().to(accounts::get)))
        .service(
            resource("/contacts")
                .route(web::post().to(contacts::create))
                .route(web::get().to(contacts::list)),
        )
        .service(resource("/contacts/{id}").route(web::get().to(contacts::get)))
        .service(
            resource("/signals")
                .route(web::post().to(signals::create))
                .route(web::get().to(signals::list)),
        )
        .service(resource("/signals/{id}").route(web::get().to(signals::get)));
}
