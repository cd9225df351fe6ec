//! Durations and sizes for people, exactly as Docker's `go-units` prints them, so that
//! `berth ps` and `berth images` read like `docker ps` and `docker images`.

use std::time::{SystemTime, UNIX_EPOCH};

/// go-units `HumanDuration`: "Less than a second", "About a minute", "3 hours", "2 weeks".
pub fn human_duration(seconds: i64) -> String {
    let s = seconds.max(0);
    if s < 1 {
        return "Less than a second".into();
    }
    if s == 1 {
        return "1 second".into();
    }
    if s < 60 {
        return format!("{s} seconds");
    }
    let minutes = s / 60;
    if minutes == 1 {
        return "About a minute".into();
    }
    if minutes < 60 {
        return format!("{minutes} minutes");
    }
    // Go rounds hours (`int(d.Hours() + 0.5)`) for the hour and day ranges.
    let hours = (s as f64 / 3600.0 + 0.5) as i64;
    if hours == 1 {
        return "About an hour".into();
    }
    if hours < 48 {
        return format!("{hours} hours");
    }
    if hours < 24 * 7 * 2 {
        return format!("{} days", hours / 24);
    }
    if hours < 24 * 30 * 2 {
        return format!("{} weeks", hours / 24 / 7);
    }
    if hours < 24 * 365 * 2 {
        return format!("{} months", hours / 24 / 30);
    }
    format!("{} years", s / 3600 / 24 / 365)
}

/// `"2 minutes ago"` for a Unix timestamp, as `docker ps` and `docker images` print CREATED.
pub fn ago(unix_seconds: i64) -> String {
    format!("{} ago", human_duration(now_unix() - unix_seconds))
}

pub fn now_unix() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

const DECIMAL: &[&str] = &["B", "kB", "MB", "GB", "TB", "PB", "EB", "ZB", "YB"];
const BINARY: &[&str] = &["B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB", "ZiB", "YiB"];

fn scaled(size: f64, base: f64, units: &[&'static str]) -> (f64, &'static str) {
    let mut size = size;
    let mut i = 0;
    while size >= base && i < units.len() - 1 {
        size /= base;
        i += 1;
    }
    (size, units[i])
}

/// go-units `HumanSizeWithPrecision`: decimal units, `%.<precision>g` ("4.26MB" at 3).
pub fn human_size_precision(bytes: f64, precision: usize) -> String {
    let (size, unit) = scaled(bytes, 1000.0, DECIMAL);
    format!("{}{unit}", format_g(size, precision))
}

/// go-units `HumanSize` (precision 4): progress bars' "1.234MB/5.678MB".
pub fn human_size(bytes: f64) -> String {
    human_size_precision(bytes, 4)
}

/// go-units `BytesSize`: binary units, as `docker info` prints Total Memory.
pub fn bytes_size(bytes: f64) -> String {
    let (size, unit) = scaled(bytes, 1024.0, BINARY);
    format!("{}{unit}", format_g(size, 4))
}

/// Go's `%.<prec>g`: shortest of fixed or exponent form at `prec` significant digits,
/// trailing zeros dropped, exponent as `e+03`.
pub fn format_g(x: f64, prec: usize) -> String {
    let prec = prec.max(1);
    if x == 0.0 || !x.is_finite() {
        return if x.is_finite() {
            "0".into()
        } else {
            x.to_string()
        };
    }
    let sci = format!("{:.*e}", prec - 1, x);
    let (mantissa, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    if exp < -4 || exp >= prec as i32 {
        let m = strip_zeros(mantissa);
        let sign = if exp < 0 { '-' } else { '+' };
        return format!("{m}e{sign}{:02}", exp.abs());
    }
    let decimals = (prec as i32 - 1 - exp).max(0) as usize;
    strip_zeros(&format!("{x:.decimals$}"))
}

fn strip_zeros(s: &str) -> String {
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_owned()
    } else {
        s.to_owned()
    }
}

/// Go's `time.Time.String()` of a Unix time, in UTC: `2024-01-02 15:04:05 +0000 UTC`, as
/// `docker ps --format '{{.CreatedAt}}'` prints it (docker uses local time; berth prints
/// UTC so output does not depend on the host's zone database).
pub fn format_unix_utc(unix_seconds: i64) -> String {
    let days = unix_seconds.div_euclid(86_400);
    let secs = unix_seconds.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02} +0000 UTC",
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    )
}

/// Days since 1970-01-01 -> (year, month, day), Howard Hinnant's `civil_from_days`.
fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_like_go_units() {
        assert_eq!(human_duration(0), "Less than a second");
        assert_eq!(human_duration(1), "1 second");
        assert_eq!(human_duration(45), "45 seconds");
        assert_eq!(human_duration(60), "About a minute");
        assert_eq!(human_duration(119), "About a minute");
        assert_eq!(human_duration(120), "2 minutes");
        assert_eq!(human_duration(59 * 60), "59 minutes");
        assert_eq!(human_duration(3600), "About an hour");
        assert_eq!(human_duration(2 * 3600), "2 hours");
        assert_eq!(human_duration(47 * 3600), "47 hours");
        assert_eq!(human_duration(3 * 86400), "3 days");
        assert_eq!(human_duration(15 * 86400), "2 weeks");
        assert_eq!(human_duration(90 * 86400), "3 months");
        assert_eq!(human_duration(800 * 86400), "2 years");
        assert_eq!(human_duration(-5), "Less than a second");
    }

    #[test]
    fn sizes_like_go_units() {
        assert_eq!(human_size_precision(4_260_000.0, 3), "4.26MB");
        assert_eq!(human_size_precision(7_800_000.0, 3), "7.8MB");
        assert_eq!(human_size_precision(123_456_789.0, 3), "123MB");
        assert_eq!(human_size_precision(999.0, 3), "999B");
        assert_eq!(human_size_precision(0.0, 3), "0B");
        assert_eq!(human_size_precision(1_000.0, 3), "1kB");
        assert_eq!(human_size(1_234_567.0), "1.235MB");
        assert_eq!(bytes_size(8_242_233_344.0), "7.676GiB");
    }

    #[test]
    fn utc_times() {
        assert_eq!(format_unix_utc(0), "1970-01-01 00:00:00 +0000 UTC");
        assert_eq!(
            format_unix_utc(1_704_164_645),
            "2024-01-02 03:04:05 +0000 UTC"
        );
    }

    #[test]
    fn g_format_switches_to_exponent_like_go() {
        assert_eq!(format_g(999.9, 3), "1e+03");
        assert_eq!(format_g(0.5, 3), "0.5");
        assert_eq!(format_g(12.0, 3), "12");
    }
}
