//! The settlement statement (结算单) printed to PDF by a real browser: the worked example's
//! March run is created, approved and posted through the console, then `node
//! e2e/statement.mjs` (playwright-core driving Debian's headless Chromium) opens the run's
//! statement as finance, prints it to A4 and checks the PDF (A4 pages, the total in its text,
//! no header on paper). The PDF, its text and screenshots go to
//! `<target dir>/console-screenshots/statement/`. Skips when Chromium, Node or
//! `e2e/node_modules` is missing, unless `SUANLI_REQUIRE_BROWSER=1`, then it fails.

mod support;

use std::process::Command;

use support::browser::{chromium, kept, missing};
use support::console::{PASSWORD, settle_march, start};
use support::root;

#[test]
fn statement_prints_to_a4_in_chromium() {
    if let Some(why) = missing() {
        let required = std::env::var("SUANLI_REQUIRE_BROWSER").is_ok_and(|v| v == "1");
        assert!(
            !required,
            "browser test required (SUANLI_REQUIRE_BROWSER=1) but {why}"
        );
        eprintln!("skipping the statement print test: {why}");
        return;
    }
    let f = start();
    let (f1, _f2) = settle_march(&f);
    let run = f1.get("/finance/runs/1");
    let at = run.body.find("id=\"run-total\">").expect("the run's total");
    let rest = &run.body[at + "id=\"run-total\">".len()..];
    let total = rest[..rest.find('<').unwrap()].to_owned();
    let out = kept("console-screenshots/statement");
    let _ = std::fs::remove_dir_all(&out);
    let status = Command::new("node")
        .current_dir(root().join("e2e"))
        .args([
            "statement.mjs",
            "--url",
            &format!("http://{}", f.http),
            "--run",
            "1",
            "--total",
            &total,
            "--out",
        ])
        .arg(&out)
        .env("CHROMIUM", chromium())
        .env("SUANLI_E2E_FINANCE_1", &f.logins.finance_1)
        .env("SUANLI_E2E_PASSWORD", PASSWORD)
        .status()
        .expect("node runs");
    assert!(status.success(), "e2e/statement.mjs failed");
    let pdf = std::fs::read(out.join("statement.pdf")).expect("the PDF is kept");
    assert!(pdf.starts_with(b"%PDF-"));
    let text = std::fs::read_to_string(out.join("statement.txt")).expect("its text");
    assert!(text.contains(&total), "{total} in:\n{text}");
}
