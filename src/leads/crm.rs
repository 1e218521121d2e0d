//! The CSV hand-off of qualified leads to a CRM's own import tool.
//!
//! The headers are the column labels the importers map automatically (see the README's Leads
//! section for the sources): `HubSpot`'s contact properties by label ("First Name", "Last Name",
//! "Email", "Company Name", "Lead Status", "Lifecycle Stage"), plus Rapport's own columns, which
//! a `HubSpot` admin maps to custom properties; Salesforce's Data Import Wizard's lead fields
//! ("First Name", "Last Name", "Email", "Company", "Lead Status", "Lead Source",
//! "No. of Employees", "Rating", "Description").
//!
//! Only leads with status `qualified` are exported, and a subject under restriction or
//! objection never is: the export counts them and names none.

use crate::audit::{Actor, AuditAction, AuditEvent};
use crate::context::AppContext;
use crate::csv_cell::defuse;
use crate::ids::TenantId;
use crate::leads::{all, Lead, LeadError, LeadStatus};
use crate::privacy::Restrictions;

/// `HubSpot` contacts import: the first six map to built-in properties by label; the `Rapport …`
/// columns map to custom contact properties of the same names.
pub const HUBSPOT_COLUMNS: [&str; 13] = [
    "First Name",
    "Last Name",
    "Email",
    "Company Name",
    "Lead Status",
    "Lifecycle Stage",
    "Rapport Lead Score",
    "Rapport Intent",
    "Rapport Budget",
    "Rapport Company Size",
    "Rapport Timeline",
    "Rapport Current Solution",
    "Rapport Lead ID",
];

/// Salesforce lead import (Data Import Wizard labels).
pub const SALESFORCE_COLUMNS: [&str; 9] = [
    "First Name",
    "Last Name",
    "Email",
    "Company",
    "Lead Status",
    "Lead Source",
    "No. of Employees",
    "Rating",
    "Description",
];

/// What Salesforce requires when a name or company is unknown.
const NOT_PROVIDED: &str = "[not provided]";

/// The CRM a file is made for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CrmFormat {
    HubSpot,
    Salesforce,
}

impl CrmFormat {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::HubSpot => "hubspot",
            Self::Salesforce => "salesforce",
        }
    }

    pub fn parse(value: &str) -> Option<Self> {
        match value {
            "hubspot" => Some(Self::HubSpot),
            "salesforce" => Some(Self::Salesforce),
            _ => None,
        }
    }

    pub fn columns(self) -> &'static [&'static str] {
        match self {
            Self::HubSpot => &HUBSPOT_COLUMNS,
            Self::Salesforce => &SALESFORCE_COLUMNS,
        }
    }
}

/// A finished export.
#[derive(Clone, Debug)]
pub struct Export {
    pub csv: Vec<u8>,
    /// Leads in the file.
    pub rows: usize,
    /// Qualified leads left out because their subject restricted or objected to processing.
    pub left_out: usize,
    /// Only the newest [`crate::leads::MAX_SCANNED`] leads were read: older ones are not in
    /// the file.
    pub limit_reached: bool,
}

/// First and last name from a display name: the last word is the last name.
pub fn split_name(name: Option<&str>) -> (String, String) {
    let words: Vec<&str> = name.unwrap_or_default().split_whitespace().collect();
    match words.as_slice() {
        [] => (String::new(), String::new()),
        [only] => (String::new(), (*only).to_owned()),
        [first @ .., last] => (first.join(" "), (*last).to_owned()),
    }
}

fn humanise(label: &str) -> String {
    label.replace('_', " ")
}

fn row(format: CrmFormat, lead: &Lead) -> Vec<String> {
    let visitor = lead.visitor();
    let (first, last) = split_name(visitor.name.as_deref());
    let email = visitor.email.unwrap_or_default();
    let company = lead.company().unwrap_or_default();
    let qualification = lead.qualification.as_ref();
    let facts = qualification.map(|lead| &lead.facts);
    let score = lead
        .score()
        .map(|score| score.to_string())
        .unwrap_or_default();
    let intent = lead.intent().map(humanise).unwrap_or_default();
    let budget = facts
        .and_then(|facts| facts.budget.clone())
        .unwrap_or_default();
    let size = facts
        .and_then(|facts| facts.company_size)
        .map(|size| size.to_string())
        .unwrap_or_default();
    let timeline = facts
        .map(|facts| humanise(&facts.timeline))
        .unwrap_or_default();
    let solution = facts
        .and_then(|facts| facts.current_solution.clone())
        .unwrap_or_default();
    let cells = match format {
        CrmFormat::HubSpot => vec![
            first,
            last,
            email,
            company,
            "Open".to_owned(),
            "Sales Qualified Lead".to_owned(),
            score,
            intent,
            budget,
            size,
            timeline,
            solution,
            lead.id().to_string(),
        ],
        CrmFormat::Salesforce => {
            let rating = match lead.score() {
                Some(70..) => "Hot",
                Some(40..) => "Warm",
                _ => "Cold",
            };
            let mut description = format!("Rapport lead {}: score {score}", lead.id());
            for (name, value) in [
                ("intent", &intent),
                ("budget", &budget),
                ("timeline", &timeline),
                ("current solution", &solution),
            ] {
                if !value.is_empty() {
                    description.push_str("; ");
                    description.push_str(name);
                    description.push(' ');
                    description.push_str(value);
                }
            }
            vec![
                first,
                if last.is_empty() {
                    NOT_PROVIDED.to_owned()
                } else {
                    last
                },
                email,
                if company.is_empty() {
                    NOT_PROVIDED.to_owned()
                } else {
                    company
                },
                "Working - Contacted".to_owned(),
                "Web".to_owned(),
                size,
                rating.to_owned(),
                description,
            ]
        }
    };
    cells.iter().map(|value| defuse(value)).collect()
}

/// The tenant's qualified leads as `format`'s CSV, without the subjects under restriction or
/// objection. Audited as `leads.exported` with the format, the counts and the exported leads' ids.
pub fn export(
    context: &AppContext,
    actor: &Actor,
    client: Option<String>,
    tenant: TenantId,
    format: CrmFormat,
) -> Result<Export, LeadError> {
    let restrictions = Restrictions::new(context.store.clone());
    let mut writer = csv::Writer::from_writer(Vec::new());
    let invalid = |_: csv::Error| LeadError::Invalid {
        field: "Export",
        message: "the CSV could not be written".to_owned(),
    };
    writer.write_record(format.columns()).map_err(invalid)?;
    let mut rows = 0;
    let mut left_out = 0;
    let mut exported = Vec::new();
    let list = all(context, tenant)?;
    for lead in list.leads {
        if lead.state.status != LeadStatus::Qualified {
            continue;
        }
        if restrictions.covers(tenant, &lead.interaction.record)? {
            left_out += 1;
            continue;
        }
        writer.write_record(row(format, &lead)).map_err(invalid)?;
        exported.push(lead.id().to_string());
        rows += 1;
    }
    let csv = writer.into_inner().map_err(|_| LeadError::Invalid {
        field: "Export",
        message: "the CSV could not be written".to_owned(),
    })?;
    context.audit(
        AuditEvent::new(
            Some(tenant),
            actor.clone(),
            AuditAction::LeadsExported,
            format!(
                "{} CSV: {rows} qualified leads, {left_out} left out (restricted){}; leads: {}",
                format.as_str(),
                if list.limit_reached {
                    ", limit reached"
                } else {
                    ""
                },
                if exported.is_empty() {
                    "none".to_owned()
                } else {
                    exported.join(" ")
                }
            ),
        )
        .client(client),
    )?;
    Ok(Export {
        csv,
        rows,
        left_out,
        limit_reached: list.limit_reached,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_split_at_the_last_word_and_formulas_are_defused() {
        assert_eq!(
            split_name(Some("Ada  King Lovelace")),
            ("Ada King".to_owned(), "Lovelace".to_owned())
        );
        assert_eq!(split_name(Some("Cher")), (String::new(), "Cher".to_owned()));
        assert_eq!(split_name(None), (String::new(), String::new()));
        assert_eq!(defuse("=HYPERLINK(\"x\")"), "'=HYPERLINK(\"x\")");
        assert_eq!(defuse("$500"), "$500");
    }
}
