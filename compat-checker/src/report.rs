//! Renderers for stdout: human (cargo-semver-checks style blocks), JSON and GitHub workflow
//! annotations, plus `--list` and `--explain`. They return strings with ANSI styles; the binary
//! writes them through `anstream`, which strips the styles when colour is off.

use std::fmt::Write as _;

use anstyle::{AnsiColor, Style};

use crate::finding::{Direction, Finding, Report, Severity};
use crate::rules::{self, Rule};

/// Output format of the report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Format {
    /// One block per finding.
    #[default]
    Human,
    /// One JSON document.
    Json,
    /// GitHub Actions workflow commands (`::error file=…,line=…::…`).
    Github,
}

fn paint(style: Style, text: &str) -> String {
    format!("{}{text}{}", style.render(), style.render_reset())
}

fn bold() -> Style {
    Style::new().bold()
}

fn severity_style(s: Severity) -> Style {
    let c = match s {
        Severity::Deny => AnsiColor::Red,
        Severity::Warn => AnsiColor::Yellow,
    };
    Style::new().bold().fg_color(Some(c.into()))
}

/// How a direction reads in the report.
#[must_use]
pub fn direction_text(d: Direction) -> &'static str {
    match d {
        Direction::NewToOld => {
            "new → old (what this code sends must load in the release that froze the machine type)"
        }
        Direction::OldToNew => {
            "old → new (what the release that froze the machine type sends must load here)"
        }
        Direction::Both => "both (new → old and old → new)",
    }
}

fn rule_name(id: &str) -> &'static str {
    rules::lookup(id).map_or("unknown rule", |r| r.name)
}

/// Renders the report in `format`.
#[must_use]
pub fn render(report: &Report, format: Format) -> String {
    match format {
        Format::Human => human(report),
        Format::Json => json(report),
        Format::Github => github(report),
    }
}

/// One block per finding, separated by blank lines.
#[must_use]
pub fn human(report: &Report) -> String {
    let mut out = String::new();
    for (i, f) in report.findings.iter().enumerate() {
        if i > 0 {
            out.push('\n');
        }
        human_finding(&mut out, f);
    }
    out
}

fn human_finding(out: &mut String, f: &Finding) {
    let word = match f.severity {
        Severity::Deny => "failure",
        Severity::Warn => "warning",
    };
    let _ = writeln!(
        out,
        "{} {}: {} {}",
        paint(bold(), "---"),
        paint(severity_style(f.severity), &format!("{word} {}", f.rule)),
        paint(bold(), rule_name(&f.rule)),
        paint(bold(), "---"),
    );
    let _ = writeln!(out);
    let _ = writeln!(out, "{}", paint(bold(), "Description:"));
    if f.section.is_empty() {
        let _ = writeln!(out, "{}", f.message);
    } else {
        let _ = writeln!(out, "In section `{}`: {}", f.section, f.message);
    }
    let _ = writeln!(out, "        ref: cargo compat-check --explain {}", f.rule);
    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "{} {}",
        paint(bold(), "Direction:"),
        direction_text(f.direction)
    );
    let _ = writeln!(
        out,
        "{} {}",
        paint(bold(), "Machine types:"),
        f.machines.join(", ")
    );
    if let Some(l) = &f.location {
        let _ = writeln!(out);
        let _ = writeln!(out, "{}", paint(bold(), "Failed in:"));
        let _ = writeln!(out, "  {}:{}", l.file, l.line);
    }
    let _ = writeln!(out);
    let _ = writeln!(out, "{}", paint(bold(), "Fix:"));
    let _ = writeln!(out, "  {}", f.fix);
}

/// The report as one pretty JSON document.
#[must_use]
pub fn json(report: &Report) -> String {
    let deny = report
        .findings
        .iter()
        .filter(|f| f.severity == Severity::Deny)
        .count();
    let findings: Vec<serde_json::Value> = report
        .findings
        .iter()
        .map(|f| {
            let mut v = serde_json::to_value(f).unwrap_or(serde_json::Value::Null);
            if let Some(o) = v.as_object_mut() {
                o.insert("name".into(), rule_name(&f.rule).into());
                o.insert(
                    "explain".into(),
                    format!("cargo compat-check --explain {}", f.rule).into(),
                );
            }
            v
        })
        .collect();
    let doc = serde_json::json!({
        "tool": crate::eval::TOOL,
        "result": if report.failed() { "incompatible" } else { "compatible" },
        "exit_code": if report.failed() { crate::EXIT_INCOMPATIBLE } else { crate::EXIT_COMPATIBLE },
        "machines_checked": report.machines_checked,
        "devices_checked": report.devices_checked,
        "summary": { "deny": deny, "warn": report.findings.len() - deny },
        "findings": findings,
    });
    let mut s = serde_json::to_string_pretty(&doc).unwrap_or_default();
    s.push('\n');
    s
}

fn escape_data(s: &str) -> String {
    s.replace('%', "%25")
        .replace('\r', "%0D")
        .replace('\n', "%0A")
}

fn escape_property(s: &str) -> String {
    escape_data(s).replace(':', "%3A").replace(',', "%2C")
}

/// GitHub Actions workflow commands, one per finding.
#[must_use]
pub fn github(report: &Report) -> String {
    let mut out = String::new();
    for f in &report.findings {
        let cmd = match f.severity {
            Severity::Deny => "error",
            Severity::Warn => "warning",
        };
        let mut props = Vec::new();
        if let Some(l) = &f.location {
            props.push(format!("file={}", escape_property(&l.file)));
            props.push(format!("line={}", l.line));
        }
        props.push(format!(
            "title={}",
            escape_property(&format!("{}: {}", f.rule, rule_name(&f.rule)))
        ));
        let section = if f.section.is_empty() {
            String::new()
        } else {
            format!("In section `{}`: ", f.section)
        };
        let msg = format!(
            "{section}{}\nDirection: {}\nMachine types: {}\nFix: {}",
            f.message,
            direction_text(f.direction),
            f.machines.join(", "),
            f.fix
        );
        let _ = writeln!(out, "::{cmd} {}::{}", props.join(","), escape_data(&msg));
    }
    out
}

/// The aligned rule table of `--list`, with effective levels.
#[must_use]
pub fn list(level: &dyn Fn(&Rule) -> rules::Level) -> String {
    let w = rules::ALL.iter().map(|r| r.id.len()).max().unwrap_or(4);
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{}",
        paint(bold(), &format!("{:<w$}  {:<5}  SUMMARY", "RULE", "LEVEL"))
    );
    for r in rules::ALL {
        let _ = writeln!(out, "{:<w$}  {:<5}  {}", r.id, level(r).as_str(), r.summary);
    }
    out
}

/// The QEMU-mode part of `--list`: a heading and the aligned table of the `qemu-*` rules, at
/// their fixed levels.
#[must_use]
pub fn list_qemu() -> String {
    let mut out = String::from("\nQEMU mode (`cargo compat-check qemu-dump SRC.json DST.json`):\n");
    let w = rules::qemu::ALL
        .iter()
        .map(|r| r.id.len())
        .max()
        .unwrap_or(4);
    for r in rules::qemu::ALL {
        let _ = writeln!(out, "{:<w$}  {:<5}  {}", r.id, r.level.as_str(), r.summary);
    }
    out
}

/// The `--explain` text of a rule.
#[must_use]
pub fn explain(rule: &Rule) -> String {
    format!(
        "{}: {}\nlevel: {}\n\n{}\n",
        paint(bold(), rule.id),
        rule.name,
        rule.level,
        rule.explanation
    )
}

/// The whole `docs/compat-rules.md` page (one section per rule, the `--explain` text).
#[must_use]
pub fn rules_markdown() -> String {
    let mut out = String::from(
        "# `cargo compat-check` rules\n\n\
         <!-- Generated from compat-checker/src/rules/*.rs; a test keeps them in sync.\n     \
         Regenerate with UPDATE_SNAPSHOTS=1 cargo test -p compat-checker --lib. -->\n\n\
         Each rule has an id, a default level (`deny` fails the check with exit code 1, `warn` is\n\
         reported only) and the text `cargo compat-check --explain <id>` prints. Levels can be\n\
         changed in `[workspace.metadata.compat-check.rules]`. See [compat-check.md](compat-check.md)\n\
         for how the check works and how to run it in CI.\n\n\
         | rule | level | summary |\n|---|---|---|\n",
    );
    for r in rules::ALL {
        let _ = writeln!(
            out,
            "| [`{}`](#{}) | {} | {} |",
            r.id, r.id, r.level, r.summary
        );
    }
    for r in rules::ALL {
        let _ = write!(
            out,
            "\n## {}\n\n**{}** — level `{}`\n\n```text\n{}\n```\n",
            r.id, r.name, r.level, r.explanation
        );
    }
    out.push_str(
        "\n## QEMU mode\n\n\
         `cargo compat-check qemu-dump SRC.json DST.json` compares two QEMU `-dump-vmstate` files\n\
         (SRC from the older release, DST from the newer) in both directions with these rules\n\
         (generated from compat-checker/src/rules/qemu/*.rs; their levels are fixed).\n\n\
         | rule | level | summary |\n|---|---|---|\n",
    );
    for r in rules::qemu::ALL {
        let _ = writeln!(
            out,
            "| [`{}`](#{}) | {} | {} |",
            r.id, r.id, r.level, r.summary
        );
    }
    for r in rules::qemu::ALL {
        let _ = write!(
            out,
            "\n### {}\n\n**{}** — level `{}`\n\n```text\n{}\n```\n",
            r.id, r.name, r.level, r.explanation
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docs_match_explain() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/compat-rules.md");
        let expected = rules_markdown();
        if std::env::var_os("UPDATE_SNAPSHOTS").is_some() {
            std::fs::write(&path, &expected).unwrap();
        }
        let actual = std::fs::read_to_string(&path).unwrap_or_default();
        for r in rules::every() {
            assert!(
                actual.contains(r.explanation),
                "docs/compat-rules.md lacks the --explain text of `{}` (UPDATE_SNAPSHOTS=1 regenerates it)",
                r.id
            );
        }
        assert_eq!(
            actual, expected,
            "docs/compat-rules.md is stale (UPDATE_SNAPSHOTS=1 regenerates it)"
        );
    }

    #[test]
    fn github_escapes() {
        assert_eq!(escape_property("a:b,c%\n"), "a%3Ab%2Cc%25%0A");
    }
}
