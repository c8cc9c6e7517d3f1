//! The commands of the `scimd` binary, apart from parsing its arguments (`main.rs`). Not part
//! of the library: they print for a person at a console, or run the daemon.

pub mod access;
pub mod console;
pub mod daemon;
pub mod man;

/// `text` with its control characters escaped (`\n`, `\u{1b}`): text from a file or from the
/// daemon must not start a forged log line, nor drive an admin's terminal.
pub(crate) fn escape_controls(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn control_characters_are_escaped_and_the_rest_kept() {
        assert_eq!(
            super::escape_controls("tenants.\"a\nERROR x\": é; b\tc"),
            "tenants.\"a\\nERROR x\": é; b\\tc"
        );
    }
}
