//! Showing a JSON progress stream (pull, push, load, import) the way docker's
//! `jsonmessage.DisplayJSONMessagesStream` does: on a terminal, one line per layer, redrawn in
//! place with cursor movements; elsewhere, only the lines without a progress bar.

use std::collections::HashMap;
use std::io::Write;

use berth_api::client::{self, Error};
use berth_api::stream::{JsonMessage, ProgressDetail};

use crate::human::human_size;

/// Writes the stream to `out`; the first `error` line ends it as [`Error::Stream`].
/// `width` is the terminal's column count, `None` when `out` is not a terminal.
pub fn display(
    stream: impl Iterator<Item = client::Result<JsonMessage>>,
    out: &mut dyn Write,
    width: Option<u16>,
) -> client::Result<()> {
    let is_terminal = width.is_some();
    // Line index (from the first progress line) of each layer id on screen.
    let mut lines: HashMap<String, usize> = HashMap::new();
    for msg in stream {
        let msg = msg?;
        if let Some(e) = error_of(&msg) {
            return Err(Error::Stream(e));
        }
        let has_progress = msg.progress_detail.is_some() || !msg.progress.is_empty();
        let mut diff = 0;
        if !msg.id.is_empty() && has_progress {
            let n = lines.len();
            let line = *lines.entry(msg.id.clone()).or_insert(n);
            if line == n && is_terminal {
                writeln!(out)?;
            }
            diff = lines.len() - line;
            if is_terminal {
                write!(out, "\x1b[{diff}A")?;
            }
        } else {
            // Lines from a previous phase must not be redrawn over.
            lines.clear();
        }
        write_message(&msg, out, width)?;
        if !msg.id.is_empty() && is_terminal && diff > 0 {
            write!(out, "\x1b[{diff}B")?;
        }
        out.flush()?;
    }
    Ok(())
}

/// The `error` (or `errorDetail.message`) of a line, if it reports one.
pub fn error_of(msg: &JsonMessage) -> Option<String> {
    if !msg.error.is_empty() {
        return Some(msg.error.clone());
    }
    msg.error_detail
        .as_ref()
        .filter(|d| !d.message.is_empty())
        .map(|d| d.message.clone())
}

fn write_message(
    msg: &JsonMessage,
    out: &mut dyn Write,
    width: Option<u16>,
) -> std::io::Result<()> {
    let bar = if msg.progress.is_empty() {
        msg.progress_detail
            .as_ref()
            .map(|d| progress_bar(d, width.unwrap_or(0)))
            .unwrap_or_default()
    } else {
        msg.progress.clone()
    };
    let has_progress = msg.progress_detail.is_some() || !msg.progress.is_empty();
    let mut endl = "";
    if width.is_some() && msg.stream.is_empty() && has_progress {
        // Clear the line and return to its start before redrawing it.
        write!(out, "\x1b[2K\r")?;
        endl = "\r";
    } else if !bar.is_empty() {
        // Progress bars make no sense in a log file.
        return Ok(());
    }
    if !msg.id.is_empty() {
        write!(out, "{}: ", msg.id)?;
    }
    if has_progress && width.is_some() {
        write!(out, "{} {bar}{endl}", msg.status)
    } else if !msg.stream.is_empty() {
        write!(out, "{}{endl}", msg.stream)
    } else {
        writeln!(out, "{}{endl}", msg.status)
    }
}

/// jsonmessage `JSONProgress.String`: `[=====>      ]  1.2MB/3.4MB`, the bar only on
/// terminals wider than 110 columns.
pub fn progress_bar(p: &ProgressDetail, width: u16) -> String {
    let current = p.current.unwrap_or(0);
    let total = p.total.unwrap_or(0);
    if current <= 0 && total <= 0 {
        return String::new();
    }
    let current_s = human_size(current as f64);
    if total <= 0 {
        return format!("{current_s:>8}");
    }
    let total_s = human_size(total as f64);
    let percentage = ((current as f64 / total as f64 * 100.0) as i64 / 2).clamp(0, 50) as usize;
    let bar = if width > 110 {
        format!(
            "[{}>{}] ",
            "=".repeat(percentage),
            " ".repeat(50 - percentage)
        )
    } else {
        String::new()
    };
    format!("{bar}{current_s:>8}/{total_s}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msgs(lines: &str) -> Vec<client::Result<JsonMessage>> {
        lines
            .lines()
            .map(|l| serde_json::from_str(l).map_err(Error::from))
            .collect()
    }

    const PULL: &str = r#"{"status":"Pulling from library/alpine","id":"latest"}
{"status":"Pulling fs layer","progressDetail":{},"id":"aaa"}
{"status":"Downloading","progressDetail":{"current":500,"total":1000},"id":"aaa"}
{"status":"Pull complete","progressDetail":{},"id":"aaa"}
{"status":"Digest: sha256:abc"}
{"status":"Status: Downloaded newer image for alpine:latest"}"#;

    #[test]
    fn plain_output_drops_progress_bars() {
        let mut out = Vec::new();
        display(msgs(PULL).into_iter(), &mut out, None).expect("ok");
        assert_eq!(
            String::from_utf8(out).expect("utf8"),
            "latest: Pulling from library/alpine\naaa: Pulling fs layer\naaa: Pull complete\n\
             Digest: sha256:abc\nStatus: Downloaded newer image for alpine:latest\n"
        );
    }

    #[test]
    fn terminal_output_redraws_layer_lines() {
        let mut out = Vec::new();
        display(msgs(PULL).into_iter(), &mut out, Some(80)).expect("ok");
        let s = String::from_utf8(out).expect("utf8");
        assert!(
            s.contains("\x1b[1A\x1b[2K\raaa: Downloading     500B/1kB\r\x1b[1B"),
            "{s:?}"
        );
    }

    #[test]
    fn error_lines_end_the_stream() {
        let mut out = Vec::new();
        let err = display(
            msgs("{\"status\":\"x\"}\n{\"errorDetail\":{\"message\":\"manifest unknown\"},\"error\":\"manifest unknown\"}")
                .into_iter(),
            &mut out,
            None,
        )
        .expect_err("error line");
        assert_eq!(err.to_string(), "manifest unknown");
    }

    #[test]
    fn bar_only_when_wide() {
        let p = ProgressDetail {
            current: Some(1_234_567),
            total: Some(2_469_134),
        };
        assert_eq!(progress_bar(&p, 80), " 1.235MB/2.469MB");
        assert!(progress_bar(&p, 120).starts_with(&format!("[{}>", "=".repeat(25))));
    }
}
