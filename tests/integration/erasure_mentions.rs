//! Mentions of an erased subject in the parts of other people's messages kept apart from the
//! text — quoted earlier messages ("jo@example.org wrote:") and signatures — are found by an
//! access request and redacted by the erasure, like mentions in the text; and a mention whose
//! rewrite fails leaves the erasure reported as unfinished, with its analyses in place.

use rapport::audit::Actor;
use rapport::context::AppContext;
use rapport::ids::{RecordId, TenantId};
use rapport::interactions::InteractionRecord;
use rapport::privacy::erasure::{erase_subject, ErasureError, SubjectRef};
use rapport::privacy::requests::find::find_subject;
use rapport::privacy::requests::RequestError;
use serde_json::json;

use crate::helpers::{run_queue, use_off_backend, write_interaction, TestApp};

const SUBJECT: &str = "jo.quill@example.org";

/// An e-mail from `author` (an address) whose one message has `text` and, when given, `quoted`
/// text and a `signature`; the subject line is `subject`.
fn email(
    source_id: &str,
    author: &str,
    subject: &str,
    text: &str,
    quoted: Option<&str>,
    signature: Option<&str>,
) -> InteractionRecord {
    let at = (chrono::Utc::now() - chrono::Duration::days(1)).to_rfc3339();
    let mut message = json!({
        "role": "customer", "author_email": author,
        "sent_at": at, "text": text,
    });
    if let Some(quoted) = quoted {
        message["quoted"] = json!(quoted);
    }
    if let Some(signature) = signature {
        message["signature"] = json!(signature);
    }
    serde_json::from_value(json!({
        "source_system": "mail", "source_id": source_id, "channel": "email",
        "account": "acme.example", "subject": subject, "messages": [message]
    }))
    .unwrap()
}

fn message_parts(
    context: &AppContext,
    tenant: TenantId,
    id: RecordId,
) -> (String, Option<String>, Option<String>) {
    let stored = context
        .interactions
        .get(tenant, id)
        .unwrap()
        .expect("the mentioning conversation stays");
    let message = stored.record.messages[0].clone();
    (message.text, message.quoted, message.signature)
}

#[tokio::test]
async fn quoted_text_and_signatures_are_found_and_redacted() {
    let app = TestApp::spawn();
    let tenant = app.create_tenant("acme").id;
    let context = &app.context;
    let own = write_interaction(
        context,
        tenant,
        email(
            "M-1",
            SUBJECT,
            "Where is my order?",
            "My order never arrived.",
            None,
            None,
        ),
    )
    .id;
    // Kim's reply quotes Jo's address, and only there.
    let quoting = write_interaction(
        context,
        tenant,
        email(
            "M-2",
            "kim@example.com",
            "Re: order",
            "Forwarding this to the warehouse team.",
            Some("On Monday, JO.QUILL@example.org wrote:\n> My order never arrived."),
            None,
        ),
    )
    .id;
    // Lee's signature carries Jo's address, and only there.
    let signing = write_interaction(
        context,
        tenant,
        email(
            "M-3",
            "lee@example.com",
            "Invoice",
            "The invoice is attached.",
            None,
            Some("Lee Moss\nCc: jo.quill@example.org\nAcme billing"),
        ),
    )
    .id;
    // Nobody mentions Jo here: it must be neither found nor touched.
    let unrelated = write_interaction(
        context,
        tenant,
        email(
            "M-4",
            "ana@example.com",
            "Hello",
            "A question about shipping.",
            Some("On Monday, kim@example.com wrote:\n> hello"),
            Some("Ana Berg\nana@example.com"),
        ),
    )
    .id;
    let unrelated_before = message_parts(context, tenant, unrelated);

    // The access request lists both conversations as mentioning Jo.
    let found = find_subject(context, tenant, &SubjectRef::Email(SUBJECT.to_owned())).unwrap();
    let mut mentions: Vec<RecordId> = found.mentions.iter().map(|stored| stored.id).collect();
    mentions.sort();
    let mut expected = vec![quoting, signing];
    expected.sort();
    assert_eq!(
        mentions, expected,
        "quoted text and signatures are mentions"
    );

    let report = erase_subject(
        context,
        &Actor::cli(),
        tenant,
        &SubjectRef::Email(SUBJECT.to_owned()),
        None,
    )
    .unwrap();
    assert_eq!(report.interactions, 1);
    assert_eq!(report.mentions_redacted, 2);
    assert!(context.interactions.get(tenant, own).unwrap().is_none());

    // The address is gone from the quoted text and from the signature; the rest stays.
    assert_eq!(
        message_parts(context, tenant, quoting),
        (
            "Forwarding this to the warehouse team.".to_owned(),
            Some("On Monday, [erased] wrote:\n> My order never arrived.".to_owned()),
            None
        )
    );
    assert_eq!(
        message_parts(context, tenant, signing),
        (
            "The invoice is attached.".to_owned(),
            None,
            Some("Lee Moss\nCc: [erased]\nAcme billing".to_owned())
        )
    );
    assert_eq!(message_parts(context, tenant, unrelated), unrelated_before);
    // Nor does search or a later access request find it there any more.
    let index = rapport::search::SearchIndex::new(context.store.clone());
    assert!(index
        .records_with_term(tenant, SUBJECT, 10)
        .unwrap()
        .0
        .is_empty());
    let again = find_subject(context, tenant, &SubjectRef::Email(SUBJECT.to_owned())).unwrap();
    assert!(again.mentions.is_empty() && again.interactions.is_empty());
}

#[tokio::test]
async fn a_mention_that_cannot_be_rewritten_fails_the_erasure_as_unfinished() {
    let app = TestApp::spawn();
    let tenant = app.create_tenant("acme").id;
    use_off_backend(&app.context, tenant);
    let context = &app.context;
    // A six-character address: its mark is longer, and the subject line is already at the
    // 200-character limit, so the redacted record breaks the schema.
    let short = "j@e.io";
    let own = write_interaction(
        context,
        tenant,
        email("M-1", short, "Hello", &format!("I am {short}."), None, None),
    )
    .id;
    let subject_line = format!("Copy {short} {}", "x".repeat(200 - 6 - short.len()));
    assert_eq!(subject_line.chars().count(), 200);
    let mention = write_interaction(
        context,
        tenant,
        email(
            "M-2",
            "kim@example.com",
            &subject_line,
            "See above.",
            None,
            None,
        ),
    )
    .id;
    run_queue(context, tenant);
    let analysed = context.analysis.analyses(tenant, mention).unwrap().len();
    assert!(analysed > 0, "the off backend analyses the mention");

    let error = erase_subject(
        context,
        &Actor::cli(),
        tenant,
        &SubjectRef::Email(short.to_owned()),
        None,
    )
    .unwrap_err();
    let message = error.to_string();
    assert!(
        matches!(error, ErasureError::Rewrite { .. }),
        "not a refusal: {message}"
    );
    assert!(
        message.contains(&mention.to_string()) && message.contains("200 characters"),
        "names the interaction and the cause: {message}"
    );
    assert!(!message.contains(short), "no tenant content: {message}");
    let request = RequestError::from(error).to_string();
    assert!(
        request.contains("did not finish"),
        "the request says the erasure did not finish: {request}"
    );
    // The subject's own conversation was erased before the rewrite failed; the mention and its
    // analyses are as they were.
    assert!(context.interactions.get(tenant, own).unwrap().is_none());
    let kept = context.interactions.get(tenant, mention).unwrap().unwrap();
    assert_eq!(kept.record.subject.as_deref(), Some(subject_line.as_str()));
    assert_eq!(
        context.analysis.analyses(tenant, mention).unwrap().len(),
        analysed,
        "no analysis is removed for a rewrite that failed"
    );
}
