//! The `accounts` and `contacts` formats: CSV tables of the tenant's customers and their people
//! (README, "Import formats"). One record per row; the account or contact id is the source id.

use std::io::BufRead;

use crate::accounts::{AccountRecord, ContactRecord};
use crate::ingest::table::{self, optional, required, Column, Row, SOURCE_SYSTEM};
use crate::ingest::{ImportSource, Records, Rejection};

const ACCOUNT_COLUMNS: &[Column] = &[
    required("account_id"),
    required("name"),
    optional("domain"),
    optional("plan"),
    optional("arr"),
    optional("renewal_date"),
    optional("owner_email"),
    optional(SOURCE_SYSTEM),
];

/// Record fields whose column has another name.
const ACCOUNT_FIELDS: &[(&str, &str)] = &[("source_id", "account_id"), ("owner", "owner_email")];

fn account(row: &Row) -> Result<AccountRecord, Rejection> {
    Ok(AccountRecord {
        source_system: row.source_system(),
        source_id: row.required("account_id")?.to_owned(),
        name: row.required("name")?.to_owned(),
        domain: row.text("domain"),
        plan: row.text("plan"),
        arr: row.number("arr", "a number like 48000 or 48000.50")?,
        renewal_date: row.date("renewal_date")?,
        owner: row.text("owner_email"),
    })
}

/// The parser of the `accounts` format.
pub fn accounts(_source: &dyn ImportSource, reader: Box<dyn BufRead>) -> Records<AccountRecord> {
    table::records(reader, ACCOUNT_COLUMNS, ACCOUNT_FIELDS, account)
}

const CONTACT_COLUMNS: &[Column] = &[
    required("contact_id"),
    required("name"),
    optional("email"),
    optional("phone"),
    optional("date_of_birth"),
    optional("job_title"),
    optional("account_id"),
    optional(SOURCE_SYSTEM),
];

const CONTACT_FIELDS: &[(&str, &str)] = &[("source_id", "contact_id"), ("account", "account_id")];

fn contact(row: &Row) -> Result<ContactRecord, Rejection> {
    Ok(ContactRecord {
        source_system: row.source_system(),
        source_id: row.required("contact_id")?.to_owned(),
        name: row.required("name")?.to_owned(),
        email: row.text("email"),
        phone: row.text("phone"),
        date_of_birth: row.date("date_of_birth")?,
        job_title: row.text("job_title"),
        account: row.text("account_id"),
    })
}

/// The parser of the `contacts` format.
pub fn contacts(_source: &dyn ImportSource, reader: Box<dyn BufRead>) -> Records<ContactRecord> {
    table::records(reader, CONTACT_COLUMNS, CONTACT_FIELDS, contact)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reader(text: &'static str) -> Box<dyn BufRead> {
        Box::new(std::io::Cursor::new(text.as_bytes()))
    }

    #[test]
    fn accounts_parse_and_bad_cells_name_their_column() {
        let results: Vec<_> = accounts(
            &crate::ingest::FileSource(std::path::Path::new("a.csv")),
            reader(concat!(
                "account_id,name,domain,plan,arr,renewal_date,owner_email\n",
                "A-1,Northwind,northwind.example,Pro,48000,2027-03-31,csm@vendor.example\n",
                "A-2,Contoso,,,-5,,\n",
                "A-3,Fabrikam,,,,31/12/2027,\n",
                "A-4,Tailspin,,,,,secret-owner\n",
            )),
        )
        .collect();
        let (line, first) = results[0].as_ref().unwrap();
        assert_eq!(*line, 2);
        assert_eq!(first.arr, Some(48000.0));
        assert_eq!(first.owner.as_deref(), Some("csm@vendor.example"));
        assert_eq!(first.source_system, "csv");
        let fields: Vec<_> = results[1..]
            .iter()
            .map(|r| {
                let e = r.as_ref().unwrap_err();
                (e.line, e.field.clone().unwrap())
            })
            .collect();
        assert_eq!(
            fields,
            [
                (3, "arr".to_owned()),
                (4, "renewal_date".to_owned()),
                (5, "owner_email".to_owned())
            ]
        );
        for result in &results[1..] {
            let text = result.as_ref().unwrap_err().to_string();
            assert!(
                !text.contains("secret") && !text.contains("31/12"),
                "{text}"
            );
        }
    }

    #[test]
    fn contacts_parse_and_a_missing_name_is_refused() {
        let results: Vec<_> = contacts(
            &crate::ingest::FileSource(std::path::Path::new("c.csv")),
            reader(concat!(
                "contact_id,name,email,phone,date_of_birth,job_title,account_id,source_system\n",
                "P-1,Maria Lopez,maria@northwind.example,+34 600 123 456,1985-04-12,CFO,A-1,crm\n",
                "P-2,,x@y.example,,,,,\n",
            )),
        )
        .collect();
        let (_, maria) = results[0].as_ref().unwrap();
        assert_eq!(maria.source_system, "crm");
        assert_eq!(maria.account.as_deref(), Some("A-1"));
        assert_eq!(maria.date_of_birth.unwrap().to_string(), "1985-04-12");
        let error = results[1].as_ref().unwrap_err();
        assert_eq!((error.line, error.field.as_deref()), (3, Some("name")));
    }
}
