//! Local inference with the real default model (fetched into the model cache by
//! `scripts/fetch-model.sh`, which `make test` runs first), model file checks and approval, the
//! build's SIMD kernels, and `rapport eval`.

use std::path::{Path, PathBuf};

use rapport::config::InferenceConfig;
use rapport::inference::engine::{EngineSettings, GenerateRequest};
use rapport::inference::models::{self, ModelDirectories, ModelError, DEFAULT_MODEL_SHA256};
use rapport::inference::{start_local, Backend, LabelSet, TaskKind};

use crate::helpers::{cli_instance, free_port, rapport, stderr, stdout};

fn default_model() -> PathBuf {
    let cache = InferenceConfig::default().models_cache_dir();
    ModelDirectories::new(vec![cache.clone()])
        .find_by_sha256(DEFAULT_MODEL_SHA256)
        .unwrap_or_else(|error| {
            panic!(
                "{error}: run scripts/fetch-model.sh (make test does) to fill {}",
                cache.display()
            )
        })
}

fn settings() -> EngineSettings {
    EngineSettings {
        threads: 2,
        context_size: 2048,
        batch_width: 8,
    }
}

#[test]
fn default_model_loads_and_classifies_unambiguous_messages() {
    let backend = start_local(&default_model(), &[], &settings()).unwrap();
    assert!(backend
        .describe()
        .starts_with("local: gemma-3-270m-q4_k_m.gguf"));
    let texts: Vec<String> = [
        "Thank you so much, this fixed everything, great support!",
        "This is the third time my card was declined, I am furious",
        "Wonderful service, the agent was friendly and solved it in minutes.",
        "Your app lost my order again and nobody answers. Terrible.",
    ]
    .iter()
    .map(|text| (*text).to_owned())
    .collect();
    let labels = LabelSet::sentiment();
    let classified = backend
        .classify(TaskKind::Sentiment, &labels, &texts)
        .unwrap();
    let chosen: Vec<&str> = classified
        .results
        .iter()
        .map(|result| result.label.as_str())
        .collect();
    assert_eq!(chosen, ["positive", "negative", "positive", "negative"]);
    for result in &classified.results {
        let sum: f32 = result.probabilities.iter().sum();
        assert!((sum - 1.0).abs() < 1e-3, "{result:?}");
        assert!(
            result.confidence > 0.4 && result.confidence <= 1.0,
            "{result:?}"
        );
    }
    assert!(classified.tokens_decoded > 0);

    // The same texts one at a time give the same labels: batching changes speed, not answers.
    let mut one_by_one = Vec::new();
    for text in &texts {
        let single = backend
            .classify(TaskKind::Sentiment, &labels, std::slice::from_ref(text))
            .unwrap();
        one_by_one.push(single.results[0].label.clone());
    }
    assert_eq!(one_by_one, chosen);

    // Multi-token labels go through the label trie, and zero-shot topics are calibrated. The
    // 270M base model is weak at zero-shot topics (see README for banking77), so only a clear
    // case is asserted, plus batched and single scoring agreeing.
    let topics = LabelSet::parse(vec![
        "card_declined".to_owned(),
        "refund_request".to_owned(),
        "opening_hours".to_owned(),
    ])
    .unwrap();
    let topic_texts = vec![
        "My card was declined at the shop again".to_owned(),
        "When are you open on Sunday? What are your hours?".to_owned(),
    ];
    let batched = backend
        .classify(TaskKind::Topic, &topics, &topic_texts)
        .unwrap();
    assert_eq!(
        batched.results[1].label, "opening_hours",
        "{:?}",
        batched.results
    );
    for (index, text) in topic_texts.iter().enumerate() {
        let single = backend
            .classify(TaskKind::Topic, &topics, std::slice::from_ref(text))
            .unwrap();
        assert_eq!(single.results[0].label, batched.results[index].label);
        for (left, right) in single.results[0]
            .probabilities
            .iter()
            .zip(&batched.results[index].probabilities)
        {
            assert!((left - right).abs() < 0.05, "{single:?} vs {batched:?}");
        }
    }

    // Free text stops at the token limit.
    let text = backend.generate("The capital of France is", 8).unwrap();
    assert!(!text.is_empty());
    assert!(text.split_whitespace().count() <= 8, "{text:?}");
}

#[test]
fn generation_follows_a_grammar_and_a_bad_grammar_is_an_error_not_an_abort() {
    let backend = start_local(&default_model(), &[], &settings()).unwrap();
    let request = |prompt: &str, grammar: &str| GenerateRequest {
        prompt: prompt.to_owned(),
        max_tokens: 24,
        stop: Vec::new(),
        grammar: Some(grammar.to_owned()),
    };
    // The model's own next token (" Paris") breaks this grammar: the whole vocabulary is then
    // filtered, and the output is one of the two words the grammar allows, and nothing after.
    let output = backend
        .engine()
        .generate(request(
            "The capital of France is",
            r#"root ::= "yes" | "no""#,
        ))
        .unwrap();
    assert!(output.text == "yes" || output.text == "no", "{output:?}");
    assert!(output.grammar_fallbacks >= 1, "{output:?}");

    // A JSON shape: what comes back parses, with the one key the grammar names.
    let grammar = r#"root ::= "{\"budget\": " ( "null" | "\"" [0-9$,. a-z]{1,24} "\"" ) "}""#;
    let text = backend
        .generate_structured(
            "Customer: We can spend about $20,000 a year on this.\nThe budget as JSON: ",
            grammar,
            40,
        )
        .unwrap();
    let value: serde_json::Value = serde_json::from_str(&text).unwrap_or_else(|error| {
        panic!("{error}: {text:?}");
    });
    let budget = &value["budget"];
    assert!(budget.is_null() || budget.is_string(), "{value}");
    assert_eq!(value.as_object().unwrap().len(), 1, "{value}");

    // A grammar llama.cpp cannot parse is this request's error; the engine goes on serving.
    let error = backend
        .engine()
        .generate(request("Hello", r#"root ::= "unterminated"#))
        .unwrap_err();
    assert!(error.to_string().contains("grammar"), "{error}");
    let after = backend.generate("The capital of France is", 4).unwrap();
    assert!(!after.is_empty());
}

#[test]
fn truncated_or_non_gguf_model_files_give_a_clear_error_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let truncated = dir.path().join("cut-short.gguf");
    let bytes = std::fs::read(default_model()).unwrap();
    std::fs::write(&truncated, &bytes[..64 * 1024]).unwrap();
    let error = start_local(&truncated, &[], &settings())
        .unwrap_err()
        .to_string();
    assert!(error.contains("cut-short.gguf"), "{error}");
    assert!(error.contains("truncated"), "{error}");

    let not_gguf = dir.path().join("notes.gguf");
    std::fs::write(&not_gguf, "these are not model weights\n").unwrap();
    let error = start_local(&not_gguf, &[], &settings())
        .unwrap_err()
        .to_string();
    assert!(error.contains("notes.gguf"), "{error}");
    assert!(error.contains("not a GGUF file"), "{error}");
}

/// A GGUF file with a valid header and no tensors: readable, but not the approved model.
fn write_small_gguf(path: &Path) {
    let mut bytes = Vec::new();
    bytes.extend_from_slice(b"GGUF");
    bytes.extend_from_slice(&3_u32.to_le_bytes());
    bytes.extend_from_slice(&0_u64.to_le_bytes());
    bytes.extend_from_slice(&1_u64.to_le_bytes());
    let key = "general.architecture";
    bytes.extend_from_slice(&(key.len() as u64).to_le_bytes());
    bytes.extend_from_slice(key.as_bytes());
    bytes.extend_from_slice(&8_u32.to_le_bytes());
    bytes.extend_from_slice(&5_u64.to_le_bytes());
    bytes.extend_from_slice(b"llama");
    std::fs::write(path, bytes).unwrap();
}

#[test]
fn a_model_whose_sha256_is_not_approved_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("crafted.gguf");
    write_small_gguf(&path);
    let info = models::inspect(&path).unwrap();
    assert_eq!(info.header.architecture, "llama");
    let error = start_local(&path, &[], &settings()).unwrap_err();
    assert!(
        matches!(
            error,
            rapport::inference::InferenceError::Model(ModelError::NotApproved { .. })
        ),
        "{error}"
    );
    let message = error.to_string();
    assert!(
        message.contains("crafted.gguf") && message.contains(&info.sha256),
        "{message}"
    );
    // An approval of another digest does not help; an approval of this one passes the check.
    assert!(models::approve_for_loading(&path, &[DEFAULT_MODEL_SHA256.to_owned()]).is_err());
    let approved = models::approve_for_loading(&path, std::slice::from_ref(&info.sha256)).unwrap();
    assert_eq!(approved.sha256(), info.sha256);
}

#[test]
fn an_approved_model_is_loaded_from_the_file_its_digest_was_read_from() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("approved.gguf");
    write_small_gguf(&path);
    let original = std::fs::read(&path).unwrap();
    let digest = models::inspect(&path).unwrap().sha256;
    let approved = models::approve_for_loading(&path, std::slice::from_ref(&digest)).unwrap();

    // Another file renamed over the approved one after the check: what the engine would open is
    // still the approved file's bytes.
    let crafted = dir.path().join("crafted.gguf");
    write_small_gguf(&crafted);
    let mut bytes = std::fs::read(&crafted).unwrap();
    bytes.extend_from_slice(b"a crafted tail");
    std::fs::write(&crafted, &bytes).unwrap();
    std::fs::rename(&crafted, &path).unwrap();
    assert_ne!(models::sha256_file(&path).unwrap(), digest);
    assert_eq!(std::fs::read(approved.load_path()).unwrap(), original);
    // Replacing it changed the approved file's status (its last link went), so a load that saw
    // this happen is refused as well, to be approved and loaded again.
    assert!(approved.check_unchanged().is_err());

    // A write into the approved file itself is caught after the load.
    let path = dir.path().join("written.gguf");
    write_small_gguf(&path);
    let digest = models::inspect(&path).unwrap().sha256;
    let approved = models::approve_for_loading(&path, std::slice::from_ref(&digest)).unwrap();
    assert!(approved.check_unchanged().is_ok());
    std::fs::OpenOptions::new()
        .append(true)
        .open(&path)
        .and_then(|mut file| std::io::Write::write_all(&mut file, b"x"))
        .unwrap();
    let error = approved.check_unchanged().unwrap_err();
    assert!(matches!(error, ModelError::Changed { .. }), "{error}");
    assert!(error.to_string().contains("written.gguf"), "{error}");
}

#[test]
fn llama_cpp_was_built_with_avx2_kernels() {
    // The test binary lives in <target>/<profile>/deps/; build scripts' outputs in <profile>/build/.
    // scripts/package.sh runs the same check on the build it packages.
    let exe = std::env::current_exe().unwrap();
    let profile_dir = exe.parent().unwrap().parent().unwrap();
    let output = std::process::Command::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/scripts/check-simd-kernels.sh"
    ))
    .arg(profile_dir)
    .output()
    .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn the_kernel_check_wants_every_module_of_a_runtime_kernels_build() {
    // The release packages' build (feature `runtime-kernels`) is not what the tests run, so its
    // rule is checked on a CMake cache laid out as llama-cpp-sys-2 leaves it.
    let profile = tempfile::tempdir().unwrap();
    let out = profile.path().join("build/llama-cpp-sys-2-0123/out");
    std::fs::create_dir_all(out.join("build")).unwrap();
    std::fs::create_dir_all(out.join("backends")).unwrap();
    let check = || {
        std::process::Command::new(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/scripts/check-simd-kernels.sh"
        ))
        .arg(profile.path())
        .output()
        .unwrap()
    };
    // SSE only: refused.
    std::fs::write(
        out.join("build/CMakeCache.txt"),
        "GGML_AVX2:BOOL=OFF\nGGML_NATIVE:BOOL=OFF\n",
    )
    .unwrap();
    let output = check();
    assert!(!output.status.success());
    assert!(
        stderr(&output).contains("without AVX2 kernels"),
        "{}",
        stderr(&output)
    );
    // All variants, but the AVX-512 module is missing: refused, naming it.
    std::fs::write(
        out.join("build/CMakeCache.txt"),
        "GGML_AVX2:BOOL=OFF\nGGML_BACKEND_DL:BOOL=ON\nGGML_CPU_ALL_VARIANTS:BOOL=ON\n",
    )
    .unwrap();
    for level in ["x64", "haswell", "skylakex", "zen4", "sapphirerapids"] {
        std::fs::write(out.join(format!("backends/libggml-cpu-{level}.so")), b"").unwrap();
    }
    let output = check();
    assert!(!output.status.success());
    assert!(
        stderr(&output).contains("the icelake kernel module is missing"),
        "{}",
        stderr(&output)
    );
    std::fs::write(out.join("backends/libggml-cpu-icelake.so"), b"").unwrap();
    let output = check();
    assert!(output.status.success(), "{}", stderr(&output));
    // --cache names the cache it read; scripts/package.sh finds the libraries next to it.
    let output = std::process::Command::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/scripts/check-simd-kernels.sh"
    ))
    .args(["--cache", profile.path().to_str().unwrap()])
    .output()
    .unwrap();
    assert_eq!(
        stdout(&output).trim(),
        out.join("build/CMakeCache.txt").to_str().unwrap()
    );
}

#[test]
fn eval_prints_a_confusion_matrix_and_a_json_last_line() {
    let dir = tempfile::tempdir().unwrap();
    let config = cli_instance(dir.path(), free_port());
    let config = config.to_str().unwrap();
    let output = rapport(
        &[
            "tenant", "create", "--config", config, "--slug", "acme", "--name", "Acme",
        ],
        None,
    );
    assert!(output.status.success(), "{}", stderr(&output));
    let fixture = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/sentiment-eval.csv"
    );
    let output = rapport(
        &[
            "eval",
            "--config",
            config,
            "--tenant",
            "acme",
            "--task",
            "sentiment",
            "--text-column",
            "message",
            "--label-column",
            "expected",
            "--limit",
            "7",
            fixture,
        ],
        None,
    );
    assert!(output.status.success(), "{}", stderr(&output));
    let text = stdout(&output);
    assert!(text.contains("gold\\pred"), "{text}");
    assert!(
        text.contains("backend: local: gemma-3-270m-q4_k_m.gguf"),
        "{text}"
    );
    let last: serde_json::Value = serde_json::from_str(text.lines().last().unwrap()).unwrap();
    assert_eq!(last["items"], 7);
    assert_eq!(last["labels"], 3);
    let accuracy = last["accuracy"].as_f64().unwrap();
    let macro_f1 = last["macro_f1"].as_f64().unwrap();
    assert!(
        (0.0..=1.0).contains(&accuracy) && (0.0..=1.0).contains(&macro_f1),
        "{last}"
    );
    // The messages are unambiguous; a working model gets most of them.
    assert!(accuracy >= 0.7, "{last}");
    assert!(last["items_per_second"].as_f64().unwrap() > 0.0, "{last}");

    let output = rapport(
        &[
            "eval",
            "--config",
            config,
            "--tenant",
            "acme",
            "--task",
            "sentiment",
            "--text-column",
            "nope",
            "--label-column",
            "expected",
            fixture,
        ],
        None,
    );
    assert!(!output.status.success());
    assert!(
        stderr(&output).contains("no column named \"nope\""),
        "{}",
        stderr(&output)
    );
}
