//! The web console in a real browser: prepares the worked example through the CLI,
//! starts `suanli serve` with the console, and runs `node e2e/console.mjs` (playwright-core
//! driving Debian's headless Chromium; each person signs in with login and password): finance
//! A creates a run, finance B approves and posts it, the enterprise sees its balance change, the
//! provider gets HTTP 403 on finance pages; then the figures the enterprise and provider pages
//! showed are compared with the API's (`suanli balance`), figure by figure.
//! Screenshots of every view at 1280 px and 390 px go to `<target dir>/console-screenshots/`.
//! Skips when Chromium, Node or `e2e/node_modules` is missing, unless
//! `SUANLI_REQUIRE_BROWSER=1` (CI), then it fails.

mod support;

use std::process::Command;

use support::browser::{chromium, kept, missing};
use support::console::{PASSWORD, start};
use support::root;

// Each role's path through the console, end to end, with screenshots of every view at both widths.
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
    let out = kept("console-screenshots");
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

    // What the pages showed is what the API says, figure by figure.
    let shown: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(out.join("figures.json")).expect("figures.json was written"),
    )
    .expect("figures.json is JSON");
    let api = f.server.ok(
        &f.tokens.finance_1,
        &["balance", "--beneficiary", "ent-a", "--year", "2025"],
    );
    let cards = shown["enterprise"].as_array().expect("balance cards");
    assert!(!cards.is_empty(), "the enterprise page shows balances");
    for card in cards {
        let programme = card["programme"].as_str().unwrap();
        let figures: Vec<String> = card["figures"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| fen_text(v.as_str().unwrap()))
            .collect();
        let line = api_line(&api, programme);
        // The card: cap, settled, pending, remaining, entitled, in the CLI's words.
        for (i, name) in ["cap", "settled", "pending", "remaining", "entitled"]
            .iter()
            .enumerate()
        {
            let said = api_figure(line, name);
            assert_eq!(
                figures[i], said,
                "ent-a's {name} in {programme}: the page shows {}, the API says {said} ({line})",
                figures[i]
            );
        }
    }
    let api = f
        .server
        .ok(&f.tokens.finance_1, &["balance", "--payee", "dc-a"]);
    let payables = shown["provider"].as_array().expect("payables");
    assert!(!payables.is_empty(), "the provider page shows payables");
    for p in payables {
        let programme = p["programme"].as_str().unwrap();
        let figures: Vec<String> = p["figures"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| fen_text(v.as_str().unwrap()))
            .collect();
        let line = api_line(&api, programme);
        // Posted, paid and outstanding: the CLI's settled, paid out and outstanding.
        for (i, name) in ["settled", "paid out", "outstanding"].iter().enumerate() {
            let said = api_figure(line, name);
            assert_eq!(
                figures[i], said,
                "dc-a's {name} in {programme}: the page shows {}, the API says {said} ({line})",
                figures[i]
            );
        }
    }
}

/// A page's amount (`¥1,234.56`, `—` for none) as the CLI writes it (`1234.56`, `none`).
fn fen_text(shown: &str) -> String {
    let plain: String = shown
        .chars()
        .filter(|c| c.is_ascii_digit() || *c == '.' || *c == '-')
        .collect();
    if plain.is_empty() {
        "none".to_owned()
    } else {
        plain
    }
}

/// The CLI's line for `programme`: `P: name VALUE[ CNY], …`.
fn api_line<'a>(output: &'a str, programme: &str) -> &'a str {
    output
        .lines()
        .find(|l| l.trim_start().starts_with(&format!("{programme}:")))
        .unwrap_or_else(|| panic!("the API names {programme}: {output}"))
}

/// The value after `name ` in a CLI balance line, as text (`1234.56`; `none` for no cap, which
/// the CLI also writes as an `unlimited` remainder).
fn api_figure(line: &str, name: &str) -> String {
    let after = line
        .split(&format!(" {name} "))
        .nth(1)
        .unwrap_or_else(|| panic!("{name} in {line}"));
    match after.split([',', ' ']).next().unwrap_or_default() {
        "unlimited" => "none".to_owned(),
        value => value.to_owned(),
    }
}
