//! `completions` and `man`: shell completions and man pages generated from the CLI's own
//! definition, so they never drift from the flags.

use std::io::Write;
use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;

/// Writes `shell`'s completion script for `cli` to standard output.
pub(crate) fn completions(
    mut cli: clap::Command,
    shell: clap_complete::Shell,
) -> anyhow::Result<ExitCode> {
    let name = cli.get_name().to_owned();
    // Into memory first: clap_complete panics on a closed pipe (`… | head`).
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut cli, name, &mut script);
    match std::io::stdout().lock().write_all(&script) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {}
        other => other.context("standard output")?,
    }
    Ok(ExitCode::SUCCESS)
}

/// Writes `banhammer.1` and a page per subcommand (`banhammer-serve.1`, …) into `dir`.
pub(crate) fn man_pages(cli: clap::Command, dir: &Path) -> anyhow::Result<ExitCode> {
    std::fs::create_dir_all(dir).with_context(|| format!("{}: cannot create", dir.display()))?;
    clap_mangen::generate_to(cli, dir)
        .with_context(|| format!("{}: cannot write the man pages", dir.display()))?;
    Ok(ExitCode::SUCCESS)
}
