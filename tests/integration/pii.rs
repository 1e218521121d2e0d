//! `rapport pii scan`: JSON lines in, findings with character offsets out; a tenant's contacts as
//! known names; a malformed line reported by number, without its text, and a non-zero exit.

use serde_json::Value;

use crate::helpers::{cli_instance, free_port, rapport, stderr, stdout};

/// (type, start, end) of each finding in one output line.
fn findings(line: &str) -> Vec<(String, u64, u64)> {
    let value: Value = serde_json::from_str(line).unwrap();
    value["findings"]
        .as_array()
        .unwrap_or_else(|| panic!("no findings in {line}"))
        .iter()
        .map(|finding| {
            let confidence = finding["confidence"].as_f64().unwrap();
            assert!((0.0..=1.0).contains(&confidence));
            (
                finding["type"].as_str().unwrap().to_owned(),
                finding["start"].as_u64().unwrap(),
                finding["end"].as_u64().unwrap(),
            )
        })
        .collect()
}

#[test]
fn pii_scan_reports_types_and_character_offsets_and_names_bad_lines() {
    let dir = tempfile::tempdir().unwrap();
    let config = cli_instance(dir.path(), free_port());
    let config = config.to_str().unwrap();
    let created = rapport(
        &[
            "tenant", "create", "--config", config, "--slug", "acme", "--name", "Acme",
        ],
        None,
    );
    assert!(created.status.success(), "{}", stderr(&created));
    let contacts = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/contacts.csv");
    let imported = rapport(
        &[
            "import", "--config", config, "--tenant", "acme", "--format", "contacts", contacts,
        ],
        None,
    );
    assert!(imported.status.success(), "{}", stderr(&imported));

    let input = concat!(
        "{\"text\": \"Grüße, café: jane@example.com\"}\n",
        "{\"text\": \"Ask tom becker (+44 20 7946 0958) about 4242 4242 4242 4242.\", \"id\": 2}\n",
        "\n",
        "{\"text\": 4242424242424242}\n",
        "{\"text\": \"Wrong: 4242 4242 4242 4241, GB83 WEST 1234 5698 7654 32, 1.2.3.4.5\"}\n",
    );
    let with_tenant = rapport(
        &["pii", "scan", "--config", config, "--tenant", "acme"],
        Some(input),
    );
    assert!(!with_tenant.status.success());
    let errors = stderr(&with_tenant);
    assert!(
        errors.contains("error: line 4: invalid type, expected a string"),
        "{errors}"
    );
    assert!(
        errors.contains("1 of 4 line(s) could not be scanned"),
        "{errors}"
    );
    let output = stdout(&with_tenant);
    assert!(!output.contains("4242") && !errors.contains("4242"));
    let lines: Vec<&str> = output.lines().collect();
    assert_eq!(lines.len(), 4, "{output}");
    assert_eq!(findings(lines[0]), [("email".to_owned(), 13, 29)]);
    assert_eq!(
        findings(lines[1]),
        [
            ("person".to_owned(), 4, 14),
            ("phone".to_owned(), 16, 32),
            ("card".to_owned(), 40, 59)
        ]
    );
    let error: Value = serde_json::from_str(lines[2]).unwrap();
    assert_eq!(error["error"], "line 4: invalid type, expected a string");
    assert_eq!(findings(lines[3]), []);

    // Without --tenant no contact is known (and the database is not opened).
    let without_tenant = rapport(&["pii", "scan", "--config", config], Some(input));
    let output = stdout(&without_tenant);
    let lines: Vec<&str> = output.lines().collect();
    assert_eq!(
        findings(lines[1]),
        [("phone".to_owned(), 16, 32), ("card".to_owned(), 40, 59)]
    );

    let unknown = rapport(
        &["pii", "scan", "--config", config, "--tenant", "nobody"],
        Some(input),
    );
    assert!(!unknown.status.success());
    assert!(stderr(&unknown).contains("no tenant with slug \"nobody\""));
}
