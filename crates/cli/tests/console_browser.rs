//! The web console in a real browser (issue 6): prepares the worked example through the CLI,
//! starts `suanli serve` with the console, and runs `node e2e/console.mjs` (playwright-core
//! driving Debian's headless Chromium; each person signs in with login and password): finance
//! A creates a run, finance B approves and posts it, the enterprise sees its balance change, the provider gets HTTP 403 on finance pages.
//! Screenshots of every view at 1280 px and 390 px go to `<target dir>/console-screenshots/`.
//! Skips when Chromium, Node or `e2e/node_modules` is missing, unless
//! `SUANLI_REQUIRE_BROWSER=1` (CI), then it fails.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;

use support::console::{PASSWORD, start};
use support::root;

/// The browser executable: `CHROMIUM` or Debian's `/usr/bin/chromium`.
fn chromium() -> PathBuf {
    std::env::var_os("CHROMIUM").map_or_else(|| PathBuf::from("/usr/bin/chromium"), PathBuf::from)
}

/// Why the browser test cannot run here, if it cannot.
fn missing() -> Option<String> {
    if !chromium().exists() {
        return Some(format!(
            "{} not found (apt-get install chromium)",
            chromium().display()
        ));
    }
    if Command::new("node").arg("--version").output().is_err() {
        return Some("node not found".into());
    }
    if !root().join("e2e/node_modules/playwright-core").exists() {
        return Some("e2e/node_modules is missing (cd e2e && npm ci)".into());
    }
    None
}

/// `<target dir>/console-screenshots`: beside the binary's profile directory.
fn screenshots() -> PathBuf {
    let bin = Path::new(env!("CARGO_BIN_EXE_suanli"));
    bin.parent()
        .and_then(Path::parent)
        .map_or_else(|| root().join("target"), Path::to_path_buf)
        .join("console-screenshots")
}

// The browser scenario, end to end, with screenshots of every view at both widths.
#[test]
fn console_in_headless_chromium() {
    if let Some(why) = missing() {
        let required = std::env::var("SUANLI_REQUIRE_BROWSER").is_ok_and(|v| v == "1");
        assert!(
            !required,
            "browser test required (SUANLI_REQUIRE_BROWSER=1) but {why}"
        );
        eprintln!("skipping the browser test: {why}");
        return;
    }
    let f = start();
    let out = screenshots();
    let _ = std::fs::remove_dir_all(&out);
    let status = Command::new("node")
        .current_dir(root().join("e2e"))
        .args([
            "console.mjs",
            "--url",
            &format!("http://{}", f.http),
            "--out",
        ])
        .arg(&out)
        .env("CHROMIUM", chromium())
        .env("SUANLI_E2E_FINANCE_1", &f.logins.finance_1)
        .env("SUANLI_E2E_FINANCE_2", &f.logins.finance_2)
        .env("SUANLI_E2E_ENTERPRISE", &f.logins.ent_a)
        .env("SUANLI_E2E_PROVIDER", &f.logins.dc_a)
        .env("SUANLI_E2E_AUDITOR", &f.logins.auditor)
        .env("SUANLI_E2E_PASSWORD", PASSWORD)
        .status()
        .expect("node runs");
    assert!(
        status.success(),
        "e2e/console.mjs failed (its output is above)"
    );
    let shots = std::fs::read_dir(&out).map_or(0, |d| d.count());
    assert!(
        shots >= 20,
        "screenshots of every view at both widths: {shots} in {}",
        out.display()
    );
    eprintln!("{shots} screenshots in {}", out.display());
}
