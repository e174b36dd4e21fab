//! Fuzzes the CSV usage parser path: any bytes, split into the eight CSV fields, are parsed or
//! rejected by name (`usage::parse_fields`), never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use suanli_domain::usage::{UsageFields, parse_fields};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let mut f: Vec<&str> = text.splitn(8, ',').collect();
    f.resize(8, "");
    let _ = parse_fields(UsageFields {
        provider: f[0],
        record_id: f[1],
        beneficiary: f[2],
        sku: f[3],
        start: f[4],
        end: f[5],
        quantity: f[6],
        amount: f[7],
    });
});
