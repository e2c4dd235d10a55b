//! Model test of the follower on a real file: random writes, partial lines, rotations by
//! rename, copy-truncates and deletions, checked against what `tail -F` should hand out.

use std::fs::OpenOptions;
use std::io::Write;

use proptest::prelude::*;

use super::*;

#[derive(Debug, Clone)]
enum Op {
    Line(String),
    Partial(String),
    Rotate,
    Truncate,
    Delete,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => "[a-z0-9 ]{0,12}".prop_map(Op::Line),
        2 => "[a-z]{1,6}".prop_map(Op::Partial),
        1 => Just(Op::Rotate),
        1 => Just(Op::Truncate),
        1 => Just(Op::Delete),
    ]
}

fn append(path: &Path, bytes: &[u8]) {
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap()
        .write_all(bytes)
        .unwrap();
}

/// Empties the file in place, as copytruncate does after copying it away.
fn truncate(path: &Path) {
    OpenOptions::new()
        .write(true)
        .open(path)
        .unwrap()
        .set_len(0)
        .unwrap();
}

fn lines(out: Vec<FollowedLine>) -> Vec<String> {
    out.into_iter()
        .map(|l| match l {
            FollowedLine::Line(_, b) => String::from_utf8(b).unwrap(),
            FollowedLine::TooLong(_) => "<too long>".to_owned(),
        })
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn hands_out_every_whole_line_once_in_order(ops in proptest::collection::vec(op(), 1..40)) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("access.log");
        let mut f = Follower::new(&path, 64);
        let mut got = Vec::new();
        let mut want: Vec<String> = Vec::new();
        let mut partial = String::new();
        // A partial line in a deleted file, handed out once a new file appears.
        let mut orphan: Option<String> = None;
        for op in ops {
            match &op {
                Op::Line(s) | Op::Partial(s) => {
                    if let Some(p) = orphan.take() {
                        want.push(p);
                    }
                    if let Op::Line(_) = op {
                        append(&path, format!("{s}\n").as_bytes());
                        want.push(format!("{partial}{s}"));
                        partial.clear();
                    } else {
                        append(&path, s.as_bytes());
                        partial.push_str(s);
                    }
                }
                Op::Rotate => {
                    if path.exists() {
                        std::fs::rename(&path, dir.path().join("access.log.1")).unwrap();
                        std::fs::write(&path, b"").unwrap();
                        if let Some(p) = orphan.take() {
                            want.push(p);
                        }
                        if !partial.is_empty() {
                            want.push(std::mem::take(&mut partial));
                        }
                    }
                }
                Op::Truncate => {
                    if path.exists() {
                        // copytruncate: the content is copied away, then the file emptied.
                        std::fs::copy(&path, dir.path().join("access.log.1")).unwrap();
                        truncate(&path);
                        partial.clear();
                    }
                }
                Op::Delete => {
                    if path.exists() {
                        std::fs::remove_file(&path).unwrap();
                        if !partial.is_empty() {
                            orphan = Some(std::mem::take(&mut partial));
                        }
                    }
                }
            }
            let mut out = Vec::new();
            f.poll(&mut out, 1 << 20).unwrap();
            got.extend(lines(out));
        }
        prop_assert_eq!(got, want);
    }
}

#[test]
fn notices_a_copytruncate_even_when_the_file_has_grown_back() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a.log");
    append(&path, b"old line one\nold line two\n");
    let mut f = Follower::new(&path, 64);
    let mut out = Vec::new();
    f.poll(&mut out, 1024).unwrap();
    truncate(&path);
    append(&path, b"new line one\nnew line two\nnew three\n");
    f.poll(&mut out, 1024).unwrap();
    assert_eq!(
        lines(out),
        [
            "old line one",
            "old line two",
            "new line one",
            "new line two",
            "new three"
        ]
    );
    assert_eq!(f.take_notices(), [Notice::Truncated { offset: 26 }]);
    assert!(f.take_notices().is_empty(), "taken once");
}

#[test]
fn a_file_created_after_from_end_is_read_whole() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("later.log");
    let mut f = Follower::new(&path, 64).from_end();
    append(&path, b"first\n");
    let mut out = Vec::new();
    f.poll(&mut out, 1024).unwrap();
    assert_eq!(lines(out), ["first"]);
}

#[test]
fn waits_for_a_file_that_does_not_exist_yet() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("later.log");
    let mut f = Follower::new(&path, 64);
    let mut out = Vec::new();
    assert!(!f.poll(&mut out, 1024).unwrap());
    assert!(out.is_empty());
    assert_eq!(f.position(), None);
    append(&path, b"first\n");
    f.poll(&mut out, 1024).unwrap();
    assert_eq!(lines(out), ["first"]);
}

#[test]
fn holds_a_partial_line_until_its_newline() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a.log");
    append(&path, b"one\ntw");
    let mut f = Follower::new(&path, 64);
    let mut out = Vec::new();
    f.poll(&mut out, 1024).unwrap();
    assert_eq!(
        f.position().unwrap().offset,
        4,
        "only whole lines are consumed"
    );
    append(&path, b"o\r\n");
    f.poll(&mut out, 1024).unwrap();
    assert_eq!(lines(out), ["one", "two"]);
    assert_eq!(f.position().unwrap().offset, 9);
}

#[test]
fn skips_lines_longer_than_the_limit_without_holding_them() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a.log");
    let mut f = Follower::new(&path, 8);
    append(&path, b"short\n");
    append(&path, &vec![b'x'; 100_000]);
    let mut out = Vec::new();
    f.poll(&mut out, 1 << 20).unwrap();
    append(&path, b"xx\nafter\n");
    f.poll(&mut out, 1 << 20).unwrap();
    assert_eq!(lines(out), ["short", "<too long>", "after"]);
}

#[test]
fn resumes_where_it_stopped_and_restarts_on_a_replaced_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a.log");
    append(&path, b"1\n2\n");
    let mut f = Follower::new(&path, 64);
    let mut out = Vec::new();
    f.poll(&mut out, 1024).unwrap();
    let saved = f.position().unwrap();
    append(&path, b"3\n");
    let mut again = Follower::resume(&path, 64, Some(saved));
    let mut out = Vec::new();
    again.poll(&mut out, 1024).unwrap();
    assert_eq!(
        lines(out),
        ["3"],
        "lines before the saved offset are not read twice"
    );

    std::fs::remove_file(&path).unwrap();
    append(&path, b"new\n");
    let mut replaced = Follower::resume(&path, 64, Some(saved));
    let mut out = Vec::new();
    replaced.poll(&mut out, 1024).unwrap();
    assert_eq!(lines(out), ["new"], "another inode is read from its start");
}

#[test]
fn the_budget_bounds_one_poll() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a.log");
    let text: Vec<u8> = (0..20_000)
        .flat_map(|i| format!("line {i}\n").into_bytes())
        .collect();
    append(&path, &text);
    let mut f = Follower::new(&path, 64);
    let mut out = Vec::new();
    assert!(f.poll(&mut out, 64 * 1024).unwrap(), "more is waiting");
    let first = out.len();
    assert!(first > 0 && first < 20_000);
    while f.poll(&mut out, 64 * 1024).unwrap() {}
    assert_eq!(out.len(), 20_000);
}

#[test]
fn line_numbers_are_the_files_own_also_after_resuming() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a.log");
    append(&path, b"1\n2\n3");
    let mut f = Follower::new(&path, 64).from_end();
    let mut out = Vec::new();
    f.poll(&mut out, 1024).unwrap();
    assert!(out.is_empty(), "from the end: nothing old is read");
    append(&path, b"\n4\n");
    f.poll(&mut out, 1024).unwrap();
    assert_eq!(
        out,
        [
            FollowedLine::Line(3, b"3".to_vec()),
            FollowedLine::Line(4, b"4".to_vec())
        ]
    );
    let saved = f.position();
    append(&path, b"5\n");
    let mut again = Follower::resume(&path, 64, saved);
    let mut out = Vec::new();
    again.poll(&mut out, 1024).unwrap();
    assert_eq!(out, [FollowedLine::Line(5, b"5".to_vec())]);
}

/// Reads `path` as far as it goes and returns where a restart would resume.
fn read_all_and_stop(path: &Path) -> Position {
    let mut f = Follower::new(path, 64);
    let mut out = Vec::new();
    f.poll(&mut out, 1 << 20).unwrap();
    assert!(f.take_notices().is_empty());
    f.position().unwrap()
}

fn restart(path: &Path, saved: Position) -> (Vec<String>, Vec<Notice>) {
    let mut f = Follower::resume(path, 64, Some(saved));
    let mut out = Vec::new();
    while f.poll(&mut out, 1 << 20).unwrap() {}
    (lines(out), f.take_notices())
}

#[test]
fn a_rotation_while_stopped_reads_the_rest_of_the_old_file_then_the_new_one() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a.log");
    append(&path, b"1\n2\n");
    let saved = read_all_and_stop(&path);
    assert_eq!(saved.head, Fingerprint::of(b"1\n2\n"));
    append(&path, b"3\n4");
    let rotated = dir.path().join("a.log.1");
    std::fs::rename(&path, &rotated).unwrap();
    append(&path, b"5\n");
    let (got, notices) = restart(&path, saved);
    assert_eq!(got, ["3", "4", "5"]);
    assert_eq!(
        notices,
        [Notice::RotatedWhileStopped { rotated, offset: 4 }]
    );
    assert!(!notices[0].may_lose_lines());
}

#[test]
fn a_rotated_file_not_yet_replaced_is_read_on_and_the_new_one_followed_when_it_comes() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a.log");
    append(&path, b"1\n");
    let saved = read_all_and_stop(&path);
    append(&path, b"2\n");
    std::fs::rename(&path, dir.path().join("a.log-20190207")).unwrap();
    let mut f = Follower::resume(&path, 64, Some(saved));
    let mut out = Vec::new();
    f.poll(&mut out, 1024).unwrap();
    append(&path, b"3\n");
    f.poll(&mut out, 1024).unwrap();
    assert_eq!(lines(out), ["2", "3"]);
}

#[test]
fn a_copytruncate_while_stopped_reads_the_new_content_from_its_start() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a.log");
    append(&path, b"old line one\nold line two\n");
    let saved = read_all_and_stop(&path);
    truncate(&path);
    // Longer than what was read: only the first bytes tell.
    append(&path, b"new line one\nnew line two\nnew three\n");
    let (got, notices) = restart(&path, saved);
    assert_eq!(got, ["new line one", "new line two", "new three"]);
    assert_eq!(notices, [Notice::Truncated { offset: 26 }]);
    assert!(notices[0].may_lose_lines());
}

#[test]
fn a_file_rewritten_in_place_to_the_same_length_is_not_resumed_in_the_middle() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a.log");
    append(&path, b"aaaa\nbbbb\n");
    let saved = read_all_and_stop(&path);
    std::fs::write(&path, b"cccc\ndddd\n").unwrap();
    let (got, notices) = restart(&path, saved);
    assert_eq!(got, ["cccc", "dddd"]);
    assert_eq!(notices, [Notice::Truncated { offset: 10 }]);
}

#[test]
fn a_file_gone_while_stopped_is_a_notice_that_lines_may_be_lost() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a.log");
    append(&path, b"1\n2\n");
    let saved = read_all_and_stop(&path);
    append(&path, b"3\n");
    std::fs::remove_file(&path).unwrap();
    append(&path, b"new\n");
    let (got, notices) = restart(&path, saved);
    assert_eq!(got, ["new"]);
    // The new file may have been given the old inode: then it is the same inode with other
    // first bytes.
    assert!(
        notices == [Notice::Gone { offset: 4 }] || notices == [Notice::Truncated { offset: 4 }],
        "{notices:?}"
    );
    assert!(notices[0].to_string().contains("may have been lost"));
}

#[test]
fn a_position_saved_without_a_fingerprint_resumes_on_device_inode_and_length() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a.log");
    append(&path, b"1\n2\n");
    let saved = Position {
        head: Fingerprint::default(),
        ..read_all_and_stop(&path)
    };
    append(&path, b"3\n");
    let (got, notices) = restart(&path, saved);
    assert_eq!(got, ["3"]);
    assert!(notices.is_empty());
}

#[test]
fn a_second_rotation_while_stopped_is_a_notice_that_its_generation_is_not_read() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a.log");
    let (one, two) = (dir.path().join("a.log.1"), dir.path().join("a.log.2"));
    append(&path, b"1\n");
    let saved = read_all_and_stop(&path);
    append(&path, b"2\n");
    std::fs::rename(&path, &one).unwrap();
    append(&path, b"second generation\n");
    std::fs::rename(&one, &two).unwrap();
    std::fs::rename(&path, &one).unwrap();
    append(&path, b"3\n");
    // The second generation was written after the first: a second apart, whatever the
    // file system's timestamp granularity.
    let first = std::fs::metadata(&two).unwrap().modified().unwrap();
    let later = first + std::time::Duration::from_secs(1);
    File::options()
        .append(true)
        .open(&one)
        .unwrap()
        .set_modified(later)
        .unwrap();
    let (got, notices) = restart(&path, saved);
    assert_eq!(got, ["2", "3"]);
    assert_eq!(
        notices,
        [
            Notice::RotatedWhileStopped {
                rotated: two,
                offset: 2
            },
            Notice::NotRead { rotated: one }
        ]
    );
    assert!(notices[1].may_lose_lines());
}
