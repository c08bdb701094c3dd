//! One way for every test to say it cannot run here.

use std::io::Write as _;

/// Report that a test cannot run here, and why.
///
/// Prints `SKIPPED: <test>: <why>` to stderr and appends it to the file named
/// by `NATTER_SKIP_LOG` (the test script lists those lines loudly at the end).
/// With `NATTER_REQUIRE_LAB=1` (CI runs as root with every tool installed) a
/// skip is a failure: this panics instead.
///
/// Call it and `return` from the test:
/// ```no_run
/// if let Err(why) = natter_lab::lab_available() {
///     return natter_lab::skip("lab_probe_cone", &why);
/// }
/// ```
pub fn skip(test: &str, why: &str) {
    let line = format!("SKIPPED: {test}: {why}");
    if std::env::var("NATTER_REQUIRE_LAB").is_ok_and(|v| v == "1") {
        panic!("{line} (NATTER_REQUIRE_LAB=1 makes skips failures)");
    }
    eprintln!("{line}");
    if let Some(path) = std::env::var_os("NATTER_SKIP_LOG") {
        if let Ok(mut f) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
        {
            let _ = writeln!(f, "{line}");
        }
    }
}

/// `Some(path)` if `program` is on PATH.
pub fn which(program: &str) -> Option<std::path::PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(program))
        .find(|p| p.is_file())
}
