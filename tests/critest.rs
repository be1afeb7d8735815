//! The critest conformance run: the real `critest` binary against a real
//! daemon, compared with `tests/critest/expected-failures.txt`.
//!
//! Runs only with `PVECRI_CRITEST=1` (scripts/test.sh sets it after starting
//! the local registry and pushing the fixture images). It fails when a spec
//! fails that is not on the list, and when a listed spec passes: the list
//! only shrinks. Lines starting with `hang: ` name specs that are skipped
//! outright because they would block the suite.

// Helpers outside #[test] functions unwrap too: a panic there fails the
// test, which is what a test wants.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{require_root, Daemon};

const LIST: &str = "tests/critest/expected-failures.txt";
const IMAGES: &str = "tests/critest/test-images.yaml";
/// Daemon config for the run (registry mirrors for critest's image names).
const DAEMON_CONFIG: &str = "tests/critest/pvecri.toml";
/// Ginkgo's own bound on the whole suite; the harness kills it a bit later.
const SUITE_TIMEOUT: Duration = Duration::from_secs(40 * 60);

#[derive(Debug, Default)]
struct Expectations {
    fail: BTreeSet<String>,
    hang: BTreeSet<String>,
}

fn read_expectations(path: &Path) -> Expectations {
    let text =
        std::fs::read_to_string(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    let mut exp = Expectations::default();
    for line in text.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        match line.strip_prefix("hang: ") {
            Some(name) => exp.hang.insert(name.to_owned()),
            None => exp.fail.insert(line.to_owned()),
        };
    }
    exp
}

#[derive(Debug, Default)]
struct Outcome {
    passed: BTreeSet<String>,
    failed: BTreeSet<String>,
    skipped: BTreeSet<String>,
}

/// Reads ginkgo's JUnit report: one `<testcase name=.. status=..>` per spec.
fn read_junit(path: &Path) -> Outcome {
    use quick_xml::events::Event;
    let xml =
        std::fs::read_to_string(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    let mut reader = quick_xml::Reader::from_str(&xml);
    let mut out = Outcome::default();
    loop {
        match reader.read_event().expect("well-formed JUnit XML") {
            Event::Start(e) | Event::Empty(e) if e.name().as_ref() == "testcase" => {
                let mut name = String::new();
                let mut status = String::new();
                for attr in e.attributes().flatten() {
                    let value = attr
                        .normalized_value(quick_xml::XmlVersion::Implicit1_0)
                        .expect("attribute text")
                        .into_owned();
                    match attr.key.as_ref() {
                        "name" => name = value,
                        "status" => status = value,
                        _ => {}
                    }
                }
                let name = name.strip_prefix("[It] ").unwrap_or(&name).to_owned();
                // Suite set-up nodes are not specs; they count only when they fail.
                let suite_node = name.contains("Suite]");
                match status.as_str() {
                    "passed" | "skipped" if suite_node => false,
                    "passed" => out.passed.insert(name),
                    "skipped" | "pending" => out.skipped.insert(name),
                    _ => out.failed.insert(name),
                };
            }
            Event::Eof => break,
            _ => {}
        }
    }
    out
}

/// A ginkgo `-skip` regex matching exactly the named specs.
fn skip_regex(names: &BTreeSet<String>) -> Option<String> {
    if names.is_empty() {
        return None;
    }
    let escaped: Vec<String> = names
        .iter()
        .map(|n| {
            n.chars()
                .flat_map(|c| {
                    let special = "\\.+*?()|[]{}^$".contains(c);
                    special
                        .then_some('\\')
                        .into_iter()
                        .chain(std::iter::once(c))
                })
                .collect()
        })
        .collect();
    Some(escaped.join("|"))
}

#[test]
fn critest_matches_the_expected_failures() {
    if std::env::var_os("PVECRI_CRITEST").is_none() {
        eprintln!("skipping critest: set PVECRI_CRITEST=1 (scripts/test.sh does, after starting the fixture registry)");
        return;
    }
    if !require_root("critest") {
        return;
    }
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let exp = read_expectations(&root.join(LIST));
    // The test's scratch dir: writable in the VM stage too, where the
    // repository is shared read-only.
    let out_dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("critest");
    std::fs::create_dir_all(&out_dir).unwrap();
    let junit = out_dir.join("junit.xml");
    let log_path = out_dir.join("critest.log");
    let _ = std::fs::remove_file(&junit);

    let mut extra =
        std::fs::read_to_string(root.join(DAEMON_CONFIG)).expect("critest daemon config");
    extra.push_str(&std::env::var("PVECRI_CRITEST_CONFIG").unwrap_or_default());
    let daemon = Daemon::start(&extra);
    let endpoint = format!("unix://{}", daemon.socket.display());
    let mut cmd = Command::new(std::env::var("CRITEST").unwrap_or_else(|_| "critest".into()));
    cmd.current_dir(&out_dir)
        .arg(format!("-runtime-endpoint={endpoint}"))
        .arg(format!("-image-endpoint={endpoint}"))
        .arg(format!("-test-images-file={}", root.join(IMAGES).display()))
        .arg(format!("-ginkgo.junit-report={}", junit.display()))
        .arg(format!("-ginkgo.timeout={}s", SUITE_TIMEOUT.as_secs()))
        .arg("-ginkgo.no-color");
    if let Some(skip) = skip_regex(&exp.hang) {
        cmd.arg(format!("-ginkgo.skip={skip}"));
    }
    let log = std::fs::File::create(&log_path).unwrap();
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .expect("run critest (installed by scripts/install-cri-tools.sh)");
    let deadline = Instant::now() + SUITE_TIMEOUT + Duration::from_secs(120);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("critest overran its time bound; see {}", log_path.display());
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    drop(daemon);
    // The VM stage collects the report and the log for the host.
    if let Some(dir) = std::env::var_os("PVECRI_CRITEST_ARTIFACTS") {
        let dir = PathBuf::from(dir);
        std::fs::create_dir_all(&dir).unwrap();
        for file in [&junit, &log_path] {
            if let Some(name) = file.file_name() {
                let _ = std::fs::copy(file, dir.join(name));
            }
        }
    }

    assert!(
        junit.exists(),
        "critest wrote no report; see {}",
        log_path.display()
    );
    let outcome = read_junit(&junit);
    println!(
        "critest: {} passed, {} failed, {} skipped",
        outcome.passed.len(),
        outcome.failed.len(),
        outcome.skipped.len() + exp.hang.len()
    );
    println!(
        "critest: expected-failures list has {} failing and {} hanging specs",
        exp.fail.len(),
        exp.hang.len()
    );

    let unexpected: Vec<&String> = outcome.failed.difference(&exp.fail).collect();
    let fixed: Vec<&String> = exp.fail.intersection(&outcome.passed).collect();
    let stale: Vec<&String> = exp
        .fail
        .iter()
        .filter(|n| {
            !outcome.failed.contains(*n)
                && !outcome.passed.contains(*n)
                && !outcome.skipped.contains(*n)
        })
        .collect();
    for n in &unexpected {
        println!("UNEXPECTED FAILURE: {n}");
    }
    for n in &fixed {
        println!("NOW PASSES, remove from {LIST}: {n}");
    }
    for n in &stale {
        println!("NOT RUN (stale line in {LIST}): {n}");
    }
    assert!(
        unexpected.is_empty() && fixed.is_empty() && stale.is_empty(),
        "critest does not match {LIST}: {} unexpected failures, {} listed specs now pass, {} stale lines (log: {})",
        unexpected.len(),
        fixed.len(),
        stale.len(),
        log_path.display()
    );
}

#[test]
fn skip_regex_escapes_ginkgo_text() {
    let names = BTreeSet::from(["[k8s.io] a (b) c".to_owned()]);
    assert_eq!(skip_regex(&names).unwrap(), "\\[k8s\\.io\\] a \\(b\\) c");
    assert_eq!(skip_regex(&BTreeSet::new()), None);
}
