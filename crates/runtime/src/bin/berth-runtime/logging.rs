//! Logs as runc writes them: `--log-format json` gives one `{"level","msg","time"}` object per
//! line, which containerd's shim reads back to report the last error.

use crate::cli::{GlobalArgs, LogFormat};
use std::fmt;
use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

struct MessageVisitor(String);

impl Visit for MessageVisitor {
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        if field.name() == "message" {
            self.0 = format!("{value:?}");
        }
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.0 = value.to_string();
        }
    }
}

struct RuncFormat(LogFormat);

fn level_name(l: &Level) -> &'static str {
    match *l {
        Level::ERROR => "error",
        Level::WARN => "warning",
        Level::INFO => "info",
        Level::DEBUG => "debug",
        Level::TRACE => "trace",
    }
}

impl<S, N> FormatEvent<S, N> for RuncFormat
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        _ctx: &FmtContext<'_, S, N>,
        mut w: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let mut v = MessageVisitor(String::new());
        event.record(&mut v);
        let time = humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string();
        let level = level_name(event.metadata().level());
        match self.0 {
            LogFormat::Json => {
                let line = serde_json::json!({"level": level, "msg": v.0, "time": time});
                writeln!(w, "{line}")
            }
            LogFormat::Text => writeln!(w, "time={time:?} level={level} msg={:?}", v.0),
        }
    }
}

/// Sets up logging; returns true when logs go to a file (so errors are also printed to
/// stderr for the person running the command).
pub fn init(g: &GlobalArgs) -> bool {
    let level = if g.debug { Level::DEBUG } else { Level::INFO };
    let builder = tracing_subscriber::fmt()
        .with_max_level(level)
        .event_format(RuncFormat(g.log_format));
    if let Some(path) = &g.log {
        match std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
        {
            Ok(file) => {
                let file = std::sync::Mutex::new(file);
                builder.with_writer(file).init();
                return true;
            }
            Err(e) => eprintln!(
                "berth-runtime: --log {}: {e}; logging to stderr",
                path.display()
            ),
        }
    }
    builder.with_writer(std::io::stderr).init();
    false
}
