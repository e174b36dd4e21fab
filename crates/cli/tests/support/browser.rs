//! What the browser tests share: the browser they drive, why they cannot run here, and where
//! they keep screenshots.

use std::path::{Path, PathBuf};
use std::process::Command;

use super::root;

/// The browser executable: `CHROMIUM` or Debian's `/usr/bin/chromium`.
pub fn chromium() -> PathBuf {
    std::env::var_os("CHROMIUM").map_or_else(|| PathBuf::from("/usr/bin/chromium"), PathBuf::from)
}

/// Why the browser tests cannot run here, if they cannot.
pub fn missing() -> Option<String> {
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

/// `<target dir>/<path>`: beside the binary's profile directory, where CI keeps what the
/// browser tests leave (screenshots, printed statements).
pub fn kept(path: &str) -> PathBuf {
    let bin = Path::new(env!("CARGO_BIN_EXE_suanli"));
    bin.parent()
        .and_then(Path::parent)
        .map_or_else(|| root().join("target"), Path::to_path_buf)
        .join(path)
}
