//! Log times (`$time_local`, `$time_iso8601`, `$msec`) to unix seconds, offsets applied.

use banhammer_core::Timestamp;

/// `31/Dec/2018:23:55:00 +0800`.
pub(crate) fn clf(v: &str) -> Option<Timestamp> {
    let b = v.as_bytes();
    if b.len() != 26
        || b[2] != b'/'
        || b[6] != b'/'
        || b[11] != b':'
        || b[14] != b':'
        || b[17] != b':'
        || b[20] != b' '
    {
        return None;
    }
    // A tuple of bytes compiles to byte compares (a slice pattern would call memcmp).
    let month = match (b[3], b[4], b[5]) {
        (b'J', b'a', b'n') => 1,
        (b'F', b'e', b'b') => 2,
        (b'M', b'a', b'r') => 3,
        (b'A', b'p', b'r') => 4,
        (b'M', b'a', b'y') => 5,
        (b'J', b'u', b'n') => 6,
        (b'J', b'u', b'l') => 7,
        (b'A', b'u', b'g') => 8,
        (b'S', b'e', b'p') => 9,
        (b'O', b'c', b't') => 10,
        (b'N', b'o', b'v') => 11,
        (b'D', b'e', b'c') => 12,
        _ => return None,
    };
    let sign = match b[21] {
        b'+' => 1,
        b'-' => -1,
        _ => return None,
    };
    let offset = sign * (digits(&b[22..24])? * 3600 + minutes(&b[24..26])? * 60);
    let secs = civil(
        digits(&b[7..11])?,
        month,
        digits(&b[0..2])?,
        (
            digits(&b[12..14])?,
            digits(&b[15..17])?,
            digits(&b[18..20])?,
        ),
    )?;
    Some(Timestamp::from_unix(secs - offset))
}

/// `2018-12-31T23:55:00+08:00`, also with a fraction (`23:55:00.123`) or `Z`.
pub(crate) fn iso8601(v: &str) -> Option<Timestamp> {
    let b = v.as_bytes();
    if b.len() < 20
        || b[4] != b'-'
        || b[7] != b'-'
        || !matches!(b[10], b'T' | b't' | b' ')
        || b[13] != b':'
        || b[16] != b':'
    {
        return None;
    }
    let mut rest = &b[19..];
    if let [b'.', fraction @ ..] = rest {
        let n = fraction.iter().take_while(|c| c.is_ascii_digit()).count();
        if n == 0 {
            return None;
        }
        rest = &fraction[n..];
    }
    let offset = match rest {
        [b'Z' | b'z'] => 0,
        [sign @ (b'+' | b'-'), h1, h2, b':', m1, m2] => {
            let o = digits(&[*h1, *h2])? * 3600 + minutes(&[*m1, *m2])? * 60;
            if *sign == b'+' {
                o
            } else {
                -o
            }
        }
        _ => return None,
    };
    let secs = civil(
        digits(&b[0..4])?,
        digits(&b[5..7])?,
        digits(&b[8..10])?,
        (
            digits(&b[11..13])?,
            digits(&b[14..16])?,
            digits(&b[17..19])?,
        ),
    )?;
    Some(Timestamp::from_unix(secs - offset))
}

/// `1546271700.123` (unix seconds, milliseconds dropped: the time is floored).
pub(crate) fn msec(v: &str) -> Option<Timestamp> {
    let (secs, fraction) = v.split_once('.').unwrap_or((v, "0"));
    if secs.len() > 12 || fraction.is_empty() || !fraction.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits(secs.as_bytes()).map(Timestamp::from_unix)
}

/// A run of ASCII digits (callers bound its length), `None` for anything else.
fn digits(b: &[u8]) -> Option<i64> {
    if b.is_empty() || !b.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(b.iter().fold(0i64, |acc, d| acc * 10 + i64::from(d - b'0')))
}

/// Two digits of minutes (of an offset).
fn minutes(b: &[u8]) -> Option<i64> {
    digits(b).filter(|m| *m < 60)
}

/// Seconds since the epoch of a UTC civil time (Howard Hinnant's days-from-civil), `None` for
/// a date or time that does not exist (31 April, 24:00). A leap second `:60` is accepted and
/// lands on the next minute's first second.
fn civil(year: i64, month: i64, day: i64, (h, m, s): (i64, i64, i64)) -> Option<i64> {
    let leap = year % 4 == 0 && (year % 100 != 0 || year % 400 == 0);
    let month_days = match month {
        2 if leap => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        1..=12 => 31,
        _ => return None,
    };
    if !(1..=month_days).contains(&day) || h > 23 || m > 59 || s > 60 {
        return None;
    }
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(days * 86_400 + h * 3600 + m * 60 + s)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unix(t: Option<Timestamp>) -> Option<i64> {
        t.map(Timestamp::as_unix)
    }

    #[test]
    fn local_times_apply_their_offset() {
        assert_eq!(unix(clf("31/Dec/2018:23:55:00 +0800")), Some(1_546_271_700));
        assert_eq!(unix(clf("10/Oct/2000:13:55:36 -0700")), Some(971_211_336));
        assert_eq!(unix(clf("01/Jan/1970:00:00:00 +0000")), Some(0));
        assert_eq!(unix(clf("01/Jan/1970:05:30:00 +0530")), Some(0));
        assert_eq!(unix(clf("29/Feb/2020:00:00:00 +0000")), Some(1_582_934_400));
        assert_eq!(unix(clf("31/Dec/2016:23:59:60 +0000")), Some(1_483_228_800));
    }

    #[test]
    fn impossible_local_times_are_refused() {
        for bad in [
            "29/Feb/2019:00:00:00 +0000",
            "31/Apr/2019:00:00:00 +0000",
            "00/Jan/2019:00:00:00 +0000",
            "01/jan/2019:00:00:00 +0000",
            "01/Jan/2019:24:00:00 +0000",
            "01/Jan/2019:00:60:00 +0000",
            "01/Jan/2019:00:00:00 +0060",
            "01/Jan/2019:00:00:00 0800",
            "01/Jan/2019:00:00:00",
            "01/Jan/2019 00:00:00 +0000",
            "1/Jan/2019:00:00:00 +0000 ",
            "01/Jan/-019:00:00:00 +0000",
            "",
        ] {
            assert_eq!(clf(bad), None, "{bad}");
        }
    }

    #[test]
    fn iso8601_times_with_offsets_fractions_and_z() {
        assert_eq!(
            unix(iso8601("2018-12-31T23:55:00+08:00")),
            Some(1_546_271_700)
        );
        assert_eq!(unix(iso8601("2018-12-31T15:55:00Z")), Some(1_546_271_700));
        assert_eq!(
            unix(iso8601("2018-12-31T15:55:00.999Z")),
            Some(1_546_271_700)
        );
        assert_eq!(
            unix(iso8601("2018-12-31T10:55:00-05:00")),
            Some(1_546_271_700)
        );
        for bad in [
            "2018-12-31T23:55:00",
            "2018-12-31T23:55:00+0800",
            "2018-12-31T23:55:00.Z",
            "2018-13-31T23:55:00Z",
            "2018-12-31T23:55:00+08:00 ",
        ] {
            assert_eq!(iso8601(bad), None, "{bad}");
        }
    }

    #[test]
    fn msec_is_floored_to_seconds() {
        assert_eq!(unix(msec("1546271700.999")), Some(1_546_271_700));
        assert_eq!(unix(msec("1546271700")), Some(1_546_271_700));
        for bad in [
            "",
            ".5",
            "1.",
            "-1.000",
            "+1.000",
            "1e9",
            "99999999999999999999.000",
        ] {
            assert_eq!(msec(bad), None, "{bad}");
        }
    }
}
