//! Column alignment as the docker CLI does it: Go's `text/tabwriter` with minimum width 10,
//! padding 3, spaces (docker/cli `cli/command/formatter/formatter.go`). Rows are strings
//! whose cells are separated by tabs, so that `--format 'table {{.ID}}\t{{.Names}}'` lines go
//! through the same path as the built-in tables.

use serde_json::Value;

use crate::template::{Template, TemplateError};

const MIN_WIDTH: usize = 10;
const PADDING: usize = 3;

/// Aligns tab-separated rows. The last cell of a row is not padded (tabwriter only pads
/// tab-terminated cells), so lines carry no trailing spaces.
pub fn render(rows: &[String]) -> String {
    let split: Vec<Vec<&str>> = rows.iter().map(|r| r.split('\t').collect()).collect();
    let columns = split.iter().map(Vec::len).max().unwrap_or(0);
    let mut widths = vec![MIN_WIDTH; columns];
    for row in &split {
        // Only tab-terminated cells count towards a column's width.
        for (i, cell) in row.iter().enumerate().take(row.len().saturating_sub(1)) {
            widths[i] = widths[i].max(cell.chars().count() + PADDING);
        }
    }
    let mut out = String::new();
    for row in &split {
        for (i, cell) in row.iter().enumerate() {
            if i + 1 < row.len() {
                // `{:<w$}` pads by characters, as tabwriter counts runes.
                out.push_str(&format!("{cell:<w$}", w = widths[i]));
            } else {
                out.push_str(cell);
            }
        }
        out.push('\n');
    }
    out
}

/// Renders rows through a `--format` value as docker's formatter does: `\t`/`\n` escapes
/// are expanded; a `table` prefix adds a header row (field names through `header`) and
/// aligns columns; anything else prints one template result per row, unaligned.
pub fn render_format(
    format: &str,
    rows: &[Value],
    header: &dyn Fn(&str) -> String,
) -> Result<String, TemplateError> {
    let (is_table, body) = match format.strip_prefix("table") {
        Some(rest) => (true, rest),
        None => (false, format),
    };
    let body = body
        .trim_matches(' ')
        .replace("\\t", "\t")
        .replace("\\n", "\n");
    let template = Template::parse(&body)?;
    let mut lines = Vec::with_capacity(rows.len() + 1);
    if is_table {
        lines.push(template.render_header(header));
    }
    for row in rows {
        lines.push(template.render(row)?);
    }
    if is_table {
        Ok(render(&lines))
    } else {
        Ok(lines.iter().map(|l| format!("{l}\n")).collect())
    }
}

/// Go's `formatter.Ellipsis`: cut to `max` characters, the last one replaced by `…`.
pub fn ellipsis(s: &str, max: usize) -> String {
    let n = s.chars().count();
    if n <= max {
        return s.to_owned();
    }
    if max == 0 {
        return String::new();
    }
    let mut out: String = s.chars().take(max - 1).collect();
    out.push('…');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_ps_header_matches_docker() {
        let header = "CONTAINER ID\tIMAGE\tCOMMAND\tCREATED\tSTATUS\tPORTS\tNAMES".to_owned();
        assert_eq!(
            render(&[header]),
            "CONTAINER ID   IMAGE     COMMAND   CREATED   STATUS    PORTS     NAMES\n"
        );
    }

    #[test]
    fn widths_follow_the_longest_cell() {
        let rows = vec![
            "REPOSITORY\tTAG\tSIZE".to_owned(),
            "docker.io/library/busybox\tlatest\t4.26MB".to_owned(),
        ];
        assert_eq!(
            render(&rows),
            "REPOSITORY                  TAG       SIZE\n\
             docker.io/library/busybox   latest    4.26MB\n"
        );
    }

    #[test]
    fn formats_with_and_without_table() {
        let rows = vec![serde_json::json!({"ID": "abc", "Names": "web"})];
        let upper = |f: &str| f.to_uppercase();
        assert_eq!(
            render_format("table {{.ID}}\\t{{.Names}}", &rows, &upper).expect("ok"),
            "ID        NAMES\nabc       web\n"
        );
        assert_eq!(
            render_format("{{.ID}}: {{.Names}}", &rows, &upper).expect("ok"),
            "abc: web\n"
        );
    }

    #[test]
    fn ellipsis_counts_characters() {
        assert_eq!(
            ellipsis("sleep 1000000000000000000", 20),
            "sleep 1000000000000…"
        );
        assert_eq!(ellipsis("sh", 20), "sh");
    }
}
