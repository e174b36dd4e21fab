//! Fuzzes the registry loader: any text loads or fails with errors (`Registry::from_toml`),
//! never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use suanli_domain::Registry;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = Registry::from_toml("fuzz.toml", text);
    }
});
