//! The reorder stage alone: what a bounded shuffle gives back (exactly the stable sort), what
//! is late, what a full buffer releases early, and that nothing is lost or kept beyond its
//! capacity whatever comes in.

use proptest::prelude::*;

use super::*;

fn at(t: i64) -> Timestamp {
    Timestamp::from_unix(t)
}

/// Pushes `items` (time, id) in order, popping after each push as callers do, then flushes.
/// Returns what came out in order (late items where they were given back) and the late ids.
fn run(r: &mut Reorder<u32>, items: &[(i64, u32)]) -> (Vec<(i64, u32)>, Vec<u32>) {
    let (mut out, mut late) = (Vec::new(), Vec::new());
    for &(t, id) in items {
        if let Err(l) = r.push(at(t), id) {
            assert_eq!((l.item, l.time), (id, at(t)));
            late.push(id);
            out.push((t, id));
        }
        while let Some((t, id)) = r.pop() {
            out.push((t.as_unix(), id));
        }
        assert!(r.len() <= r.capacity, "{} waiting", r.len());
    }
    r.flush();
    while let Some((t, id)) = r.pop() {
        out.push((t.as_unix(), id));
    }
    assert!(r.is_empty());
    (out, late)
}

fn stable_sort(items: &[(i64, u32)]) -> Vec<(i64, u32)> {
    let mut sorted = items.to_vec();
    sorted.sort_by_key(|&(t, _)| t);
    sorted
}

#[test]
fn a_shuffle_within_the_delay_comes_out_sorted_and_stable() {
    let mut r = Reorder::new(Seconds::new(10), 100);
    let items = [
        (100, 0),
        (95, 1),
        (100, 2),
        (90, 3),
        (105, 4),
        (96, 5),
        (110, 6),
        (100, 7),
    ];
    let (out, late) = run(&mut r, &items);
    assert_eq!(out, stable_sort(&items));
    assert!(late.is_empty());
    assert_eq!(r.early(), 0);
}

#[test]
fn items_wait_for_the_delay_and_the_rest_of_a_released_second_goes_at_once() {
    let mut r = Reorder::new(Seconds::new(10), 100);
    assert_eq!(r.floor(), None);
    r.push(at(100), 1).unwrap();
    assert_eq!(
        r.pop(),
        None,
        "100 may still be preceded by a line at 90..=99"
    );
    assert_eq!(r.floor(), Some(at(90)));
    r.push(at(109), 2).unwrap();
    assert_eq!(r.pop(), None);
    r.push(at(110), 3).unwrap();
    assert_eq!(r.pop(), Some((at(100), 1)), "110 is 10 s past 100");
    assert_eq!(r.pop(), None);
    assert_eq!(r.floor(), Some(at(100)));
    // Another line of second 100 is in order (after the one released); one of 99 is late.
    r.push(at(100), 4).unwrap();
    assert_eq!(r.pop(), Some((at(100), 4)));
    let late = r.push(at(99), 5).unwrap_err();
    assert_eq!(
        late,
        Late {
            item: 5,
            time: at(99),
            newest: at(110),
            floor: at(100)
        }
    );
    assert_eq!(r.len(), 2);
}

#[test]
fn a_line_more_than_the_delay_behind_the_newest_is_late_even_before_any_release() {
    let mut r = Reorder::new(Seconds::new(60), 100);
    r.push(at(1000), 1).unwrap();
    assert!(r.push(at(940), 2).is_ok(), "60 s behind: within the delay");
    assert_eq!(r.push(at(939), 3).unwrap_err().floor, at(940));
    // With no delay, any line older than the newest is late, and nothing waits.
    let mut r = Reorder::new(Seconds::ZERO, 100);
    r.push(at(5), 1).unwrap();
    assert_eq!(r.pop(), Some((at(5), 1)));
    r.push(at(5), 2).unwrap();
    assert_eq!(r.pop(), Some((at(5), 2)));
    assert!(r.push(at(4), 3).is_err());
}

#[test]
fn a_full_buffer_releases_its_oldest_second_early() {
    let mut r = Reorder::new(Seconds::new(3600), 3);
    let items = [
        (10, 0),
        (10, 1),
        (12, 2),
        (11, 3),
        (13, 4),
        (10, 5),
        (11, 6),
    ];
    let (out, late) = run(&mut r, &items);
    // The 4th item overflows: second 10 (two items) goes early. Then a line of 10 comes: in
    // order after the released ones (nothing waits before it), so it goes at once. The 7th
    // overflows again: second 11 goes early.
    assert_eq!(
        out,
        [
            (10, 0),
            (10, 1),
            (10, 5),
            (11, 3),
            (11, 6),
            (12, 2),
            (13, 4)
        ]
    );
    assert!(late.is_empty());
    assert_eq!(r.early(), 5, "10 and 10, then 10, then 11 and 11");
}

#[test]
fn flush_releases_everything_and_later_items_wait_again() {
    let mut r = Reorder::new(Seconds::new(60), 100);
    r.push(at(50), 1).unwrap();
    r.push(at(40), 2).unwrap();
    assert_eq!(r.pop(), None);
    r.flush();
    assert_eq!(r.pop(), Some((at(40), 2)));
    assert_eq!(r.pop(), Some((at(50), 1)));
    assert_eq!(r.pop(), None);
    assert_eq!(r.early(), 0);
    assert!(r.push(at(49), 3).is_err(), "older than what was released");
    r.push(at(51), 4).unwrap();
    assert_eq!(r.pop(), None);
}

/// Times, and an arrival order in which each item is at most `delay` older than every item
/// that arrived before it: each item's arrival is its time plus a jitter of 0..=delay.
fn shuffled_within(delay: i64) -> impl Strategy<Value = Vec<(i64, u32)>> {
    proptest::collection::vec((0i64..200, 0..=delay), 0..120).prop_map(|items| {
        let mut arrivals: Vec<(i64, i64, u32)> = items
            .into_iter()
            .zip(0u32..)
            .map(|((t, jitter), id)| (t + jitter, t, id))
            .collect();
        arrivals.sort_unstable();
        arrivals.into_iter().map(|(_, t, id)| (t, id)).collect()
    })
}

proptest! {
    #[test]
    fn any_shuffle_within_the_delay_gives_the_stable_sort(
        (delay, items) in (0i64..30).prop_flat_map(|d| (Just(d), shuffled_within(d))),
    ) {
        let mut r = Reorder::new(Seconds::new(delay.unsigned_abs()), 1_000);
        let (out, late) = run(&mut r, &items);
        prop_assert!(late.is_empty());
        prop_assert_eq!(r.early(), 0);
        prop_assert_eq!(out, stable_sort(&items));
    }

    #[test]
    fn whatever_comes_in_everything_comes_out_once_and_released_items_are_in_order(
        items in proptest::collection::vec(0i64..100, 0..200),
        delay in 0u64..20,
        capacity in 1usize..10,
    ) {
        let items: Vec<(i64, u32)> = items.into_iter().zip(0u32..).collect();
        let mut r = Reorder::new(Seconds::new(delay), capacity);
        let (out, late) = run(&mut r, &items);
        let mut ids: Vec<u32> = out.iter().map(|&(_, id)| id).collect();
        ids.sort_unstable();
        prop_assert_eq!(ids, (0..items.len() as u32).collect::<Vec<_>>());
        let released: Vec<i64> = out
            .iter()
            .filter(|(_, id)| !late.contains(id))
            .map(|&(t, _)| t)
            .collect();
        prop_assert!(released.windows(2).all(|w| w[0] <= w[1]), "{:?}", released);
    }
}
