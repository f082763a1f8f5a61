//! `run --target ... --start-at TIME`: several load hosts start the same
//! workload at the same wall-clock instant. TIME is RFC 3339
//! (`2026-12-06T12:00:00Z`, `2026-12-06T13:00:00.250+01:00`) or unix
//! seconds (`1796558400`, `1796558400.25`); the run waits until then with
//! a countdown on stderr. A time more than [`PAST_TOLERANCE_SECS`] in the
//! past is refused (a host whose command came late would otherwise start
//! out of step with the others without anyone noticing).

use std::io::{IsTerminal, Write};
use std::time::Duration;

use anyhow::{bail, Result};

use super::record::wall_us;

/// How far in the past a start time may be (the command took that long
/// to reach the host): it then starts at once.
pub const PAST_TOLERANCE_SECS: f64 = 2.0;

/// Days since 1970-01-01 of a civil date (proleptic Gregorian).
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m as i64 + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn num(s: &str, what: &str, text: &str) -> Result<u32> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        bail!("--start-at {text:?}: bad {what} {s:?}; expected RFC 3339 (2026-12-06T12:00:00Z) or unix seconds");
    }
    Ok(s.parse()?)
}

/// Parses TIME into µs since the epoch.
pub fn parse(text: &str) -> Result<u64> {
    let t = text.trim();
    let shape = || {
        anyhow::anyhow!(
            "--start-at {text:?}: expected RFC 3339 (e.g. 2026-12-06T12:00:00Z or \
             2026-12-06T13:00:00+01:00) or unix seconds (e.g. 1796558400)"
        )
    };
    if !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        let secs: f64 = t.parse().map_err(|_| shape())?;
        if !secs.is_finite() || secs > 1e11 {
            return Err(shape());
        }
        return Ok((secs * 1e6).round() as u64);
    }
    // YYYY-MM-DD, then T/t/space, then HH:MM:SS[.frac], then Z or ±HH:MM.
    if t.len() < 20 || !t.is_char_boundary(10) || !t.is_char_boundary(11) {
        return Err(shape());
    }
    let (date, rest) = (&t[..10], &t[11..]);
    if !matches!(&t[10..11], "T" | "t" | " ") {
        return Err(shape());
    }
    let d: Vec<&str> = date.split('-').collect();
    if d.len() != 3 || d[0].len() != 4 || d[1].len() != 2 || d[2].len() != 2 {
        return Err(shape());
    }
    let (y, mo, day) = (
        num(d[0], "year", text)?,
        num(d[1], "month", text)?,
        num(d[2], "day", text)?,
    );
    let zone_at = rest.find(['Z', 'z', '+', '-']).ok_or_else(shape)?;
    let (clock, zone) = rest.split_at(zone_at);
    let (hms, frac) = match clock.split_once('.') {
        Some((a, f)) => (a, Some(f)),
        None => (clock, None),
    };
    let c: Vec<&str> = hms.split(':').collect();
    if c.len() != 3 || c.iter().any(|p| p.len() != 2) {
        return Err(shape());
    }
    let (h, mi, s) = (
        num(c[0], "hour", text)?,
        num(c[1], "minute", text)?,
        num(c[2], "second", text)?,
    );
    if !(1..=12).contains(&mo) || !(1..=31).contains(&day) || h > 23 || mi > 59 || s > 60 {
        bail!("--start-at {text:?}: a date or time field is out of range");
    }
    let micros = match frac {
        None => 0,
        Some(f) => {
            num(f, "fraction of a second", text)?;
            let digits: String = f.chars().chain("000000".chars()).take(6).collect();
            digits.parse::<u64>()?
        }
    };
    let offset_secs: i64 = match zone {
        "Z" | "z" => 0,
        z if z.len() == 6 && &z[3..4] == ":" => {
            let sign = if z.starts_with('-') { -1 } else { 1 };
            let oh = num(&z[1..3], "offset hours", text)? as i64;
            let om = num(&z[4..6], "offset minutes", text)? as i64;
            if oh > 23 || om > 59 {
                bail!("--start-at {text:?}: the offset is out of range");
            }
            sign * (oh * 3600 + om * 60)
        }
        _ => return Err(shape()),
    };
    let secs = days_from_civil(y as i64, mo, day) * 86_400
        + (h as i64 * 3600 + mi as i64 * 60 + s as i64)
        - offset_secs;
    if secs < 0 {
        bail!("--start-at {text:?}: before 1970");
    }
    Ok(secs as u64 * 1_000_000 + micros)
}

/// TIME checked against now: µs since the epoch, or an error when it is
/// more than [`PAST_TOLERANCE_SECS`] in the past.
pub fn check(text: &str, now_us: u64) -> Result<u64> {
    let at = parse(text)?;
    let late = now_us.saturating_sub(at) as f64 / 1e6;
    if late > PAST_TOLERANCE_SECS {
        bail!(
            "--start-at {text:?} is {late:.1} s in the past (now {}); give a time in the future \
             (every load host must get the command before it)",
            human(now_us)
        );
    }
    Ok(at)
}

/// `2026-12-06T12:00:00.250Z`.
pub fn human(us: u64) -> String {
    let secs = us / 1_000_000;
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (y, m, d) = mqlab_engine::clock::civil_from_days(days as i64);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        us % 1_000_000 / 1000
    )
}

/// Waits until `at` (µs since the epoch) with a countdown on stderr (one
/// line a second, or one line redrawn on a terminal); returns false when
/// Ctrl-C came first.
pub fn wait_until(at: u64) -> bool {
    let terminal = std::io::stderr().is_terminal();
    let mut last_shown = u64::MAX;
    loop {
        if crate::util::stopped() {
            return false;
        }
        let now = wall_us();
        if now >= at {
            if terminal {
                eprintln!();
            }
            return true;
        }
        let left = at - now;
        let secs = left.div_ceil(1_000_000);
        if secs != last_shown {
            last_shown = secs;
            let line = format!("mqlab: starting in {secs} s (at {})", human(at));
            if terminal {
                eprint!("\r{line}   ");
                let _ = std::io::stderr().flush();
            } else {
                eprintln!("{line}");
            }
        }
        // Wake at every whole second of the countdown, and at the start
        // itself precisely.
        let to_tick = left - (secs - 1) * 1_000_000;
        std::thread::sleep(Duration::from_micros(to_tick.clamp(1, 50_000)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_forms_parse() {
        // 2026-12-06T12:00:00Z
        let base = 1_796_558_400u64 * 1_000_000;
        assert_eq!(human(base), "2026-12-06T12:00:00.000Z");
        for (text, want) in [
            ("2026-12-06T12:00:00Z", base),
            ("2026-12-06t12:00:00z", base),
            ("2026-12-06 12:00:00Z", base),
            ("2026-12-06T13:00:00+01:00", base),
            ("2026-12-06T07:30:00-04:30", base),
            ("2026-12-06T12:00:00.25Z", base + 250_000),
            ("2026-12-06T12:00:00.123456789Z", base + 123_456),
            ("1796558400", base),
            ("1796558400.5", base + 500_000),
            ("1970-01-01T00:00:00Z", 0),
            ("2000-02-29T00:00:00Z", 951_782_400 * 1_000_000),
        ] {
            assert_eq!(parse(text).unwrap(), want, "{text}");
        }
        for bad in [
            "",
            "soon",
            "2026-12-06",
            "2026-12-06T12:00:00",
            "2026-13-06T12:00:00Z",
            "2026-12-06T24:00:00Z",
            "2026-12-06T12:00Z",
            "2026-12-06T12:00:00+0100",
            "1.2.3",
            "-5",
        ] {
            let e = parse(bad).unwrap_err().to_string();
            assert!(e.contains("--start-at"), "{bad}: {e}");
        }
    }

    #[test]
    fn the_past_is_refused() {
        let now = 1_796_558_400u64 * 1_000_000;
        assert_eq!(check("1796558401", now).unwrap(), now + 1_000_000);
        assert_eq!(check("1796558399", now).unwrap(), now - 1_000_000);
        let e = check("2026-12-06T11:59:00Z", now).unwrap_err().to_string();
        assert!(
            e.contains("60.0 s in the past") && e.contains("2026-12-06T12:00:00.000Z"),
            "{e}"
        );
    }
}
