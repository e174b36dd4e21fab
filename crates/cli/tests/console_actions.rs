//! Safer actions in the console, over plain HTTP: the month picker, four eyes in the page (the
//! creator is not offered approval), confirmations that say what will happen before posting,
//! cancelling or paying, refusals shown next to the field in the page's language with the input
//! kept, codes translated wherever they are shown, and charts with axes, gridlines and tables.

mod support;

use support::console::{Browser, Response, start};

/// The text of the element with `id`, up to its first tag's end.
fn element<'a>(r: &'a Response, id: &str) -> &'a str {
    let at = r
        .body
        .find(&format!("id=\"{id}\""))
        .unwrap_or_else(|| panic!("#{id} in {}", r.body));
    let start = at + r.body[at..].find('>').unwrap() + 1;
    let end = start + r.body[start..].find('<').unwrap();
    &r.body[start..end]
}

// The period is a month picker bounded to the year, and the server still checks it.
#[test]
fn period_is_a_month_picker() {
    let f = start();
    let f1 = Browser::sign_in(&f.http, &f.tokens.finance_1);
    let page = f1.get("/finance");
    assert!(
        page.body.contains(
            "id=\"period\" name=\"period\" type=\"month\" required min=\"2025-01\" max=\"2025-12\""
        ),
        "{}",
        page.body
    );
    for bad in ["2025-3", "2025-13", "2025-00", "25-03", "2025-03-01"] {
        let r = f1.post(
            "/finance/runs",
            &format!("programme=hz-municipal-2025&period={bad}"),
        );
        assert_eq!(r.status, 400, "{bad}: {}", r.body);
        assert_eq!(r.error_field().as_deref(), Some("period"), "{bad}");
    }
}

// The creator of a run is not offered its approval; another finance person is.
#[test]
fn approve_is_not_offered_to_the_creator() {
    let f = start();
    let f1 = Browser::sign_in(&f.http, &f.tokens.finance_1);
    let f2 = Browser::sign_in(&f.http, &f.tokens.finance_2);
    assert_eq!(
        f1.post(
            "/finance/runs",
            "programme=hz-municipal-2025&period=2025-03"
        )
        .status,
        303
    );
    let own = f1.get("/finance/runs/1");
    assert!(!own.body.contains("id=\"approve\""), "{}", own.body);
    assert!(own.body.contains("id=\"four-eyes-note\""));
    assert!(
        own.body.contains("id=\"cancel\""),
        "the creator may still cancel"
    );
    assert_eq!(
        f1.post("/finance/runs/1/approve", "").status,
        403,
        "and the server still refuses"
    );
    let other = f2.get("/finance/runs/1");
    assert!(other.body.contains("id=\"approve\""), "{}", other.body);
    assert!(!other.body.contains("id=\"four-eyes-note\""));
    let _ = element(&other, "run-total");
}
