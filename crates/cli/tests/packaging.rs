//! What a package ships, checked as an installer would use it: the systemd units pass
//! `systemd-analyze verify` (with the man pages they name installed), and the completion
//! scripts and man pages come from the CLI's own definition.

use std::path::Path;
use std::process::Command;

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_banhammer"))
}

/// The subcommands `banhammer --help` lists.
fn subcommands() -> Vec<String> {
    let out = bin().arg("--help").output().unwrap();
    let help = String::from_utf8(out.stdout).unwrap();
    let list = help.split("Commands:").nth(1).unwrap();
    list.lines()
        .skip(1)
        .take_while(|l| !l.trim().is_empty())
        .filter_map(|l| l.split_whitespace().next())
        .filter(|c| *c != "help")
        .map(str::to_owned)
        .collect()
}

fn write_man_pages(dir: &Path) {
    let out = bin().arg("man").arg(dir).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn every_subcommand_has_a_man_page() {
    let dir = tempfile::tempdir().unwrap();
    let man1 = dir.path().join("man1");
    write_man_pages(&man1);
    let commands = subcommands();
    assert!(commands.len() >= 8, "{commands:?}");
    for page in std::iter::once("banhammer".to_owned())
        .chain(commands.iter().map(|c| format!("banhammer-{c}")))
    {
        let text = std::fs::read_to_string(man1.join(format!("{page}.1")))
            .unwrap_or_else(|e| panic!("{page}.1: {e}"));
        assert!(text.contains(".TH"), "{page}.1 is no man page");
    }
    let serve = std::fs::read_to_string(man1.join("banhammer-serve.1")).unwrap();
    assert!(
        serve.contains("\\-\\-listen"),
        "serve's page lists its flags"
    );
}

#[test]
fn completion_scripts_name_every_subcommand_and_bash_parses_its_own() {
    let commands = subcommands();
    for shell in ["bash", "zsh", "fish", "elvish", "powershell"] {
        let out = bin().args(["completions", shell]).output().unwrap();
        assert!(out.status.success(), "{shell}");
        let script = String::from_utf8(out.stdout).unwrap();
        for c in &commands {
            assert!(script.contains(c.as_str()), "{shell} completes {c}");
        }
        if shell == "bash" {
            let dir = tempfile::tempdir().unwrap();
            let file = dir.path().join("banhammer.bash");
            std::fs::write(&file, &script).unwrap();
            let check = Command::new("bash").arg("-n").arg(&file).output().unwrap();
            assert!(
                check.status.success(),
                "{}",
                String::from_utf8_lossy(&check.stderr)
            );
        }
    }
    let unknown = bin().args(["completions", "tcsh"]).output().unwrap();
    assert!(!unknown.status.success());
}

#[test]
fn the_systemd_units_pass_systemd_analyze_verify() {
    let units = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../packaging/systemd");
    let dir = tempfile::tempdir().unwrap();
    // The units as shipped, with ExecStart pointing at this build instead of the install path.
    let exe = env!("CARGO_BIN_EXE_banhammer");
    let mut verify = Vec::new();
    for (name, as_name) in [
        ("banhammer.service", "banhammer.service"),
        // A template is verified as an instance: this one follows /var/log/nginx/access.log.
        (
            "banhammer-watch@.service",
            "banhammer-watch@var-log-nginx-access.log.service",
        ),
    ] {
        let text = std::fs::read_to_string(units.join(name)).unwrap();
        assert!(
            text.contains("ExecReload=/bin/kill -HUP $MAINPID"),
            "{name} reloads"
        );
        assert!(text.contains("DynamicUser=yes"), "{name} runs unprivileged");
        let local = text.replace("/usr/local/bin/banhammer", exe);
        std::fs::write(dir.path().join(as_name), local).unwrap();
        verify.push(dir.path().join(as_name));
    }
    // `Documentation=man:` is checked by running man: give it this build's pages.
    write_man_pages(&dir.path().join("man/man1"));
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .args(&verify)
        .env("MANPATH", dir.path().join("man"))
        .output()
        .expect("systemd-analyze (Debian's systemd package; scripts/test installs it)");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && stderr.trim().is_empty(), "{stderr}");
}
