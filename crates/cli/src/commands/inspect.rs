//! `inspect`: containers first, then images, as the untyped `docker inspect` looks them up.
//! Without `--format` the daemon's JSON is printed as it came, re-indented like Go's
//! `json.MarshalIndent(v, "", "    ")`; keeping the daemon's bytes keeps its field order and
//! any field berth's types do not know.

use anyhow::{anyhow, Result};
use berth_api::client::Client;
use serde_json::Value;

use super::path_segment;
use crate::cli::InspectArgs;
use crate::template::Template;

pub fn inspect(client: &Client, args: InspectArgs) -> Result<i32> {
    let kind = args.kind.as_deref();
    if let Some(k) = kind {
        if k != "container" && k != "image" {
            return Err(anyhow!("\"{k}\" is not a valid value for --type"));
        }
    }
    let template = args
        .format
        .as_deref()
        .map(|f| Template::parse(&f.replace("\\t", "\t").replace("\\n", "\n")))
        .transpose()?;
    let mut found: Vec<Vec<u8>> = Vec::new();
    let mut failed = false;
    for name in &args.names {
        match lookup(client, name, kind)? {
            Some(raw) => found.push(raw),
            None => {
                let what = match kind {
                    Some("container") => "container",
                    Some("image") => "image",
                    _ => "object",
                };
                eprintln!("Error: No such {what}: {name}");
                failed = true;
            }
        }
    }
    match &template {
        Some(t) => {
            for raw in &found {
                let v: Value = serde_json::from_slice(raw)?;
                println!("{}", t.render(&v)?);
            }
        }
        None => {
            let items: Vec<String> = found.iter().map(|raw| indent_json(raw, 1)).collect();
            if items.is_empty() {
                println!("[]");
            } else {
                println!("[\n    {}\n]", items.join(",\n    "));
            }
        }
    }
    // docker inspect exits 1 when a name matched nothing.
    Ok(if failed { 1 } else { 0 })
}

/// The raw JSON of `name` as a container, else as an image; `None` when neither exists.
fn lookup(client: &Client, name: &str, kind: Option<&str>) -> Result<Option<Vec<u8>>> {
    let paths: &[&str] = match kind {
        Some("container") => &["containers"],
        Some("image") => &["images"],
        _ => &["containers", "images"],
    };
    for p in paths {
        match client
            .get(format!("/{p}/{}/json", path_segment(name)))
            .send()
        {
            Ok(resp) => return Ok(Some(resp.bytes()?)),
            Err(e) if e.status() == Some(404) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Ok(None)
}

/// Re-indents compact or pretty JSON text with four spaces per level, starting at `level`
/// (the first line is not indented: the caller places it), `": "` after keys and `{}`/`[]`
/// for empty containers, as Go's `MarshalIndent`. Strings are copied byte for byte.
pub fn indent_json(raw: &[u8], level: usize) -> String {
    let text = String::from_utf8_lossy(raw);
    let mut out = String::with_capacity(text.len() * 2);
    let mut depth = level;
    let mut chars = text.chars().peekable();
    let newline = |out: &mut String, depth: usize| {
        out.push('\n');
        for _ in 0..depth {
            out.push_str("    ");
        }
    };
    while let Some(c) = chars.next() {
        match c {
            '"' => {
                out.push('"');
                while let Some(s) = chars.next() {
                    out.push(s);
                    if s == '\\' {
                        if let Some(e) = chars.next() {
                            out.push(e);
                        }
                    } else if s == '"' {
                        break;
                    }
                }
            }
            '{' | '[' => {
                let close = if c == '{' { '}' } else { ']' };
                while chars.peek().is_some_and(|n| n.is_whitespace()) {
                    chars.next();
                }
                if chars.peek() == Some(&close) {
                    chars.next();
                    out.push(c);
                    out.push(close);
                } else {
                    out.push(c);
                    depth += 1;
                    newline(&mut out, depth);
                }
            }
            '}' | ']' => {
                depth = depth.saturating_sub(1);
                newline(&mut out, depth);
                out.push(c);
            }
            ',' => {
                out.push(',');
                newline(&mut out, depth);
            }
            ':' => out.push_str(": "),
            c if c.is_whitespace() => {}
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn indents_like_go_and_keeps_order() {
        let raw =
            br#"{"Id":"x","Args":[],"Config":{"Env":["A=1","B=\"q\", {x}"],"Labels":{}},"N":1}"#;
        assert_eq!(
            indent_json(raw, 0),
            "{\n    \"Id\": \"x\",\n    \"Args\": [],\n    \"Config\": {\n        \"Env\": [\n            \"A=1\",\n            \"B=\\\"q\\\", {x}\"\n        ],\n        \"Labels\": {}\n    },\n    \"N\": 1\n}"
        );
    }

    #[test]
    fn nested_level_for_the_array_wrapper() {
        assert_eq!(indent_json(br#"{"a":1}"#, 1), "{\n        \"a\": 1\n    }");
    }
}
