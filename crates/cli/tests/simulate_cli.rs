//! `suanli simulate` end to end: the real binary on files, statements compared byte for byte.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn simulate(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_suanli"))
        .arg("simulate")
        .args(args)
        .current_dir(root())
        .output()
        .expect("suanli runs")
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("suanli-sim-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

fn text(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

#[test]
fn worked_example_matches_the_shipped_statement_byte_for_byte() {
    // Proves the worked example of docs/rules.md end to end through the CLI, and the summary's counts and totals.
    let out = temp_dir("worked").join("statement.csv");
    let o = simulate(&[
        "--registry",
        "examples/worked/registry.toml",
        "--usage",
        "examples/worked/usage.csv",
        "--prior",
        "examples/worked/prior.csv",
        "--period",
        "2025-03",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(
        o.status.success(),
        "exit 0: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert_eq!(
        text(&out),
        text(&root().join("examples/worked/statement.csv"))
    );
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(
        stdout.contains("records read 5, accepted 5, rejected 0, duplicates 0"),
        "{stdout}"
    );
    assert!(
        stdout.contains("subsidy hz-municipal-2025: 600000.00 CNY"),
        "{stdout}"
    );
    assert!(
        stdout.contains("subsidy national-intelligence-2025: 550000.00 CNY"),
        "{stdout}"
    );
    assert_eq!(
        text(&PathBuf::from(format!("{}.rejects.csv", out.display()))),
        "provider,record_id,line,reason\n"
    );
}

#[test]
fn scenarios_produce_their_expected_statements_and_rejects() {
    // Proves each scenario under tests/scenarios: statement byte for byte, rejects by line and code.
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/scenarios");
    let mut names: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    names.sort();
    assert!(names.len() >= 2, "scenarios are present");
    for scenario in names {
        let name = scenario.file_name().unwrap().to_string_lossy().into_owned();
        let args = text(&scenario.join("args"));
        let arg = |key: &str| {
            args.lines()
                .find_map(|l| l.strip_prefix(&format!("{key}=")))
                .unwrap_or_else(|| panic!("{name}: args lacks {key}"))
                .to_owned()
        };
        let out = temp_dir(&name).join("statement.csv");
        let usage = scenario.join("usage.csv");
        let mut cmd = vec![
            "--registry".to_owned(),
            arg("registry"),
            "--usage".to_owned(),
            usage.display().to_string(),
            "--period".to_owned(),
            arg("period"),
            "--out".to_owned(),
            out.display().to_string(),
        ];
        if scenario.join("prior.csv").exists() {
            cmd.extend([
                "--prior".to_owned(),
                scenario.join("prior.csv").display().to_string(),
            ]);
        }
        let o = simulate(&cmd.iter().map(String::as_str).collect::<Vec<_>>());
        assert!(
            o.status.success(),
            "{name}: exit 0: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        assert_eq!(
            text(&out),
            text(&scenario.join("expected.csv")),
            "{name}: statement"
        );
        let rejects = text(&PathBuf::from(format!("{}.rejects.csv", out.display())));
        let got: Vec<String> = rejects
            .lines()
            .skip(1)
            .map(|l| {
                let f: Vec<&str> = l.splitn(4, ',').collect();
                let code = f[3].trim_matches('"').split(':').next().unwrap();
                format!("{},{},{},{code}", f[0], f[1], f[2])
            })
            .collect();
        let expected: Vec<String> = text(&scenario.join("expected.rejects"))
            .lines()
            .map(str::to_owned)
            .collect();
        assert_eq!(got, expected, "{name}: rejects");
    }
}

#[test]
fn invalid_registry_fails_naming_file_and_key_path() {
    // Proves a bad registry exits non-zero with the file, key path and reason.
    let dir = temp_dir("badreg");
    let registry = dir.join("bad.toml");
    let good = text(&root().join("examples/hangzhou-2025.toml"));
    std::fs::write(
        &registry,
        good.replace(r#"ratio = "0.20" }"#, r#"ratio = "2" }"#),
    )
    .unwrap();
    let o = simulate(&[
        "--registry",
        registry.to_str().unwrap(),
        "--usage",
        "examples/worked/usage.csv",
        "--period",
        "2025-03",
        "--out",
        dir.join("s.csv").to_str().unwrap(),
    ]);
    assert!(!o.status.success());
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(
        stderr.contains("bad.toml: programme[0].rates[1].ratio: ratio 2 is outside [0, 1]"),
        "{stderr}"
    );
    assert!(
        !dir.join("s.csv").exists(),
        "nothing is written for a bad registry"
    );
}

#[test]
fn unreadable_inputs_and_bad_arguments_fail() {
    // Proves a missing file, a bad header, a bad prior row and a bad period exit non-zero, naming the problem.
    let dir = temp_dir("badinput");
    let out = dir.join("s.csv");
    let base = [
        "--registry",
        "examples/worked/registry.toml",
        "--out",
        out.to_str().unwrap(),
    ];
    let cases: Vec<(Vec<String>, &str)> = {
        let bad_header = dir.join("h.csv");
        std::fs::write(
            &bad_header,
            "provider,record_id,beneficiary,sku,start,stop,quantity,amount\n",
        )
        .unwrap();
        let bad_prior = dir.join("p.csv");
        std::fs::write(
            &bad_prior,
            "programme,beneficiary,provider,amount\nhz-municipal-2025,ent-d,dc-a,1.001\n",
        )
        .unwrap();
        vec![
            (
                vec![
                    "--usage".into(),
                    "nope.csv".into(),
                    "--period".into(),
                    "2025-03".into(),
                ],
                "cannot read nope.csv",
            ),
            (
                vec![
                    "--usage".into(),
                    bad_header.display().to_string(),
                    "--period".into(),
                    "2025-03".into(),
                ],
                "lacks column(s) end",
            ),
            (
                vec![
                    "--usage".into(),
                    "examples/worked/usage.csv".into(),
                    "--period".into(),
                    "2025-03".into(),
                    "--prior".into(),
                    bad_prior.display().to_string(),
                ],
                "line 2: amount",
            ),
            (
                vec![
                    "--usage".into(),
                    "examples/worked/usage.csv".into(),
                    "--period".into(),
                    "2025-13".into(),
                ],
                "--period",
            ),
        ]
    };
    for (args, expected) in cases {
        let mut all: Vec<&str> = base.to_vec();
        all.extend(args.iter().map(String::as_str));
        let o = simulate(&all);
        assert!(!o.status.success(), "{args:?} fails");
        let stderr = String::from_utf8_lossy(&o.stderr);
        assert!(stderr.contains(expected), "{args:?}: {stderr}");
    }
}

#[test]
fn malformed_rows_are_rejected_not_fatal() {
    // Proves a short row is rejected with its line and the rest settles; bytes in no encoding
    // (0xFF is neither UTF-8 nor GB18030) refuse the whole file instead (tests/encodings.rs).
    let dir = temp_dir("malformed");
    let usage = dir.join("u.csv");
    let mut bytes = b"provider,record_id,beneficiary,sku,start,end,quantity,amount\n".to_vec();
    bytes.extend_from_slice(b"dc-a,short,ent-a\n");
    bytes.extend_from_slice(
        b"dc-b,ok,ent-b,b-oth,2025-03-01T00:00:00+08:00,2025-03-11T00:00:00+08:00,1,10.00\n",
    );
    std::fs::write(&usage, bytes).unwrap();
    let out = dir.join("s.csv");
    let o = simulate(&[
        "--registry",
        "examples/worked/registry.toml",
        "--usage",
        usage.to_str().unwrap(),
        "--period",
        "2025-03",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(
        text(&out).contains("hz-municipal-2025,2025-03,ent-b,dc-b,compute,other,,10.00,0.20,2.00,")
    );
    let rejects = text(&PathBuf::from(format!("{}.rejects.csv", out.display())));
    assert!(
        rejects.contains("dc-a,short,2,invalid_field: row has 3 fields but the header has 8"),
        "{rejects}"
    );

    let mut bytes = std::fs::read(&usage).unwrap();
    bytes.extend_from_slice(
        b"dc-a,bad,ent-\xff,a-dom,2025-03-01T00:00:00+08:00,2025-03-11T00:00:00+08:00,1,1.00\n",
    );
    std::fs::write(&usage, bytes).unwrap();
    let refused = dir.join("refused.csv");
    let o = simulate(&[
        "--registry",
        "examples/worked/registry.toml",
        "--usage",
        usage.to_str().unwrap(),
        "--period",
        "2025-03",
        "--out",
        refused.to_str().unwrap(),
    ]);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success(), "refused whole");
    assert!(
        stderr.contains("u.csv: line 4: not valid GB18030 nor UTF-8"),
        "{stderr}"
    );
    assert!(!refused.exists(), "no statement written");
}
