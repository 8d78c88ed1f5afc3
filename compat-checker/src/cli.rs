//! The command line: clap definitions (`cargo compat-check …`) and the driver that prints.
//!
//! Everything that decides something lives in the library; this module parses arguments,
//! calls it, writes the report to stdout and status lines to stderr, and maps the outcome to
//! the exit codes [`compat_checker::EXIT_COMPATIBLE`], [`compat_checker::EXIT_INCOMPATIBLE`] and
//! [`compat_checker::EXIT_TOOL_ERROR`].

use std::ffi::OsString;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use clap::{Args, CommandFactory, FromArgMatches, Parser, Subcommand, ValueEnum};
use compat_checker::report::{self, Format};
use compat_checker::workspace::{Exported, Workspace, EXPORT_LINE};
use compat_checker::{
    rules, shell, Config, Error, Export, FreezeStatus, Report, EXIT_COMPATIBLE, EXIT_INCOMPATIBLE,
    EXIT_TOOL_ERROR,
};

const EXIT_CODES: &str = "\
Exit codes:
  0  compatible: no `deny` finding (warnings may have been printed)
  1  incompatible: at least one `deny` finding (or `freeze` refused to replace a baseline
     the current code is incompatible with)
  2  the tool failed: bad arguments, unreadable or malformed files, cargo failed";

/// `cargo` with its one subcommand.
#[derive(Debug, Parser)]
#[command(name = "cargo", bin_name = "cargo", styles = styles())]
pub enum Cargo {
    /// Prove per machine type that the migration stream format did not change.
    #[command(name = "compat-check", version, after_help = EXIT_CODES)]
    CompatCheck(CompatCheck),
}

/// `cargo compat-check [check|freeze|qemu-dump] …`.
#[derive(Debug, Args)]
#[command(
    long_about = "Proves per machine type that what the code sends and accepts on the QEMU \
                  migration stream did not change, in both directions.\n\nWithout a subcommand it \
                  checks: every baseline in compat/ (one per frozen machine type) is recomputed \
                  from the current code and compared."
)]
pub struct CompatCheck {
    /// What to do (default: check).
    #[command(subcommand)]
    pub command: Option<Command>,
    /// Print the rules (id, level, summary) and exit.
    #[arg(long, conflicts_with = "explain")]
    pub list: bool,
    /// Print the long explanation of a rule and exit.
    #[arg(long, value_name = "RULE")]
    pub explain: Option<String>,
    /// Options shared by all subcommands.
    #[command(flatten)]
    pub opts: Opts,
}

/// Options of every subcommand.
#[derive(Debug, Args)]
pub struct Opts {
    /// Read a schema export document instead of exporting the workspace (repeatable).
    #[arg(long, value_name = "FILE", global = true)]
    pub schema: Vec<PathBuf>,
    /// Directory of the baselines [default: WORKSPACE_ROOT/compat, or ./compat with --schema].
    #[arg(long, value_name = "DIR", global = true)]
    pub baseline_dir: Option<PathBuf>,
    /// Read the baselines as committed at this git revision (branch, tag or hash) instead of
    /// from the working tree; the check only.
    #[arg(long, value_name = "REV", global = true)]
    pub baseline_rev: Option<String>,
    /// Path to Cargo.toml of the workspace.
    #[arg(long, value_name = "PATH", global = true)]
    pub manifest_path: Option<PathBuf>,
    /// Check only these frozen machine types (repeatable).
    #[arg(long, value_name = "MACHINE-TYPE", global = true)]
    pub machine: Vec<String>,
    /// Output format of the report on stdout.
    #[arg(long, value_enum, default_value_t = FormatArg::Human, global = true)]
    pub format: FormatArg,
    /// Coloring [default: CARGO_TERM_COLOR, else auto].
    #[arg(long, value_enum, value_name = "WHEN", global = true)]
    pub color: Option<ColorArg>,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Compare every frozen machine type with the current code (the default).
    Check,
    /// Write compat/MACHINE-TYPE.json: what each machine type sends and accepts now.
    Freeze {
        /// Machine types to freeze, e.g. pc-i440fx-7.2.
        #[arg(value_name = "MACHINE-TYPE", required_unless_present = "all")]
        machines: Vec<String>,
        /// Freeze every machine type of the catalog.
        #[arg(long, conflicts_with = "machines")]
        all: bool,
        /// Replace baselines that differ from the current code (accepts those changes).
        #[arg(long)]
        force: bool,
    },
    /// Compare two QEMU `-dump-vmstate` files (older release first), in both directions.
    QemuDump {
        /// Dump of the older release.
        #[arg(value_name = "SRC.json")]
        src: PathBuf,
        /// Dump of the newer release.
        #[arg(value_name = "DST.json")]
        dst: PathBuf,
        /// Compare only the sections both dumps have (e.g. QEMU's dump against
        /// `export-qemu-dump`, which describes only the workspace's devices).
        #[arg(long)]
        common_only: bool,
    },
    /// Write the workspace's devices in QEMU's `-dump-vmstate` format for one machine type.
    ExportQemuDump {
        /// The machine type, e.g. pc-i440fx-7.2.
        #[arg(value_name = "MACHINE-TYPE")]
        machine: String,
        /// Write here instead of stdout.
        #[arg(long, short, value_name = "FILE")]
        out: Option<PathBuf>,
        /// A QOM type name for a section, `QOM=SECTION` (adds to the crates'
        /// `[package.metadata.compat-check.qom-types]`).
        #[arg(long = "qom-type", value_name = "QOM=SECTION", value_parser = parse_qom_type)]
        qom_types: Vec<(String, String)>,
    },
}

fn parse_qom_type(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((q, sec)) if !q.is_empty() && !sec.is_empty() => Ok((q.to_owned(), sec.to_owned())),
        _ => Err(format!("`{s}` is not QOM=SECTION (e.g. isa-serial=serial)")),
    }
}

/// `--format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum FormatArg {
    /// One block per finding.
    Human,
    /// One JSON document.
    Json,
    /// GitHub Actions annotations.
    Github,
}

/// `--color`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ColorArg {
    /// Colour when writing to a terminal.
    Auto,
    /// Always colour.
    Always,
    /// Never colour.
    Never,
}

fn styles() -> clap::builder::Styles {
    use anstyle::{AnsiColor, Style};
    let green = Style::new().bold().fg_color(Some(AnsiColor::Green.into()));
    let cyan = Style::new().bold().fg_color(Some(AnsiColor::Cyan.into()));
    clap::builder::Styles::styled()
        .header(green)
        .usage(green)
        .literal(cyan)
        .placeholder(Style::new().fg_color(Some(AnsiColor::Cyan.into())))
        .error(Style::new().bold().fg_color(Some(AnsiColor::Red.into())))
}

/// Inserts `compat-check` when the binary runs as `cargo-compat-check …` rather than through
/// cargo (`cargo compat-check …` passes it as the first argument).
pub fn normalize_args(args: impl IntoIterator<Item = OsString>) -> Vec<OsString> {
    let mut v: Vec<OsString> = args.into_iter().collect();
    if v.get(1).is_none_or(|a| a != "compat-check") {
        v.insert(1.min(v.len()), "compat-check".into());
    }
    v
}

/// The colour choice: `--color`, else `CARGO_TERM_COLOR`, else auto (read before parsing, so
/// clap's own messages follow it too).
fn color_choice(args: &[OsString]) -> anstream::ColorChoice {
    let parse = |s: &str| match s {
        "always" => Some(anstream::ColorChoice::Always),
        "never" => Some(anstream::ColorChoice::Never),
        "auto" => Some(anstream::ColorChoice::Auto),
        _ => None,
    };
    let mut choice = std::env::var("CARGO_TERM_COLOR")
        .ok()
        .and_then(|v| parse(&v))
        .unwrap_or(anstream::ColorChoice::Auto);
    let mut it = args.iter().filter_map(|a| a.to_str());
    while let Some(a) = it.next() {
        if a == "--" {
            break;
        }
        let value = match a.strip_prefix("--color") {
            Some("") => it.next(),
            Some(rest) => rest.strip_prefix('='),
            None => None,
        };
        if let Some(c) = value.and_then(parse) {
            choice = c;
        }
    }
    choice
}

/// Writes to stderr (status lines).
fn err(s: &str) {
    let _ = anstream::stderr().write_all(s.as_bytes());
}

/// Writes to stdout (the report).
fn out(s: &str) {
    let mut o = anstream::stdout().lock();
    let _ = o.write_all(s.as_bytes());
    let _ = o.flush();
}

/// Parses `args` (already normalised) and runs; returns the exit code.
pub fn main(args: Vec<OsString>) -> i32 {
    let choice = color_choice(&args);
    choice.write_global();
    let clap_color = match choice {
        anstream::ColorChoice::Always | anstream::ColorChoice::AlwaysAnsi => {
            clap::ColorChoice::Always
        }
        anstream::ColorChoice::Never => clap::ColorChoice::Never,
        anstream::ColorChoice::Auto => clap::ColorChoice::Auto,
    };
    let matches = match Cargo::command()
        .color(clap_color)
        .try_get_matches_from(args)
    {
        Ok(m) => m,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() {
                EXIT_TOOL_ERROR
            } else {
                EXIT_COMPATIBLE
            };
        }
    };
    let Cargo::CompatCheck(cmd) = match Cargo::from_arg_matches(&matches) {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return EXIT_TOOL_ERROR;
        }
    };
    match run(cmd) {
        Ok(code) => code,
        Err(e) => {
            err(&shell::error(&e.to_string()));
            EXIT_TOOL_ERROR
        }
    }
}

fn run(cmd: CompatCheck) -> Result<i32, Error> {
    if cmd.list {
        let config = quiet_config(&cmd.opts);
        let mut s = report::list(&|r| config.level(r));
        s.push_str(&report::list_qemu());
        out(&s);
        return Ok(EXIT_COMPATIBLE);
    }
    if let Some(id) = &cmd.explain {
        if let Some(r) = rules::lookup(id) {
            out(&report::explain(r));
            return Ok(EXIT_COMPATIBLE);
        }
        let ids: Vec<&str> = rules::every().map(|r| r.id).collect();
        return Err(Error::Usage(format!(
            "unknown rule `{id}`; valid rules are:\n  {}",
            ids.join("\n  ")
        )));
    }
    let format = match cmd.opts.format {
        FormatArg::Human => Format::Human,
        FormatArg::Json => Format::Json,
        FormatArg::Github => Format::Github,
    };
    let command = cmd.command.unwrap_or(Command::Check);
    if let (Some(rev), false) = (&cmd.opts.baseline_rev, matches!(command, Command::Check)) {
        return Err(Error::Usage(format!(
            "--baseline-rev {rev} only applies to the check: `freeze` writes the working tree's \
             baselines and `qemu-dump` reads none"
        )));
    }
    match command {
        Command::Check => run_check(&cmd.opts, format),
        Command::Freeze {
            machines,
            all,
            force,
        } => run_freeze(&cmd.opts, machines, all, force),
        Command::QemuDump {
            src,
            dst,
            common_only,
        } => run_qemu(&src, &dst, common_only, format),
        Command::ExportQemuDump {
            machine,
            out,
            qom_types,
        } => run_export_dump(&cmd.opts, &machine, out.as_deref(), qom_types),
    }
}

/// The workspace configuration for `--list`, or defaults when there is no workspace.
fn quiet_config(opts: &Opts) -> Config {
    if !opts.schema.is_empty() {
        return Config::default();
    }
    Workspace::discover(opts.manifest_path.as_deref())
        .map(|w| w.config)
        .unwrap_or_default()
}

/// The workspace to export, or `None` with `--schema`.
fn workspace(opts: &Opts) -> Result<Option<Workspace>, Error> {
    if opts.schema.is_empty() {
        Workspace::discover(opts.manifest_path.as_deref()).map(Some)
    } else {
        Ok(None)
    }
}

/// The current code's export: `--schema` files, or the workspace's crates.
fn load_export(opts: &Opts, ws: Option<&Workspace>) -> Result<Export, Error> {
    let mut export = Export::default();
    let Some(ws) = ws else {
        for f in &opts.schema {
            export.add_file(f)?;
        }
        return Ok(export);
    };
    for p in &ws.packages {
        if p.export_line {
            err(&shell::status(
                "Exporting",
                &format!("{} (schema export)", p.name),
            ));
        }
        match ws.export(p)? {
            Exported::Document(d) => export.add(d)?,
            Exported::NoExportLine => err(&shell::warning(&format!(
                "crate `{}` derives VmState but has no schema export, so its devices are not \
                 checked; add this line to its lib.rs:\n    {EXPORT_LINE}",
                p.name
            ))),
            Exported::NoDevices => {}
        }
    }
    if export.crates.is_empty() {
        return Err(Error::Usage(format!(
            "no crate in the workspace exports its schemas; add `{EXPORT_LINE}` to the lib.rs \
             of each crate with VmState devices, or pass --schema FILE"
        )));
    }
    Ok(export)
}

fn baseline_dir(opts: &Opts, ws: Option<&Workspace>) -> PathBuf {
    match ws {
        Some(w) => w.baseline_dir(opts.baseline_dir.as_deref()),
        None => opts
            .baseline_dir
            .clone()
            .unwrap_or_else(|| PathBuf::from("compat")),
    }
}

/// A path as shown in messages: relative to the workspace root when inside it.
fn show(path: &Path, ws: Option<&Workspace>) -> String {
    ws.and_then(|w| path.strip_prefix(&w.root).ok())
        .unwrap_or(path)
        .display()
        .to_string()
}

fn plural(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

fn run_check(opts: &Opts, format: Format) -> Result<i32, Error> {
    let start = Instant::now();
    let ws = workspace(opts)?;
    let dir = baseline_dir(opts, ws.as_ref());
    // A revision is resolved before the (slow) export, so a bad one fails at once; working-tree
    // baselines are read after it, so a bad `--schema` file is reported first.
    let at_rev = match &opts.baseline_rev {
        Some(rev) => Some(compat_checker::git::load_baselines_at_rev(&dir, rev)?),
        None => None,
    };
    let export = load_export(opts, ws.as_ref())?;
    let (mut baselines, source) = match at_rev {
        Some((b, at)) => (b, at.describe()),
        None => (
            compat_checker::load_baselines(&dir)?,
            show(&dir, ws.as_ref()),
        ),
    };
    if baselines.is_empty() {
        return Err(Error::Usage(format!(
            "no baselines in {}; freeze the machine types to protect first: \
             `cargo compat-check freeze <machine-type>...`",
            show(&dir, ws.as_ref())
        )));
    }
    if !opts.machine.is_empty() {
        for m in &opts.machine {
            if !baselines.iter().any(|b| b.machine() == m) {
                return Err(Error::Usage(format!("`{m}` has no baseline in {source}")));
            }
        }
        baselines.retain(|b| opts.machine.iter().any(|m| m == b.machine()));
    }
    let devices = export.devices().count();
    err(&shell::status(
        "Checking",
        &format!(
            "{} against {} ({})",
            plural(devices, "device", "devices"),
            plural(
                baselines.len(),
                "frozen machine type",
                "frozen machine types"
            ),
            source
        ),
    ));
    let config = ws.as_ref().map(|w| w.config.clone()).unwrap_or_default();
    let report = compat_checker::check_with(&baselines, &export, &config);
    finish(&report, format, start, "Checked")
}

fn finish(report: &Report, format: Format, start: Instant, verb: &str) -> Result<i32, Error> {
    let deny = report
        .findings
        .iter()
        .filter(|f| f.severity == compat_checker::Severity::Deny)
        .count();
    let warn = report.findings.len() - deny;
    out(&report::render(report, format));
    err(&shell::status(
        verb,
        &format!(
            "[{:>8.3}s] {}, {}",
            start.elapsed().as_secs_f64(),
            plural(deny, "failure", "failures"),
            plural(warn, "warning", "warnings")
        ),
    ));
    if report.failed() {
        err(&shell::status_failed(
            "Summary",
            "incompatible: fix the failures above, or run `cargo compat-check --explain <rule>`",
        ));
        Ok(EXIT_INCOMPATIBLE)
    } else {
        err(&shell::status(
            "Summary",
            &format!(
                "compatible with {}",
                plural(
                    report.machines_checked.len(),
                    "frozen machine type",
                    "frozen machine types"
                )
            ),
        ));
        Ok(EXIT_COMPATIBLE)
    }
}

fn run_freeze(opts: &Opts, machines: Vec<String>, all: bool, force: bool) -> Result<i32, Error> {
    let ws = workspace(opts)?;
    let export = load_export(opts, ws.as_ref())?;
    let dir = baseline_dir(opts, ws.as_ref());
    let machines = if all {
        export.machine_names()
    } else {
        machines
    };
    let config = ws.as_ref().map(|w| w.config.clone()).unwrap_or_default();
    let frozen = compat_checker::freeze_with(&export, &machines, &dir, force, &config)?;
    let mut refused = 0;
    for f in &frozen {
        let what = format!(
            "{}: {} → {}",
            f.machine,
            plural(f.devices, "device", "devices"),
            show(&f.path, ws.as_ref())
        );
        match f.status {
            FreezeStatus::Created => err(&shell::status("Freezing", &what)),
            FreezeStatus::Replaced => {
                err(&shell::status("Replacing", &what));
                err(&changes_text(f));
            }
            FreezeStatus::Unchanged => err(&shell::status("Unchanged", &what)),
            FreezeStatus::Reformatted => err(&shell::status(
                "Reformatted",
                &format!("{what} (same layout, current baseline format: no source locations)"),
            )),
            FreezeStatus::Kept => {
                err(&shell::status(
                    "Kept",
                    &format!(
                        "{what} (the current code still sends and loads what it records; it \
                         would record a different layout)"
                    ),
                ));
                err(&changes_text(f));
                err(&shell::note(&kept_next_step(f)));
            }
            FreezeStatus::Refused => {
                refused += 1;
                err(&shell::error(&format!(
                    "{} records a different layout for {}; not replaced",
                    show(&f.path, ws.as_ref()),
                    f.machine
                )));
                err(&changes_text(f));
                err(&shell::note(&refusal_next_step(f)));
            }
        }
    }
    Ok(if refused > 0 {
        EXIT_INCOMPATIBLE
    } else {
        EXIT_COMPATIBLE
    })
}

/// The differences of a refused or replaced baseline, indented under its status line.
fn changes_text(f: &compat_checker::Frozen) -> String {
    let mut s = format!(
        "  what the current code would record for {}:
",
        f.machine
    );
    for c in &f.changes {
        s.push_str(&format!(
            "    {c}
"
        ));
    }
    s
}

/// `freeze <m> --force`, with what it means.
fn force_text(m: &str) -> String {
    format!(
        "`cargo compat-check freeze {m} --force` records the new layout (only for a machine type \
         that was never released: a frozen one must keep what its release sends)"
    )
}

/// What to do about a refused baseline: the check that explains the failures, and `--force`.
fn refusal_next_step(f: &compat_checker::Frozen) -> String {
    let m = &f.machine;
    if f.failures == 0 {
        return format!(
            "the file is not a baseline this tool reads; {}",
            force_text(m)
        );
    }
    format!(
        "`cargo compat-check --machine {m}` reports {} and explains why; fix the code, or {}",
        plural(f.failures, "failure", "failures"),
        force_text(m)
    )
}

/// Why a differing baseline was kept, and `--force`.
fn kept_next_step(f: &compat_checker::Frozen) -> String {
    let m = &f.machine;
    format!(
        "`cargo compat-check --machine {m}` reports no failure (e.g. the new items are never \
         sent for {m}), so the baseline stays as frozen; {}",
        force_text(m)
    )
}

fn read_json(path: &Path) -> Result<serde_json::Value, Error> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| Error::Io(format!("cannot read {}: {e}", path.display())))?;
    serde_json::from_str(&text)
        .map_err(|e| Error::BadInput(format!("{}: not JSON: {e}", path.display())))
}

fn run_qemu(src: &Path, dst: &Path, common_only: bool, format: Format) -> Result<i32, Error> {
    let start = Instant::now();
    let (mut s, mut d) = (read_json(src)?, read_json(dst)?);
    if common_only {
        compat_checker::qemu::keep_common_sections(&mut s, &mut d);
    }
    err(&shell::status(
        "Checking",
        &format!(
            "{} → {} (QEMU -dump-vmstate{})",
            src.display(),
            dst.display(),
            if common_only { ", common sections" } else { "" }
        ),
    ));
    let report = compat_checker::qemu::check_qemu_dumps(&s, &d).map_err(Error::BadInput)?;
    finish(&report, format, start, "Checked")
}

fn run_export_dump(
    opts: &Opts,
    machine: &str,
    out: Option<&Path>,
    extra: Vec<(String, String)>,
) -> Result<i32, Error> {
    let ws = workspace(opts)?;
    let export = load_export(opts, ws.as_ref())?;
    let mut qom = compat_checker::qemu::export::QomTypes::new();
    for p in ws.iter().flat_map(|w| &w.packages) {
        qom.extend(p.qom_types.clone());
    }
    qom.extend(extra);
    let dump = compat_checker::qemu::export::qemu_dump(&export, machine, &qom)?;
    let text = serde_json::to_string_pretty(&dump)
        .map_err(|e| Error::BadInput(format!("cannot write the dump: {e}")))?;
    match out {
        Some(p) => {
            std::fs::write(p, text + "\n")
                .map_err(|e| Error::Io(format!("cannot write {}: {e}", p.display())))?;
            let n = dump.as_object().map_or(0, |o| o.len() - 1);
            err(&shell::status(
                "Exported",
                &format!(
                    "{machine}: {} → {}",
                    plural(n, "section", "sections"),
                    p.display()
                ),
            ));
        }
        None => println!("{text}"),
    }
    Ok(compat_checker::EXIT_COMPATIBLE)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verify_cli() {
        Cargo::command().debug_assert();
    }

    #[test]
    fn inserts_subcommand() {
        let v = normalize_args(["cargo-compat-check".into(), "--list".into()]);
        assert_eq!(v, ["cargo-compat-check", "compat-check", "--list"]);
        let v = normalize_args(["cargo-compat-check".into(), "compat-check".into()]);
        assert_eq!(v, ["cargo-compat-check", "compat-check"]);
        let v = normalize_args(["x".into()]);
        assert_eq!(v, ["x", "compat-check"]);
    }

    #[test]
    fn color_from_args() {
        let a: Vec<OsString> = ["x", "--color", "always"].iter().map(Into::into).collect();
        assert_eq!(color_choice(&a), anstream::ColorChoice::Always);
        let a: Vec<OsString> = ["x", "--color=never"].iter().map(Into::into).collect();
        assert_eq!(color_choice(&a), anstream::ColorChoice::Never);
    }
}
