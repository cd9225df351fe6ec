//! Signal names as `kill` takes them: `TERM`, `SIGTERM`, `term`, `15`, `SIGRTMIN+3`.

use crate::error::{Error, Result};
use nix::sys::signal::Signal;
use std::str::FromStr;

/// Returns the signal number. Real-time signals have no `Signal` variant in nix, so the
/// number is the common currency.
pub fn parse(text: &str) -> Result<i32> {
    let bad = || Error::InvalidSignal(text.to_string());
    if let Ok(n) = text.parse::<i32>() {
        return if (1..=libc::SIGRTMAX()).contains(&n) {
            Ok(n)
        } else {
            Err(bad())
        };
    }
    let upper = text.to_ascii_uppercase();
    let name = if upper.starts_with("SIG") {
        upper
    } else {
        format!("SIG{upper}")
    };
    if let Some(rest) = name.strip_prefix("SIGRTMIN") {
        return rt_offset(rest, libc::SIGRTMIN(), 1).ok_or_else(bad);
    }
    if let Some(rest) = name.strip_prefix("SIGRTMAX") {
        return rt_offset(rest, libc::SIGRTMAX(), -1).ok_or_else(bad);
    }
    Signal::from_str(&name).map(|s| s as i32).map_err(|_| bad())
}

fn rt_offset(rest: &str, base: i32, sign: i32) -> Option<i32> {
    if rest.is_empty() {
        return Some(base);
    }
    let sep = if sign > 0 { '+' } else { '-' };
    let n: i32 = rest.strip_prefix(sep)?.parse().ok()?;
    let sig = base + sign * n;
    (libc::SIGRTMIN()..=libc::SIGRTMAX())
        .contains(&sig)
        .then_some(sig)
}

#[cfg(test)]
mod tests {
    use super::parse;

    #[test]
    fn names_with_and_without_sig_and_numbers() {
        assert_eq!(parse("TERM").unwrap(), libc::SIGTERM);
        assert_eq!(parse("SIGTERM").unwrap(), libc::SIGTERM);
        assert_eq!(parse("kill").unwrap(), libc::SIGKILL);
        assert_eq!(parse("9").unwrap(), 9);
        assert_eq!(parse("SIGRTMIN+3").unwrap(), libc::SIGRTMIN() + 3);
        assert_eq!(parse("RTMAX").unwrap(), libc::SIGRTMAX());
    }

    #[test]
    fn bad_signals_are_errors() {
        for s in ["", "0", "-1", "65", "FOO", "SIGFOO", "RTMIN+99", "1.5"] {
            assert!(parse(s).is_err(), "{s:?}");
        }
    }
}
