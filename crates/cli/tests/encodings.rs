//! CSV files as finance staff save them: UTF-8 with or without BOM, GBK/GB18030 from Excel on
//! Chinese Windows, CRLF line ends, a trailing empty line; and a file in no encoding refused
//! whole, naming the encoding and the first bad line, with no statement written.

use std::path::{Path, PathBuf};
use std::process::Output;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The worked example with Chinese beneficiary ids, written as UTF-8 into a fresh directory.
struct Fixture {
    dir: PathBuf,
    usage: String,
    prior: String,
    statement: String,
}

const NAMES: [(&str, &str); 5] = [
    ("ent-a", "杭州甲科技有限公司"),
    ("ent-b", "杭州乙智能有限公司"),
    ("ent-c", "杭州丙数据有限公司"),
    ("ent-d", "杭州丁算力有限公司"),
    ("uni-u", "浙江戊大学"),
];

fn chinese(text: &str) -> String {
    NAMES
        .iter()
        .fold(text.to_owned(), |t, (from, to)| t.replace(from, to))
}

impl Fixture {
    fn new(name: &str) -> Fixture {
        let dir = std::env::temp_dir().join(format!("suanli-enc-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let read = |f: &str| std::fs::read_to_string(root().join("examples/worked").join(f));
        let registry = chinese(&read("registry.toml").unwrap());
        assert!(
            registry.contains("杭州甲科技有限公司"),
            "the registry ids are Chinese"
        );
        std::fs::write(dir.join("registry.toml"), registry).unwrap();
        Fixture {
            usage: chinese(&read("usage.csv").unwrap()),
            prior: chinese(&read("prior.csv").unwrap()),
            statement: chinese(&read("statement.csv").unwrap()),
            dir,
        }
    }

    fn write(&self, name: &str, bytes: &[u8]) -> String {
        let p = self.dir.join(name);
        std::fs::write(&p, bytes).unwrap();
        p.display().to_string()
    }

    /// Runs `simulate` on the given usage and prior files (paths in the fixture's directory).
    fn simulate(&self, usage: &str, prior: &str, out: &str, extra: &[&str]) -> Output {
        std::process::Command::new(env!("CARGO_BIN_EXE_suanli"))
            .current_dir(&self.dir)
            .args([
                "simulate",
                "--registry",
                "registry.toml",
                "--period",
                "2025-03",
            ])
            .args(["--usage", usage, "--prior", prior, "--out", out])
            .args(extra)
            .output()
            .unwrap()
    }

    fn read(&self, name: &str) -> String {
        std::fs::read_to_string(self.dir.join(name)).unwrap()
    }

    /// The statement of the plain UTF-8 files, which has the worked example's lines under the
    /// Chinese ids (in another order: lines sort by beneficiary id).
    fn twin(&self) -> String {
        self.write("usage-utf8.csv", self.usage.as_bytes());
        self.write("prior-utf8.csv", self.prior.as_bytes());
        let o = self.simulate("usage-utf8.csv", "prior-utf8.csv", "utf8.csv", &[]);
        assert!(o.status.success(), "{}", stderr(&o));
        assert!(
            !stderr(&o).contains("GB18030"),
            "UTF-8 is not announced: {}",
            stderr(&o)
        );
        let statement = self.read("utf8.csv");
        let sorted = |t: &str| {
            let mut lines: Vec<String> = t.lines().map(str::to_owned).collect();
            lines.sort();
            lines
        };
        assert_eq!(
            sorted(&statement),
            sorted(&self.statement),
            "the Chinese ids settle as the worked example"
        );
        statement
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn gbk(text: &str) -> Vec<u8> {
    let (bytes, _, unmappable) = encoding_rs::GBK.encode(text);
    assert!(!unmappable, "the fixture is GBK-encodable");
    bytes.into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

// A GBK usage and prior file with Chinese beneficiary ids give the same statement as their
// UTF-8 twins, and the CLI says which encoding it read.
#[test]
fn gbk_files_give_the_same_statement_as_their_utf8_twins() {
    let f = Fixture::new("gbk");
    let twin = f.twin();

    let usage = gbk(&f.usage);
    assert!(
        std::str::from_utf8(&usage).is_err(),
        "the GBK bytes are not UTF-8"
    );
    f.write("usage-gbk.csv", &usage);
    f.write("prior-gbk.csv", &gbk(&f.prior));
    let o = f.simulate("usage-gbk.csv", "prior-gbk.csv", "gbk.csv", &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(f.read("gbk.csv"), twin);
    for file in ["usage-gbk.csv", "prior-gbk.csv"] {
        assert!(
            stderr(&o).contains(&format!("read {file} as GB18030")),
            "{file}: {}",
            stderr(&o)
        );
    }

    for forced in ["gbk", "gb18030"] {
        let out = format!("{forced}-forced.csv");
        let o = f.simulate(
            "usage-gbk.csv",
            "prior-gbk.csv",
            &out,
            &["--encoding", forced],
        );
        assert!(o.status.success(), "--encoding {forced}: {}", stderr(&o));
        assert_eq!(f.read(&out), twin, "--encoding {forced}");
    }
}

// A byte order mark, CRLF line ends and a trailing empty line change nothing.
#[test]
fn bom_crlf_and_a_trailing_empty_line_are_accepted() {
    let f = Fixture::new("bom");
    let twin = f.twin();
    let crlf = |t: &str| format!("\u{feff}{}\r\n", t.replace('\n', "\r\n"));
    f.write("usage.csv", crlf(&f.usage).as_bytes());
    f.write("prior.csv", crlf(&f.prior).as_bytes());
    let o = f.simulate("usage.csv", "prior.csv", "statement.csv", &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(f.read("statement.csv"), twin);
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(
        stdout.contains("records read 5, accepted 5, rejected 0"),
        "{stdout}"
    );

    // The same in GBK, with CRLF (as Excel writes it).
    f.write("usage-gbk.csv", &gbk(&crlf(&f.usage)[3..]));
    let o = f.simulate("usage-gbk.csv", "prior.csv", "gbk.csv", &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(f.read("gbk.csv"), twin);
}

// `--encoding utf-8` on GBK bytes is refused whole, naming the encoding and the first bad line,
// and no statement or rejects file is written; so are bytes that are no GB18030 either.
#[test]
fn a_file_not_in_its_encoding_is_refused_whole() {
    let f = Fixture::new("bad");
    f.write("prior.csv", f.prior.as_bytes());
    f.write("usage-gbk.csv", &gbk(&f.usage));
    let o = f.simulate(
        "usage-gbk.csv",
        "prior.csv",
        "forced.csv",
        &["--encoding", "utf-8"],
    );
    assert!(!o.status.success(), "forced UTF-8 on GBK bytes is refused");
    let err = stderr(&o);
    // Line 1 is the ASCII header; line 2 the first record with a Chinese id.
    assert!(
        err.contains("usage-gbk.csv: line 2: not valid UTF-8"),
        "names the file, line and encoding: {err}"
    );
    assert!(!f.dir.join("forced.csv").exists(), "no statement written");
    assert!(
        !f.dir.join("forced.csv.rejects.csv").exists(),
        "no rejects written"
    );

    // 0xFF starts no sequence in GB18030: bytes in neither encoding, on line 4.
    let mut bytes = gbk(&f.usage);
    let third = bytes
        .iter()
        .enumerate()
        .filter(|(_, b)| **b == b'\n')
        .nth(2)
        .unwrap()
        .0;
    bytes.splice(third + 1..third + 1, [b'd', b'c', 0xFF, 0xFE]);
    f.write("usage-bad.csv", &bytes);
    let o = f.simulate("usage-bad.csv", "prior.csv", "bad.csv", &[]);
    assert!(!o.status.success(), "bytes in no encoding are refused");
    let err = stderr(&o);
    assert!(
        err.contains("usage-bad.csv: line 4: not valid GB18030 nor UTF-8"),
        "{err}"
    );
    assert!(!f.dir.join("bad.csv").exists(), "no statement written");

    // A bad prior file stops the run the same way.
    f.write("usage.csv", f.usage.as_bytes());
    f.write(
        "prior-bad.csv",
        b"programme,beneficiary,provider,amount\n\xFF\n",
    );
    let o = f.simulate("usage.csv", "prior-bad.csv", "prior.out.csv", &[]);
    assert!(
        stderr(&o).contains("prior-bad.csv: line 2: not valid GB18030"),
        "{}",
        stderr(&o)
    );
    assert!(
        !f.dir.join("prior.out.csv").exists(),
        "no statement written"
    );
}

/// Writes the usage CSV text as the first sheet of a workbook the way Excel keeps what people
/// type: ids and times as text, quantity and amount as numbers (`1000000.00` is the number
/// 1000000), and the first record's start as a date cell without a time zone.
fn workbook(path: &Path, csv_text: &str) {
    let mut book = rust_xlsxwriter::Workbook::new();
    let sheet = book.add_worksheet();
    let date = rust_xlsxwriter::Format::new().set_num_format("yyyy-mm-dd hh:mm:ss");
    for (r, line) in csv_text.lines().enumerate() {
        for (c, field) in line.split(',').enumerate() {
            let (row, col) = (r as u32, c as u16);
            let number = r > 0 && c >= 6;
            if number {
                let value: f64 = field.parse().expect("a number");
                sheet.write_number(row, col, value).unwrap();
            } else if r == 1 && c == 4 {
                // 2025-03-01T00:00:00+08:00 typed into Excel in Hangzhou: a bare local time.
                let t = rust_xlsxwriter::ExcelDateTime::from_ymd(2025, 3, 1).unwrap();
                sheet
                    .write_datetime_with_format(row, col, &t, &date)
                    .unwrap();
            } else {
                sheet.write_string(row, col, field).unwrap();
            }
        }
    }
    book.save(path).unwrap();
}

// A usage workbook (.xlsx, first sheet, the same header) with Chinese ids, number cells for
// amounts and a date cell gives the same statement as its CSV twin; a number with more than two
// decimals is rejected, not rounded.
#[test]
fn xlsx_usage_gives_the_same_statement_as_its_csv_twin() {
    let f = Fixture::new("xlsx");
    let twin = f.twin();
    assert!(
        f.usage
            .lines()
            .nth(1)
            .unwrap()
            .contains(",2025-03-01T00:00:00+08:00,"),
        "the first record starts at the date cell's time"
    );
    workbook(&f.dir.join("usage.xlsx"), &f.usage);
    let o = f.simulate("usage.xlsx", "prior-utf8.csv", "xlsx.csv", &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("as a workbook"), "{}", stderr(&o));
    assert_eq!(
        f.read("xlsx.csv"),
        twin,
        "the workbook settles like the CSV"
    );

    // 0.005 CNY cannot be paid: the record is rejected for its precision.
    let header = f.usage.lines().next().unwrap();
    let odd = format!(
        "{header}\ndc-a,odd-1,{},a-dom,2025-03-05T00:00:00+08:00,2025-03-06T00:00:00+08:00,1,10.005\n",
        NAMES[0].1
    );
    workbook(&f.dir.join("odd.xlsx"), &odd);
    let o = f.simulate("odd.xlsx", "prior-utf8.csv", "odd.csv", &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    let rejects = f.read("odd.csv.rejects.csv");
    assert!(rejects.contains("amount_precision"), "{rejects}");
}
