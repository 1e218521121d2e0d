//! Accounts (the tenant's customers, usually companies) and contacts (their people). Both are
//! imported from the tenant's systems, identified there by source system and id, and sealed under
//! the tenant's keys; contacts are personal data throughout.

pub mod briefing;
pub mod export;
pub mod query;
pub mod routes;
pub mod sections;

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};

use crate::records::refs::{self, Reference};
use crate::records::{
    check_email, check_optional, check_short, FieldProblem, RecordKind, RecordStore, SourceRecord,
    Stored,
};

/// A customer account as imported.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AccountRecord {
    pub source_system: String,
    pub source_id: String,
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub domain: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plan: Option<String>,
    /// Annual recurring revenue, in the tenant's currency.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub arr: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub renewal_date: Option<NaiveDate>,
    /// E-mail of the Customer Success Manager who owns the account.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
}

pub type Account = Stored<AccountRecord>;
pub type AccountStore = RecordStore<AccountRecord>;

impl SourceRecord for AccountRecord {
    const KIND: RecordKind = RecordKind::Account;

    fn source_system(&self) -> &str {
        &self.source_system
    }

    fn source_id(&self) -> &str {
        &self.source_id
    }

    /// Its own source id and domain: what other records name it by.
    fn references(&self) -> Vec<Reference> {
        let mut references = Vec::new();
        refs::collect(
            &mut references,
            Reference::account,
            [Some(self.source_id.as_str()), self.domain.as_deref()],
        );
        references
    }

    fn problems(&self) -> Vec<FieldProblem> {
        let mut problems = Vec::new();
        check_short(&mut problems, "source_system", &self.source_system, true);
        check_short(&mut problems, "source_id", &self.source_id, true);
        check_short(&mut problems, "name", &self.name, true);
        check_optional(&mut problems, "domain", self.domain.as_ref());
        check_optional(&mut problems, "plan", self.plan.as_ref());
        if self.arr.is_some_and(|arr| !arr.is_finite() || arr < 0.0) {
            problems.push(FieldProblem::new("arr", "must be a number of at least 0"));
        }
        check_email(&mut problems, "owner", self.owner.as_ref());
        problems
    }
}

/// A person at a customer, as imported.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ContactRecord {
    pub source_system: String,
    pub source_id: String,
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phone: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub date_of_birth: Option<NaiveDate>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job_title: Option<String>,
    /// The account's source id (or domain).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account: Option<String>,
}

pub type Contact = Stored<ContactRecord>;
pub type ContactStore = RecordStore<ContactRecord>;

impl SourceRecord for ContactRecord {
    fn subject(&self) -> Option<crate::privacy::subjects::Subject> {
        crate::privacy::subjects::of_contact(self)
    }

    const KIND: RecordKind = RecordKind::Contact;

    fn source_system(&self) -> &str {
        &self.source_system
    }

    fn source_id(&self) -> &str {
        &self.source_id
    }

    /// Its account, address, phone and name.
    fn references(&self) -> Vec<Reference> {
        let mut references = Vec::new();
        refs::collect(
            &mut references,
            Reference::account,
            [self.account.as_deref()],
        );
        refs::collect(&mut references, Reference::email, [self.email.as_deref()]);
        refs::collect(&mut references, Reference::phone, [self.phone.as_deref()]);
        refs::collect(&mut references, Reference::name, [Some(self.name.as_str())]);
        references
    }

    fn problems(&self) -> Vec<FieldProblem> {
        let mut problems = Vec::new();
        check_short(&mut problems, "source_system", &self.source_system, true);
        check_short(&mut problems, "source_id", &self.source_id, true);
        check_short(&mut problems, "name", &self.name, true);
        check_email(&mut problems, "email", self.email.as_ref());
        if let Some(phone) = &self.phone {
            let digits = phone.chars().filter(char::is_ascii_digit).count();
            let allowed = phone
                .chars()
                .all(|c| c.is_ascii_digit() || " +-().".contains(c));
            if !allowed || !(5..=20).contains(&digits) {
                problems.push(FieldProblem::new(
                    "phone",
                    "must be 5 to 20 digits, with + - ( ) . and spaces allowed",
                ));
            }
        }
        if self
            .date_of_birth
            .is_some_and(|date| date > chrono::Utc::now().date_naive())
        {
            problems.push(FieldProblem::new(
                "date_of_birth",
                "must not be in the future",
            ));
        }
        check_optional(&mut problems, "job_title", self.job_title.as_ref());
        check_optional(&mut problems, "account", self.account.as_ref());
        problems
    }
}
