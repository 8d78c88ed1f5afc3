//! Cargo-style status lines for stderr: a bold, right-aligned 12-column verb (`Checking`,
//! `Checked`, `Freezing`), and `error:` / `warning:` / `note:` labels. Functions return styled
//! strings; the binary writes them through `anstream`, which honours the colour choice.

use anstyle::{AnsiColor, Style};

fn styled(style: Style, text: &str) -> String {
    format!("{}{text}{}", style.render(), style.render_reset())
}

fn colour(c: AnsiColor) -> Style {
    Style::new().bold().fg_color(Some(c.into()))
}

/// `    Checking message` with a bold green verb.
#[must_use]
pub fn status(verb: &str, message: &str) -> String {
    status_with(colour(AnsiColor::Green), verb, message)
}

/// Like [`status`] with a bold red verb (for a failing summary).
#[must_use]
pub fn status_failed(verb: &str, message: &str) -> String {
    status_with(colour(AnsiColor::Red), verb, message)
}

fn status_with(style: Style, verb: &str, message: &str) -> String {
    format!("{}{message}\n", styled(style, &format!("{verb:>12} ")))
}

/// `error: message` (bold red label).
#[must_use]
pub fn error(message: &str) -> String {
    format!("{} {message}\n", styled(colour(AnsiColor::Red), "error:"))
}

/// `warning: message` (bold yellow label).
#[must_use]
pub fn warning(message: &str) -> String {
    format!(
        "{} {message}\n",
        styled(colour(AnsiColor::Yellow), "warning:")
    )
}

/// `note: message` (bold cyan label).
#[must_use]
pub fn note(message: &str) -> String {
    format!("{} {message}\n", styled(colour(AnsiColor::Cyan), "note:"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn right_aligned_verb() {
        let s = anstream::adapter::strip_str(&status("Checking", "x")).to_string();
        assert_eq!(s, "    Checking x\n");
        assert!(status("Checked", "x").contains("\x1b["));
    }
}
