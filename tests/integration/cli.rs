//! The command line: its forms, what it prints, and bad input — one clear line, non-zero exit,
//! nothing half-created.

use std::os::unix::fs::PermissionsExt;

use crate::helpers::{cli_instance, free_port, rapport, stderr, stdout, PASSWORD};

#[test]
fn init_creates_everything_with_private_modes_and_refuses_to_overwrite_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("etc").join("rapport.toml");
    let data = dir.path().join("data");
    let output = rapport(
        &[
            "init",
            "--config",
            config.to_str().unwrap(),
            "--data-dir",
            data.to_str().unwrap(),
        ],
        None,
    );
    assert!(output.status.success(), "{}", stderr(&output));
    let printed = stdout(&output);
    for expected in ["master key", "certificate", "configuration", "database"] {
        assert!(
            printed.contains(expected),
            "init did not report its {expected}:\n{printed}"
        );
    }
    let key = dir.path().join("etc").join("master.key");
    assert_eq!(std::fs::read(&key).unwrap().len(), 32);
    assert_eq!(
        std::fs::metadata(&key).unwrap().permissions().mode() & 0o777,
        0o600
    );
    assert_eq!(
        std::fs::metadata(&data).unwrap().permissions().mode() & 0o777,
        0o700
    );
    assert!(std::fs::read_to_string(&config)
        .unwrap()
        .contains("[server.tls]"));

    let before = std::fs::read(&key).unwrap();
    let again = rapport(
        &[
            "init",
            "--config",
            config.to_str().unwrap(),
            "--data-dir",
            data.to_str().unwrap(),
        ],
        None,
    );
    assert!(!again.status.success());
    assert!(
        stderr(&again).contains("refusing to overwrite"),
        "{}",
        stderr(&again)
    );
    assert_eq!(std::fs::read(&key).unwrap(), before);

    let check = rapport(&["check", "--config", config.to_str().unwrap()], None);
    assert!(check.status.success(), "{}", stderr(&check));
    // It names the llama.cpp kernels this binary runs (the test build's are linked in).
    assert!(
        stdout(&check).contains("ok: llama.cpp CPU kernels: linked in"),
        "{}",
        stdout(&check)
    );
}

#[test]
fn an_unwritable_data_directory_leaves_nothing_behind() {
    let dir = tempfile::tempdir().unwrap();
    // A path below a regular file cannot be created, not even by root (CI runs as root, which
    // ignores permission bits).
    let blocker = dir.path().join("not-a-directory");
    std::fs::write(&blocker, b"x").unwrap();
    let config = dir.path().join("etc").join("rapport.toml");
    let output = rapport(
        &[
            "init",
            "--config",
            config.to_str().unwrap(),
            "--data-dir",
            blocker.join("data").to_str().unwrap(),
        ],
        None,
    );
    assert!(!output.status.success());
    let message = stderr(&output);
    assert_eq!(message.lines().count(), 1, "{message}");
    assert!(
        message.contains("cannot create") && message.contains("not-a-directory"),
        "{message}"
    );
    assert!(!dir.path().join("etc").exists(), "init left files behind");
}

#[test]
fn bad_configuration_and_keys_get_one_clear_line_each() {
    let dir = tempfile::tempdir().unwrap();
    let config = cli_instance(dir.path(), free_port());
    let config_str = config.to_str().unwrap();
    let key = dir.path().join("master.key");

    let missing = rapport(&["check", "--config", "/nonexistent/rapport.toml"], None);
    assert!(!missing.status.success());
    assert!(stderr(&missing).contains("/nonexistent/rapport.toml does not exist"));

    let malformed = dir.path().join("bad.toml");
    std::fs::write(
        &malformed,
        std::fs::read_to_string(&config)
            .unwrap()
            .replace("workers = 0", "workers = \"many\""),
    )
    .unwrap();
    let output = rapport(&["serve", "--config", malformed.to_str().unwrap()], None);
    assert!(!output.status.success());
    let message = stderr(&output);
    assert!(
        message.contains("bad.toml") && message.contains("server.workers"),
        "{message}"
    );
    assert_eq!(message.lines().count(), 1, "{message}");

    let good_key = std::fs::read(&key).unwrap();
    std::fs::rename(&key, dir.path().join("moved.key")).unwrap();
    let absent = rapport(&["check", "--config", config_str], None);
    assert!(!absent.status.success());
    assert!(
        stderr(&absent).contains("master.key does not exist"),
        "{}",
        stderr(&absent)
    );
    // Under systemd the key arrives as a credential, and the configured file may be absent.
    let credentials = tempfile::tempdir().unwrap();
    std::fs::write(credentials.path().join("master-key"), &good_key).unwrap();
    let via_credential = std::process::Command::new(env!("CARGO_BIN_EXE_rapport"))
        .args(["check", "--config", config_str])
        .env("CREDENTIALS_DIRECTORY", credentials.path())
        .output()
        .unwrap();
    assert!(
        via_credential.status.success(),
        "{}",
        stderr(&via_credential)
    );
    std::fs::rename(dir.path().join("moved.key"), &key).unwrap();
    std::fs::write(&key, &good_key[..31]).unwrap();
    let short = rapport(&["check", "--config", config_str], None);
    assert!(!short.status.success());
    assert!(
        stderr(&short).contains("exactly 32 bytes"),
        "{}",
        stderr(&short)
    );

    // A different (valid) key: serve and check refuse with a clear message.
    std::fs::write(&key, [7u8; 32]).unwrap();
    for command in ["check", "serve"] {
        let output = rapport(&[command, "--config", config_str], None);
        assert!(!output.status.success(), "{command} accepted a wrong key");
        assert!(
            stderr(&output).contains("does not match the database"),
            "{command}: {}",
            stderr(&output)
        );
    }
    std::fs::write(&key, &good_key).unwrap();
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let open = rapport(&["check", "--config", config_str], None);
    assert!(stderr(&open).contains("chmod 600"), "{}", stderr(&open));
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    assert!(rapport(&["check", "--config", config_str], None)
        .status
        .success());
}

#[test]
fn users_and_tenants_from_the_command_line_with_clear_refusals() {
    let dir = tempfile::tempdir().unwrap();
    let config = cli_instance(dir.path(), free_port());
    let config = config.to_str().unwrap();
    let add = |email: &str, role: &str, tenant: Option<&str>, password: &str| {
        let mut args = vec![
            "user",
            "add",
            "--config",
            config,
            "--email",
            email,
            "--role",
            role,
            "--password-stdin",
        ];
        if let Some(slug) = tenant {
            args.extend(["--tenant", slug]);
        }
        rapport(&args, Some(&format!("{password}\n")))
    };
    let created = rapport(
        &[
            "tenant", "create", "--config", config, "--slug", "acme", "--name", "Acme Ltd",
        ],
        None,
    );
    assert!(created.status.success());
    let duplicate = rapport(
        &[
            "tenant", "create", "--config", config, "--slug", "acme", "--name", "Other",
        ],
        None,
    );
    assert!(stderr(&duplicate).contains("already exists"));
    let bad_slug = rapport(
        &[
            "tenant", "create", "--config", config, "--slug", "Bad Slug", "--name", "X",
        ],
        None,
    );
    assert!(stderr(&bad_slug).contains("is invalid"));

    assert!(add("op@example.com", "operator", None, PASSWORD)
        .status
        .success());
    let unknown_role = add("x@example.com", "boss", Some("acme"), PASSWORD);
    assert!(!unknown_role.status.success());
    assert!(stderr(&unknown_role).contains("unknown role \"boss\""));
    assert!(
        stderr(&add("x@example.com", "operator", Some("acme"), PASSWORD))
            .contains("operator role has no tenant")
    );
    assert!(stderr(&add("x@example.com", "analyst", None, PASSWORD)).contains("--tenant"));
    assert!(
        stderr(&add("x@example.com", "analyst", Some("nope"), PASSWORD))
            .contains("no tenant with slug")
    );
    assert!(stderr(&add("x@example.com", "analyst", Some("acme"), "short")).contains("12 to 1024"));
    assert!(
        stderr(&add("not-an-email", "analyst", Some("acme"), PASSWORD))
            .contains("not a valid e-mail")
    );
    assert!(
        stderr(&add("OP@example.com", "analyst", Some("acme"), PASSWORD))
            .contains("already exists")
    );
    assert!(add("ana@acme.example", "analyst", Some("acme"), PASSWORD)
        .status
        .success());

    let list = stdout(&rapport(&["user", "list", "--config", config], None));
    assert!(
        list.contains("op@example.com") && list.contains("ana@acme.example"),
        "{list}"
    );
    let only_acme = stdout(&rapport(
        &["user", "list", "--config", config, "--tenant", "acme"],
        None,
    ));
    assert!(!only_acme.contains("op@example.com"));
    let tenants = stdout(&rapport(&["tenant", "list", "--config", config], None));
    assert!(tenants.contains("acme") && tenants.contains("Acme Ltd"));

    let passwd = rapport(
        &[
            "user",
            "passwd",
            "--config",
            config,
            "--email",
            "ana@acme.example",
            "--password-stdin",
        ],
        Some("another long password\n"),
    );
    assert!(passwd.status.success(), "{}", stderr(&passwd));
    let disable = rapport(
        &[
            "user",
            "disable",
            "--config",
            config,
            "--email",
            "ana@acme.example",
        ],
        None,
    );
    assert!(disable.status.success());
    assert!(stdout(&rapport(&["user", "list", "--config", config], None)).contains("disabled"));
    let enable = rapport(
        &[
            "user",
            "enable",
            "--config",
            config,
            "--email",
            "ana@acme.example",
        ],
        None,
    );
    assert!(enable.status.success());
    let reset = rapport(
        &[
            "user",
            "reset-totp",
            "--config",
            config,
            "--email",
            "ana@acme.example",
        ],
        None,
    );
    assert!(reset.status.success(), "{}", stderr(&reset));
    assert!(!stdout(&rapport(
        &["user", "list", "--config", config, "--tenant", "acme"],
        None
    ))
    .contains("disabled"));
    let nobody = rapport(
        &[
            "user",
            "disable",
            "--config",
            config,
            "--email",
            "nobody@acme.example",
        ],
        None,
    );
    assert!(stderr(&nobody).contains("no user with that e-mail"));
}

#[test]
fn a_port_in_use_and_a_running_server_are_reported_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let config = cli_instance(dir.path(), taken.local_addr().unwrap().port());
    let output = rapport(&["serve", "--config", config.to_str().unwrap()], None);
    assert!(!output.status.success());
    assert!(
        stderr(&output).contains("cannot listen on 127.0.0.1:"),
        "{}",
        stderr(&output)
    );
}

#[test]
fn help_explains_every_command_and_option() {
    let top = stdout(&rapport(&["--help"], None));
    for command in ["init", "serve", "check", "tenant", "user", "audit"] {
        assert!(top.contains(command), "{command} missing from --help");
    }
    let init = stdout(&rapport(&["init", "--help"], None));
    for option in [
        "--config",
        "--data-dir",
        "--listen",
        "--no-tls",
        "RAPPORT_CONFIG",
        "/etc/rapport/rapport.toml",
    ] {
        assert!(init.contains(option), "{option} missing from init --help");
    }
    let add = stdout(&rapport(&["user", "add", "--help"], None));
    for option in [
        "--email",
        "--role",
        "--tenant",
        "--password-stdin",
        "--temporary",
    ] {
        assert!(
            add.contains(option),
            "{option} missing from user add --help"
        );
    }
}
