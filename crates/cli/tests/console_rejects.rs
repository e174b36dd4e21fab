//! The provider page's rejected records in the page's language, on SQLite and on PostgreSQL:
//! each example is a sentence of its reject code naming the record and the field, in Chinese
//! without a word of English on a Chinese page, and in English with the engine's message as a
//! technical detail on an English page.

mod support;

use support::cli::{Db, pg_db, sqlite_db};
use support::console::{Browser, Response, start_on};

/// dc-a's rows the server rejects beyond the fixture's (`bad-1` unknown SKU, `bad-2` SKU of
/// another provider): an unknown beneficiary, an end before the start, another provider's
/// record.
const MORE_BAD_ROWS: &str = "provider,record_id,beneficiary,sku,start,end,quantity,amount\n\
dc-a,bad-3,ent-nobody,a-dom,2025-03-01T00:00:00+08:00,2025-03-01T01:00:00+08:00,1,10.00\n\
dc-a,bad-4,ent-a,a-dom,2025-03-01T02:00:00+08:00,2025-03-01T01:00:00+08:00,1,10.00\n\
dc-b,bad-5,ent-a,b-oth,2025-03-01T00:00:00+08:00,2025-03-01T01:00:00+08:00,1,10.00\n";

/// The page's rejects section.
fn rejects(r: &Response) -> &str {
    let start = r.body.find("id=\"rejects\"").expect("the rejects section");
    let section = &r.body[start..];
    let section = &section[section.find('>').expect("the section's tag") + 1..];
    &section[..section.find("</section>").expect("the section's end")]
}

/// The text a reader sees in `html`, without its tags and without what a plain `<code>` holds
/// (record ids and reject codes: identifiers, not words).
fn words(html: &str) -> String {
    let mut out = String::new();
    let mut rest = html;
    while let Some(at) = rest.find('<') {
        out.push_str(&rest[..at]);
        rest = &rest[at..];
        if rest.starts_with("<code>") {
            let end = rest.find("</code>").expect("a closed code element");
            rest = &rest[end + "</code>".len()..];
        } else {
            rest = &rest[rest.find('>').expect("a closed tag") + 1..];
        }
    }
    out.push_str(rest);
    out
}

fn rejects_in_the_page_language(db: Db) {
    let f = start_on(db, &[]);
    let file = f.server.file("more-bad.csv", MORE_BAD_ROWS);
    let o = f.server.run(
        &f.tokens.dc_a,
        &[
            "usage",
            "import",
            "--file",
            &file,
            "--rejects",
            &format!("{file}.rejects.csv"),
        ],
    );
    assert_eq!(
        o.status.code(),
        Some(3),
        "rejects exit 3: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    let dc_a = Browser::sign_in(&f.http, &f.tokens.dc_a);

    let zh = dc_a.get("/provider?lang=zh");
    assert_eq!(zh.status, 200, "{}", zh.body);
    let section = rejects(&zh);
    for said in [
        "记录 <code>bad-1</code> 的计费项不在目录中。",
        "记录 <code>bad-2</code> 的计费项属于另一家服务商。",
        "记录 <code>bad-3</code> 的企业不在目录中。",
        "记录 <code>bad-4</code> 的结束时间不晚于开始时间。",
        "记录 <code>bad-5</code> 的服务商与所用令牌的服务商不符。",
    ] {
        assert!(section.contains(said), "{said} in {section}");
    }
    // Each reason counts its records in words.
    assert!(section.contains("<b>1 条记录</b>"), "{section}");
    let seen = words(section);
    assert!(
        !seen.chars().any(|c| c.is_ascii_alphabetic()),
        "no English on a Chinese page's rejects: {seen}"
    );
    assert!(
        !zh.body.contains("is not in the registry") && !section.contains("lang=\"en\""),
        "the engine's English message is not on a Chinese page: {section}"
    );

    let en = dc_a.get("/provider?lang=en");
    assert_eq!(en.status, 200, "{}", en.body);
    let section = rejects(&en);
    for said in [
        "Record <code>bad-1</code>: its SKU is not in the registry.",
        "Record <code>bad-2</code>: its SKU belongs to another provider.",
        "Record <code>bad-3</code>: its beneficiary is not in the registry.",
        "Record <code>bad-4</code>: its end is not after its start.",
        "Record <code>bad-5</code>: its provider is not the provider of the token it was sent with.",
    ] {
        assert!(section.contains(said), "{said} in {section}");
    }
    assert!(section.contains("<b>1 record</b>"), "{section}");
    // The engine's own message stays as a technical detail on English pages.
    assert!(
        section.contains("Technical detail:</small> <code class=\"detail\" lang=\"en\">record &#34;bad-1&#34;: sku &#34;no-such-sku&#34; is not in the registry</code>"),
        "{section}"
    );
}

#[test]
fn rejects_in_the_page_language_on_sqlite() {
    rejects_in_the_page_language(sqlite_db().expect("SQLite"));
}

#[test]
fn rejects_in_the_page_language_on_postgres() {
    if let Some(db) = pg_db() {
        rejects_in_the_page_language(db);
    }
}
