//! What the binary's tests share: starting `banhammer serve` and learning where it listens.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

/// Starts `banhammer serve --listen 127.0.0.1:0` with `args` and returns the child and its base
/// URL, read from the line it prints once listening.
pub(crate) fn start_serve(args: &[&std::ffi::OsStr]) -> (Child, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_banhammer"));
    cmd.args(["serve", "--listen", "127.0.0.1:0"]).args(args);
    spawn_serve(cmd)
}

/// Spawns `serve` as `cmd` says (its output piped here, its logs dropped) and returns the child
/// and its base URL, read from the line it prints once listening.
pub(crate) fn spawn_serve(mut cmd: Command) -> (Child, String) {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let url = line.trim().rsplit(' ').next().unwrap().to_owned();
    assert!(
        url.starts_with("http://127.0.0.1:"),
        "serve did not start: {line}"
    );
    (child, url)
}
