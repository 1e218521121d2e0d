//! Every import format besides jsonl through the real binary: each committed fixture imports
//! whole and what is stored holds its values; the malformed twin is refused whole, naming line and
//! column or field and never the rejected value; `--skip-invalid` imports exactly the valid
//! records; re-importing updates and never duplicates.

use std::path::{Path, PathBuf};
use std::process::Output;

use rapport::accounts::{AccountRecord, ContactRecord};
use rapport::config::Config;
use rapport::context::AppContext;
use rapport::interactions::{AuthorRole, Channel, InteractionRecord};
use rapport::records::{RecordStore, SourceRecord};
use rapport::signals::{Signal, SignalRecord, SurveyKind};
use rapport::store::OpenMode;

use crate::helpers::{cli_instance, free_port, rapport, stderr, stdout};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join("fixtures")
        .join(name)
}

struct Instance {
    dir: tempfile::TempDir,
    config: String,
}

fn instance() -> Instance {
    let dir = tempfile::tempdir().unwrap();
    let config = cli_instance(dir.path(), free_port())
        .to_str()
        .unwrap()
        .to_owned();
    for slug in ["acme", "skip"] {
        let created = rapport(
            &[
                "tenant", "create", "--config", &config, "--slug", slug, "--name", slug,
            ],
            None,
        );
        assert!(created.status.success(), "{}", stderr(&created));
    }
    Instance { dir, config }
}

impl Instance {
    fn import(&self, tenant: &str, format: &str, file: &Path, extra: &[&str]) -> Output {
        let mut args = vec![
            "import",
            "--config",
            &self.config,
            "--tenant",
            tenant,
            "--format",
            format,
        ];
        args.extend_from_slice(extra);
        args.push(file.to_str().unwrap());
        rapport(&args, None)
    }

    /// What the tenant holds of one kind, read in-process after the command, by source id.
    fn stored<R: SourceRecord>(&self, tenant: &str) -> Vec<R> {
        let config = Config::load(Path::new(&self.config)).unwrap();
        let context = AppContext::open(config, OpenMode::ExistingOnly).unwrap();
        let tenant = context.tenants.find_by_slug(tenant).unwrap().unwrap();
        let mut records = Vec::new();
        RecordStore::<R>::new(context.store.clone())
            .for_each(tenant.id, |stored| {
                records.push(stored.record);
                Ok(())
            })
            .unwrap();
        records.sort_by(|a, b| a.source_id().cmp(b.source_id()));
        records
    }
}

/// A format's fixture and its malformed twin.
struct Case<'a> {
    format: &'a str,
    good: &'a str,
    bad: &'a str,
    /// Records in the good fixture.
    records: usize,
    /// Valid records in the malformed twin.
    valid: usize,
    /// `line N, field F` of each rejection of the malformed twin.
    rejections: &'a [&'a str],
    /// Rejected values that must not be echoed.
    secrets: &'a [&'a str],
}

/// Refusal, `--skip-invalid` and re-import for one format; returns what the fixture stored.
fn import_checked<R: SourceRecord>(case: &Case<'_>) -> Vec<R> {
    let instance = instance();
    let rejected = case.rejections.len();

    let refused = instance.import("acme", case.format, &fixture(case.bad), &[]);
    assert!(
        !refused.status.success(),
        "{}: a malformed file was accepted",
        case.format
    );
    let errors = stderr(&refused);
    for expected in case.rejections {
        assert!(
            errors.contains(&format!("rejected: {expected}")),
            "{}: no `{expected}` in:\n{errors}",
            case.format
        );
    }
    assert!(
        errors.contains(&format!(
            "nothing was imported: {rejected} invalid record(s)"
        )),
        "{errors}"
    );
    for secret in case.secrets {
        assert!(
            !errors.contains(secret),
            "a rejected value was echoed: {errors}"
        );
    }
    assert_eq!(
        stdout(&refused).trim(),
        format!("imported 0, updated 0, rejected {rejected}")
    );
    assert!(
        instance.stored::<R>("acme").is_empty(),
        "{}: a refused import wrote something",
        case.format
    );

    let skipped = instance.import("skip", case.format, &fixture(case.bad), &["--skip-invalid"]);
    assert!(skipped.status.success(), "{}", stderr(&skipped));
    assert_eq!(
        stdout(&skipped).trim(),
        format!("imported {}, updated 0, rejected {rejected}", case.valid)
    );
    assert_eq!(instance.stored::<R>("skip").len(), case.valid);

    let imported = instance.import("acme", case.format, &fixture(case.good), &[]);
    assert!(imported.status.success(), "{}", stderr(&imported));
    assert_eq!(
        stdout(&imported).trim(),
        format!("imported {}, updated 0, rejected 0", case.records)
    );
    let again = instance.import("acme", case.format, &fixture(case.good), &[]);
    assert!(again.status.success(), "{}", stderr(&again));
    assert_eq!(
        stdout(&again).trim(),
        format!("imported 0, updated {}, rejected 0", case.records)
    );
    let stored = instance.stored::<R>("acme");
    assert_eq!(
        stored.len(),
        case.records,
        "{}: duplicates after re-import",
        case.format
    );
    drop(instance.dir);
    stored
}

fn roles(record: &InteractionRecord) -> Vec<AuthorRole> {
    record.messages.iter().map(|message| message.role).collect()
}

#[test]
fn message_csv_groups_rows_into_interactions() {
    let stored = import_checked::<InteractionRecord>(&Case {
        format: "csv",
        good: "messages.csv",
        bad: "messages-with-errors.csv",
        records: 3,
        valid: 2,
        rejections: &[
            "line 7, field author_email",
            "line 9, field sent_at",
            "line 14, field interaction_id: rows of interaction CALL-0412 must be together",
        ],
        secrets: &["sam.patel at vendor", "lunchtime"],
    });
    let ids: Vec<&str> = stored.iter().map(|r| r.source_id.as_str()).collect();
    assert_eq!(ids, ["C-7710", "CALL-0412", "T-2001"]);

    let chat = &stored[0];
    assert_eq!(
        (chat.source_system.as_str(), chat.channel),
        ("livechat", Channel::Chat)
    );
    assert_eq!(chat.ai_tool.as_deref(), Some("Assist Bot 2"));
    assert_eq!(chat.tags, ["users", "permissions"]);
    assert_eq!(
        roles(chat),
        [
            AuthorRole::Customer,
            AuthorRole::AiAgent,
            AuthorRole::Customer,
            AuthorRole::Agent
        ]
    );

    let ticket = &stored[2];
    assert_eq!(
        ticket.subject.as_deref(),
        Some("Invoice shows wrong VAT number")
    );
    assert_eq!(ticket.account.as_deref(), Some("northwind.example"));
    assert_eq!(ticket.messages.len(), 4);
    assert_eq!(
        ticket.messages[0].text,
        "Hello,\n\nour October invoice shows the VAT number of our old entity. Could you reissue it with the new one?\n\nThanks, Maria"
    );
    assert_eq!(ticket.messages[2].role, AuthorRole::InternalNote);
    assert_eq!(
        ticket.messages[1].author_email.as_deref(),
        Some("sam.patel@vendor.example")
    );
    assert_eq!(
        ticket.messages[3].sent_at.to_rfc3339(),
        "2026-10-08T10:05:00+00:00"
    );
    assert_eq!(stored[1].channel, Channel::Call);
}

#[test]
fn zendesk_tickets_keep_roles_and_internal_notes() {
    let stored = import_checked::<InteractionRecord>(&Case {
        format: "zendesk",
        good: "zendesk-tickets.jsonl",
        bad: "zendesk-tickets-with-errors.jsonl",
        records: 3,
        valid: 1,
        rejections: &[
            "line 1, field comments[1].created_at",
            "line 2, field users (author of comments[0]).email",
        ],
        secrets: &["peter.gibbons(at)initech"],
    });
    let ids: Vec<&str> = stored.iter().map(|r| r.source_id.as_str()).collect();
    assert_eq!(ids, ["48213", "48220", "48231"]);

    let email = &stored[0];
    assert_eq!(
        (email.source_system.as_str(), email.channel),
        ("zendesk", Channel::Email)
    );
    assert_eq!(
        email.subject.as_deref(),
        Some("Sync with our CRM stopped overnight")
    );
    assert_eq!(email.status.as_deref(), Some("solved"));
    assert_eq!(email.account.as_deref(), Some("360044"));
    assert_eq!(email.tags, ["integration", "crm", "sync"]);
    assert_eq!(email.attachments, ["integration-error.png"]);
    assert_eq!(
        roles(email),
        [
            AuthorRole::Customer,
            AuthorRole::InternalNote,
            AuthorRole::Agent,
            AuthorRole::Customer
        ]
    );
    assert!(email.messages[1]
        .text
        .starts_with("Globex rotated their CRM admin password"));
    assert_eq!(email.messages[0].author_name.as_deref(), Some("Ravi Menon"));
    assert_eq!(
        email.messages[2].author_email.as_deref(),
        Some("julia.novak@vendor.example")
    );

    let chat = &stored[1];
    assert_eq!(chat.channel, Channel::Chat);
    assert_eq!(roles(chat), [AuthorRole::Customer, AuthorRole::Agent]);
    assert_eq!(chat.attachments, ["initech-invoices-2025.pdf"]);

    let call = &stored[2];
    assert_eq!(call.channel, Channel::Call);
    assert_eq!(call.account, None);
    // The requester is not among the side-loaded users: still the customer.
    assert_eq!(
        roles(call),
        [AuthorRole::Customer, AuthorRole::InternalNote]
    );
}

#[test]
fn mbox_threads_keep_quotes_and_signatures_apart() {
    let stored = import_checked::<InteractionRecord>(&Case {
        format: "mbox",
        good: "support-threads.mbox",
        bad: "support-threads-with-errors.mbox",
        records: 2,
        valid: 1,
        rejections: &["line 59, field Date"],
        secrets: &["sometime on Tuesday"],
    });
    let export = &stored[0];
    assert_eq!(export.source_id, "<A1.7f3c@mail.umbrella.example>");
    assert_eq!(
        (export.source_system.as_str(), export.channel),
        ("mail", Channel::Email)
    );
    assert_eq!(export.subject.as_deref(), Some("Bulk export times out"));
    assert_eq!(export.messages.len(), 3);
    assert_eq!(
        roles(export),
        [
            AuthorRole::Customer,
            AuthorRole::Agent,
            AuthorRole::Customer
        ]
    );
    let first = &export.messages[0];
    assert!(
        first
            .text
            .contains("From the logs it looks like a gateway timeout"),
        "the mboxrd >From line was not unescaped: {:?}",
        first.text
    );
    assert_eq!(first.quoted, None);
    assert_eq!(
        first.signature.as_deref(),
        Some("Hannah Schmidt\nData Team Lead, Umbrella GmbH")
    );
    let reply = &export.messages[1];
    assert_eq!(
        reply.author_email.as_deref(),
        Some("julia.novak@vendor.example")
    );
    assert!(reply
        .text
        .contains("run as a background job since version 4.2"));
    assert!(reply.text.ends_with("Best regards,"), "{:?}", reply.text);
    assert!(!reply.text.contains("nightly export"), "{:?}", reply.text);
    let quoted = reply.quoted.as_deref().unwrap();
    assert!(quoted.starts_with("On Tue, 13 Oct 2026 at 08:15, Hannah Schmidt"));
    assert!(quoted.contains("> our nightly export of the full ticket history"));
    assert_eq!(
        reply.signature.as_deref(),
        Some("Julia Novak\nSupport Engineer, Vendor Inc.")
    );
    let last = &export.messages[2];
    assert_eq!(
        last.text,
        "That works, thank you! The first background export finished in 4 minutes."
    );
    assert!(last
        .quoted
        .as_deref()
        .unwrap()
        .starts_with("Julia Novak wrote:"));
    assert_eq!(last.sent_at.to_rfc3339(), "2026-10-13T12:30:00+00:00");

    let sso = &stored[1];
    assert_eq!(sso.source_id, "<CAB1-okta@mail.stark.example>");
    assert_eq!(
        sso.subject.as_deref(),
        Some("Feature request: SSO with Okta")
    );
    assert_eq!(roles(sso), [AuthorRole::Customer, AuthorRole::Agent]);
    // An HTML-only message: its text without the markup.
    let html = &sso.messages[0].text;
    assert!(html.contains("single sign-on with Okta"), "{html:?}");
    assert!(!html.contains('<'), "{html:?}");
    assert_eq!(sso.attachments, ["saml-beta-guide.pdf"]);
    assert!(sso.messages[1].text.starts_with("Hi Luis,"));
    assert!(!sso.messages[1].text.contains("<p>"));
}

#[test]
fn google_reviews_keep_rating_reviewer_location_and_reply() {
    let stored = import_checked::<SignalRecord>(&Case {
        format: "reviews",
        good: "google-reviews.json",
        bad: "google-reviews-with-errors.json",
        records: 3,
        valid: 1,
        rejections: &["line 2, field starRating", "line 3, field createTime"],
        secrets: &["last Friday afternoon", "STAR_RATING_UNSPECIFIED"],
    });
    let one_star = &stored[0];
    assert_eq!(
        (one_star.source_system.as_str(), one_star.source_id.as_str()),
        ("google", "AbFvOqk7-review-001")
    );
    assert_eq!(
        one_star.occurred_at.to_rfc3339(),
        "2026-10-14T18:22:05.114+00:00"
    );
    let Signal::Review {
        platform,
        rating,
        text,
        reviewer,
        location,
        reply,
    } = &one_star.signal
    else {
        panic!("not a review: {:?}", one_star.signal);
    };
    assert_eq!((platform.as_str(), *rating), ("google", 1));
    assert!(text.as_deref().unwrap().starts_with("Waited 40 minutes"));
    assert_eq!(reviewer.as_deref(), Some("Karin Weber"));
    assert_eq!(location.as_deref(), Some("4471920381"));
    assert!(reply
        .as_deref()
        .unwrap()
        .starts_with("Dear Karin, we are sorry"));
    let Signal::Review { rating, text, .. } = &stored[1].signal else {
        panic!("not a review");
    };
    assert_eq!(*rating, 5);
    assert!(text
        .as_deref()
        .unwrap()
        .contains(r#"{"braces": [inside] text}"#));
    let Signal::Review {
        rating,
        text,
        reply,
        location,
        ..
    } = &stored[2].signal
    else {
        panic!("not a review");
    };
    assert_eq!((*rating, text, reply), (3, &None, &None));
    assert_eq!(location.as_deref(), Some("5520117744"));
}

#[test]
fn facebook_page_ratings_map_recommendations_to_ratings() {
    let stored = import_checked::<SignalRecord>(&Case {
        format: "reviews",
        good: "facebook-reviews.json",
        bad: "facebook-reviews-with-errors.json",
        records: 3,
        valid: 1,
        rejections: &[
            "line 2, field recommendation_type",
            "line 3, field created_time",
        ],
        secrets: &["meh_unsure", "last Tuesday noon"],
    });
    // Sorted by source id: the 2016 review (a stated rating) comes first.
    let negative = &stored[1];
    assert_eq!(
        (negative.source_system.as_str(), negative.source_id.as_str()),
        ("facebook", "1843920576120931")
    );
    assert_eq!(
        negative.occurred_at.to_rfc3339(),
        "2026-10-12T09:41:27+00:00"
    );
    assert_eq!(
        negative.signal,
        Signal::Review {
            platform: "facebook".to_owned(),
            rating: 1,
            text: Some("Nobody called back about the broken blender.".to_owned()),
            reviewer: Some("Priya Nair".to_owned()),
            location: None,
            reply: None,
        }
    );
    let ratings: Vec<u8> = stored
        .iter()
        .map(|review| match &review.signal {
            Signal::Review { rating, .. } => *rating,
            other => panic!("not a review: {other:?}"),
        })
        .collect();
    // An older export's stated rating wins; negative is 1, positive 5.
    assert_eq!(ratings, [4, 1, 5]);
}

#[test]
fn the_review_csv_is_detected_and_imported() {
    let instance = instance();
    let output = instance.import("acme", "reviews", &fixture("reviews.csv"), &[]);
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(stdout(&output).trim(), "imported 2, updated 0, rejected 0");
    let stored = instance.stored::<SignalRecord>("acme");
    assert_eq!(stored[0].source_id, "fb-88120431");
    assert_eq!(stored[0].source_system, "csv");
    assert_eq!(
        stored[0].signal,
        Signal::Review {
            platform: "facebook".to_owned(),
            rating: 2,
            text: Some(
                "The app crashed twice during checkout.\nSupport answered quickly, though."
                    .to_owned()
            ),
            reviewer: Some("Jonas K.".to_owned()),
            location: Some("Berlin Mitte".to_owned()),
            reply: Some(
                "Hi Jonas, thanks for the feedback - version 5.3 fixes the crash.".to_owned()
            ),
        }
    );
    assert_eq!(stored[1].account.as_deref(), Some("contoso.example"));
    assert_eq!(
        stored[1].occurred_at.to_rfc3339(),
        "2026-10-12T00:00:00+00:00"
    );
}

#[test]
fn survey_answers_are_checked_against_their_scale() {
    let stored = import_checked::<SignalRecord>(&Case {
        format: "surveys",
        good: "surveys.csv",
        bad: "surveys-with-errors.csv",
        records: 4,
        valid: 2,
        rejections: &["line 3, field score", "line 4, field contact_email"],
        secrets: &["ravi.menon at globex"],
    });
    let ids: Vec<&str> = stored.iter().map(|r| r.source_id.as_str()).collect();
    assert_eq!(
        ids,
        [
            "CSAT-48213",
            "CSAT-48220",
            "NPS-2026-10-0001",
            "NPS-2026-10-0002"
        ]
    );
    let detractor = &stored[3];
    assert_eq!(detractor.source_system, "surveytool");
    assert_eq!(detractor.contact.as_deref(), Some("tom@contoso.example"));
    assert_eq!(detractor.account.as_deref(), Some("contoso.example"));
    assert_eq!(
        detractor.signal,
        Signal::Survey {
            survey: SurveyKind::Nps,
            score: 3,
            comment: Some(
                "Too many outages this quarter; we are evaluating alternatives.".to_owned()
            ),
        }
    );
    assert_eq!(
        stored[1].signal,
        Signal::Survey {
            survey: SurveyKind::Csat,
            score: 4,
            comment: None
        }
    );
    assert_eq!(stored[1].contact, None);
}

#[test]
fn accounts_keep_plan_arr_renewal_and_owner() {
    let stored = import_checked::<AccountRecord>(&Case {
        format: "accounts",
        good: "accounts.csv",
        bad: "accounts-with-errors.csv",
        records: 3,
        valid: 1,
        rejections: &["line 3, field arr", "line 4, field renewal_date"],
        secrets: &["185.000,50", "31.12.2027"],
    });
    let contoso = &stored[1];
    assert_eq!(
        (contoso.source_system.as_str(), contoso.source_id.as_str()),
        ("csv", "ACC-1002")
    );
    assert_eq!(contoso.name, "Contoso Ltd");
    assert_eq!(contoso.plan.as_deref(), Some("Enterprise"));
    assert!((contoso.arr.unwrap() - 185_000.5).abs() < 1e-9);
    assert_eq!(contoso.renewal_date.unwrap().to_string(), "2026-12-31");
    assert_eq!(contoso.owner.as_deref(), Some("csm.ben@vendor.example"));
    let fabrikam = &stored[2];
    assert_eq!(fabrikam.name, "Fabrikam, Inc.");
    assert_eq!(
        (fabrikam.renewal_date, fabrikam.owner.as_deref()),
        (None, None)
    );
}

#[test]
fn contacts_keep_their_personal_data_fields() {
    let stored = import_checked::<ContactRecord>(&Case {
        format: "contacts",
        good: "contacts.csv",
        bad: "contacts-with-errors.csv",
        records: 3,
        valid: 1,
        rejections: &["line 3, field phone", "line 4, field date_of_birth"],
        secrets: &["call me maybe", "02/11/1990"],
    });
    let maria = &stored[0];
    assert_eq!(maria.source_id, "CON-501");
    assert_eq!(maria.name, "Maria Lopez");
    assert_eq!(
        maria.email.as_deref(),
        Some("maria.lopez@northwind.example")
    );
    assert_eq!(maria.phone.as_deref(), Some("+34 600 123 456"));
    assert_eq!(maria.date_of_birth.unwrap().to_string(), "1985-04-12");
    assert_eq!(maria.job_title.as_deref(), Some("Head of Finance"));
    assert_eq!(maria.account.as_deref(), Some("ACC-1001"));
    assert_eq!(stored[1].date_of_birth, None);
}

#[test]
fn usage_figures_are_keyed_by_account_metric_and_period() {
    let stored = import_checked::<SignalRecord>(&Case {
        format: "usage",
        good: "usage.csv",
        bad: "usage-with-errors.csv",
        records: 4,
        valid: 2,
        rejections: &["line 3, field value", "line 4, field period_end"],
        secrets: &["one hundred"],
    });
    let october = stored
        .iter()
        .find(|r| r.source_id == "ACC-1001|active_users|2026-10-01")
        .unwrap();
    assert_eq!(october.account.as_deref(), Some("ACC-1001"));
    assert_eq!(
        october.occurred_at.to_rfc3339(),
        "2026-10-01T00:00:00+00:00"
    );
    let Signal::Usage {
        metric,
        value,
        period_start,
        period_end,
    } = &october.signal
    else {
        panic!("not a usage figure");
    };
    assert_eq!(metric, "active_users");
    assert!((value - 176.0).abs() < 1e-9);
    assert_eq!(
        (period_start.to_string(), period_end.to_string()),
        ("2026-10-01".to_owned(), "2026-10-31".to_owned())
    );

    // A column the format does not know refuses the file, naming the column by its position.
    let instance = instance();
    let path = instance.dir.path().join("usage-extra.csv");
    std::fs::write(
        &path,
        "account_id,metric,value,period_start,period_end,seats\nACC-1,active_users,1,2026-10-01,2026-10-31,5\n",
    )
    .unwrap();
    let output = instance.import("acme", "usage", &path, &[]);
    assert!(!output.status.success());
    assert!(
        stderr(&output).contains("rejected: line 1: header column 6 is not a known column"),
        "{}",
        stderr(&output)
    );
}

#[test]
fn export_refuses_formats_it_cannot_write() {
    let instance = instance();
    let output = rapport(
        &[
            "export",
            "--config",
            &instance.config,
            "--tenant",
            "acme",
            "--format",
            "csv",
        ],
        None,
    );
    assert!(!output.status.success());
    assert!(stderr(&output).contains("export writes only the jsonl format"));
}

/// Imports a message CSV into `acme` (refused) and `skip` (`--skip-invalid`); returns the
/// refusal's and the skipping import's stderr and the source ids and message counts stored by
/// the latter.
fn import_short_row_case(name: &str) -> (String, String, Vec<(String, usize)>) {
    let instance = instance();
    let refused = instance.import("acme", "csv", &fixture(name), &[]);
    assert!(!refused.status.success(), "a malformed file was accepted");
    assert!(
        instance.stored::<InteractionRecord>("acme").is_empty(),
        "a refused import wrote something"
    );
    let skipped = instance.import("skip", "csv", &fixture(name), &["--skip-invalid"]);
    assert!(skipped.status.success(), "{}", stderr(&skipped));
    let stored = instance
        .stored::<InteractionRecord>("skip")
        .iter()
        .map(|record| (record.source_id.clone(), record.messages.len()))
        .collect();
    for output in [&refused, &skipped] {
        assert!(
            !stderr(output).contains("hunter2"),
            "a rejected value was echoed: {}",
            stderr(output)
        );
    }
    let summary = format!("{}\n{}", stdout(&skipped).trim(), stderr(&skipped));
    (stderr(&refused), summary, stored)
}

#[test]
fn message_csv_row_with_a_missing_cell_rejects_only_its_own_interaction() {
    let (refused, skipped, stored) = import_short_row_case("messages-with-short-row.csv");
    assert!(
        refused.contains("rejected: line 4: has 6 cells, the header has 7 columns")
            && refused.contains("nothing was imported: 1 invalid record(s)"),
        "{refused}"
    );
    assert!(
        skipped.starts_with("imported 2, updated 0, rejected 1")
            && skipped.contains("rejected: line 4: has 6 cells"),
        "{skipped}"
    );
    // The interaction before the bad row is whole; nothing of the bad row's own is stored.
    assert_eq!(stored, [("T-3001".to_owned(), 2), ("T-3003".to_owned(), 1)]);
}

#[test]
fn message_csv_row_whose_id_cannot_be_read_rejects_both_neighbours() {
    let (refused, skipped, stored) = import_short_row_case("messages-with-unreadable-id.csv");
    assert!(
        refused.contains("rejected: line 4: has 6 cells, the header has 7 columns; its interaction_id cannot be read reliably")
            && refused.contains("rejected: line 5, field interaction_id: may begin with the row at line 4")
            && refused.contains("nothing was imported: 2 invalid record(s)"),
        "{refused}"
    );
    assert!(
        skipped.starts_with("imported 1, updated 0, rejected 2"),
        "{skipped}"
    );
    // Neither interaction the row may belong to is stored without it.
    assert_eq!(stored, [("T-3003".to_owned(), 1)]);
}

/// A one-survey CSV and a one-review CSV that share source id `1001` and, both leaving
/// `source_system` out, the default source system `csv`.
fn colliding_signal_files(dir: &Path) -> (PathBuf, PathBuf) {
    let surveys = dir.join("colliding-surveys.csv");
    std::fs::write(
        &surveys,
        "response_id,survey,score,comment,answered_at,contact_email,account\n\
         1001,nps,9,The reports save us hours,2026-10-01T10:15:00Z,,\n",
    )
    .unwrap();
    let reviews = dir.join("colliding-reviews.csv");
    std::fs::write(
        &reviews,
        "review_id,platform,location,rating,text,reviewer,reply,reviewed_at,account\n\
         1001,google,,2,Checkout keeps crashing,,,2026-10-02T08:00:00Z,\n",
    )
    .unwrap();
    (surveys, reviews)
}

fn committed(output: &Output, expected: &str) {
    assert!(output.status.success(), "{}", stderr(output));
    assert_eq!(stdout(output).trim(), expected);
}

#[test]
fn a_review_with_a_surveys_source_id_is_a_second_signal_not_an_update() {
    let instance = instance();
    let (surveys, reviews) = colliding_signal_files(instance.dir.path());
    committed(
        &instance.import("acme", "surveys", &surveys, &[]),
        "imported 1, updated 0, rejected 0",
    );
    let before = instance.stored::<SignalRecord>("acme");
    assert_eq!(before.len(), 1);
    assert_eq!(
        (
            before[0].source_system.as_str(),
            before[0].source_id.as_str()
        ),
        ("csv", "1001")
    );
    committed(
        &instance.import("acme", "reviews", &reviews, &[]),
        "imported 1, updated 0, rejected 0",
    );
    // Re-importing the reviews updates the review, and only it.
    committed(
        &instance.import("acme", "reviews", &reviews, &[]),
        "imported 0, updated 1, rejected 0",
    );
    let stored = instance.stored::<SignalRecord>("acme");
    assert_eq!(stored.len(), 2, "{stored:?}");
    let kinds: Vec<&str> = stored.iter().map(|s| s.signal.kind_str()).collect();
    assert!(
        kinds.contains(&"survey") && kinds.contains(&"review"),
        "{kinds:?}"
    );
    let survey = stored
        .iter()
        .find(|s| s.signal.kind_str() == "survey")
        .unwrap();
    assert_eq!(survey, &before[0], "the survey was changed");
}

#[test]
fn signal_claims_stored_without_their_kind_are_moved_once_at_open() {
    use rapport::records::migrate::{self, SIGNAL_KIND_KEYS};
    use rapport::store::WriteSet;

    let instance = instance();
    let (surveys, _) = colliding_signal_files(instance.dir.path());
    committed(
        &instance.import("acme", "surveys", &surveys, &[]),
        "imported 1, updated 0, rejected 0",
    );
    let kinded = "csv\u{0}1001\u{0}survey";
    let legacy = "csv\u{0}1001";
    // Puts the survey's claim back as versions before kind-qualified keys stored it, and takes
    // the tenant's mark away.
    let make_legacy = |context: &AppContext| {
        let tenant = context.tenants.find_by_slug("acme").unwrap().unwrap();
        let sources = context.signals.sources(tenant.id).unwrap();
        let id = sources
            .get(kinded)
            .unwrap()
            .expect("claimed under the kind");
        let mut writes = WriteSet::default();
        writes.release(&sources, kinded);
        writes.claim(&sources, legacy, &id).unwrap();
        context.store.commit(writes).unwrap();
        migrate::marks(&context.store, tenant.id)
            .unwrap()
            .remove(&SIGNAL_KIND_KEYS)
            .unwrap();
        (tenant.id, id)
    };
    {
        let context = crate::helpers::open_context(Path::new(&instance.config));
        let acme = context.tenants.find_by_slug("acme").unwrap().unwrap();
        assert!(
            migrate::marks(&context.store, acme.id)
                .unwrap()
                .contains(&SIGNAL_KIND_KEYS)
                .unwrap(),
            "not marked at open"
        );
        let (tenant, id) = make_legacy(&context);
        let sources = context.signals.sources(tenant).unwrap();
        let moved = migrate::signal_source_keys_of(&context.store, tenant).unwrap();
        assert_eq!((moved.claimed, moved.released, moved.conflicts), (1, 1, 0));
        assert_eq!(sources.get(kinded).unwrap(), Some(id));
        assert_eq!(sources.get(legacy).unwrap(), None);
        // A second run (a run cut off before its mark runs again) changes nothing.
        let again = migrate::signal_source_keys_of(&context.store, tenant).unwrap();
        assert_eq!((again.claimed, again.released, again.conflicts), (0, 0, 0));
        assert_eq!(sources.get(kinded).unwrap(), Some(id));
        make_legacy(&context);
    }
    // The import opens the store, which moves the claim first: the survey is updated, not
    // stored twice.
    committed(
        &instance.import("acme", "surveys", &surveys, &[]),
        "imported 0, updated 1, rejected 0",
    );
    assert_eq!(instance.stored::<SignalRecord>("acme").len(), 1);
    let context = crate::helpers::open_context(Path::new(&instance.config));
    let tenant = context.tenants.find_by_slug("acme").unwrap().unwrap();
    let sources = context.signals.sources(tenant.id).unwrap();
    assert!(sources.get(kinded).unwrap().is_some());
    assert_eq!(sources.get(legacy).unwrap(), None);
    // Marked: later opens skip every tenant.
    assert!(migrate::marks(&context.store, tenant.id)
        .unwrap()
        .contains(&SIGNAL_KIND_KEYS)
        .unwrap());
    assert_eq!(migrate::signal_source_keys(&context).unwrap().tenants, 0);
}

#[test]
fn an_open_on_a_full_disk_does_not_fail_on_a_signal_key_mark_it_does_not_need() {
    use rapport::records::migrate::{self, SIGNAL_KIND_KEYS};

    let instance = instance();
    let (surveys, _) = colliding_signal_files(instance.dir.path());
    committed(
        &instance.import("acme", "surveys", &surveys, &[]),
        "imported 1, updated 0, rejected 0",
    );
    let tenant = {
        let context = crate::helpers::open_context(Path::new(&instance.config));
        let tenant = context.tenants.find_by_slug("acme").unwrap().unwrap();
        migrate::marks(&context.store, tenant.id)
            .unwrap()
            .remove(&SIGNAL_KIND_KEYS)
            .unwrap();
        tenant.id
    };
    // A reserve no disk has: every write is refused. The tenant's claims carry their kind
    // already, so the open has nothing to move and opens without its mark.
    let mut config = Config::load(Path::new(&instance.config)).unwrap();
    config.storage.min_free_disk_mib = u64::MAX;
    let context = AppContext::open(config, OpenMode::ExistingOnly).unwrap();
    assert!(!migrate::marks(&context.store, tenant)
        .unwrap()
        .contains(&SIGNAL_KIND_KEYS)
        .unwrap());
    drop(context);
    // With room again, the next open marks it.
    let context = crate::helpers::open_context(Path::new(&instance.config));
    assert!(migrate::marks(&context.store, tenant)
        .unwrap()
        .contains(&SIGNAL_KIND_KEYS)
        .unwrap());
}
