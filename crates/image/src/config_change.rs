//! `--change` options (`docker import --change`, `docker commit --change`): Dockerfile
//! instructions that edit an image's runtime config.
//!
//! Supported, as Docker supports them for import: CMD, ENTRYPOINT, ENV, EXPOSE, LABEL,
//! STOPSIGNAL, USER, VOLUME, WORKDIR. The syntax is the Dockerfile's (moby buildkit
//! `frontend/dockerfile/parser` and `instructions`):
//! - CMD and ENTRYPOINT take a JSON array (exec form) or a string run by
//!   `/bin/sh -c` (shell form); anything starting with `[` that is not a JSON array of
//!   strings is shell form, as in Docker.
//! - ENV and LABEL take `key=value` pairs (values may be quoted) or the legacy
//!   `key value with spaces`.
//! - VOLUME takes a JSON array or space-separated paths; EXPOSE takes `port[/proto]`
//!   and `start-end[/proto]`.
//! - `$VAR` and `${VAR}` in ENV, LABEL, WORKDIR, USER, EXPOSE, VOLUME and STOPSIGNAL
//!   expand from the ENV set so far; `'...'` suppresses it, `\$` escapes it.
//! - ENTRYPOINT clears a CMD that did not come from an earlier change (Dockerfile rule:
//!   an inherited CMD belongs to the old entrypoint).

use std::collections::BTreeMap;

use crate::manifest::ContainerConfig;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChangeError {
    #[error("--change {change:?}: {instruction} is not a valid change command; use one of CMD, ENTRYPOINT, ENV, EXPOSE, LABEL, STOPSIGNAL, USER, VOLUME, WORKDIR")]
    Unsupported { change: String, instruction: String },
    #[error("--change {change:?}: {what}")]
    Invalid { change: String, what: String },
}

/// Applies `changes` in order to `config`.
pub fn apply_changes(config: &mut ContainerConfig, changes: &[String]) -> Result<(), ChangeError> {
    let mut cmd_set = false;
    for change in changes {
        apply_change(config, change, &mut cmd_set)?;
    }
    Ok(())
}

fn apply_change(
    config: &mut ContainerConfig,
    change: &str,
    cmd_set: &mut bool,
) -> Result<(), ChangeError> {
    let invalid = |what: &str| ChangeError::Invalid {
        change: change.to_owned(),
        what: what.to_owned(),
    };
    let line = change.trim();
    let (instruction, rest) = line
        .split_once(char::is_whitespace)
        .map_or((line, ""), |(i, r)| (i, r.trim()));
    let instruction = instruction.to_ascii_uppercase();
    if instruction.is_empty() {
        return Err(invalid("empty change"));
    }
    let supported = [
        "CMD",
        "ENTRYPOINT",
        "ENV",
        "EXPOSE",
        "LABEL",
        "STOPSIGNAL",
        "USER",
        "VOLUME",
        "WORKDIR",
    ];
    if !supported.contains(&instruction.as_str()) {
        return Err(ChangeError::Unsupported {
            change: change.to_owned(),
            instruction,
        });
    }
    if rest.is_empty() {
        return Err(invalid(&format!("{instruction} requires an argument")));
    }
    let env = env_map(config.env.as_deref().unwrap_or_default());
    let bad = |e: String| invalid(&e);
    match instruction.as_str() {
        "CMD" => {
            config.cmd = Some(command(rest));
            *cmd_set = true;
        }
        "ENTRYPOINT" => {
            config.entrypoint = Some(command(rest));
            if !*cmd_set {
                config.cmd = None;
            }
        }
        "ENV" => {
            let pairs = name_values(rest, &env).map_err(bad)?;
            let mut vars = config.env.take().unwrap_or_default();
            for (k, v) in pairs {
                // Replaced in place, as Docker keeps a variable's position.
                let prefix = format!("{k}=");
                let entry = format!("{k}={v}");
                match vars.iter_mut().find(|e| e.starts_with(&prefix) || **e == k) {
                    Some(existing) => *existing = entry,
                    None => vars.push(entry),
                }
            }
            config.env = Some(vars);
        }
        "LABEL" => {
            let pairs = name_values(rest, &env).map_err(bad)?;
            config
                .labels
                .get_or_insert_with(BTreeMap::new)
                .extend(pairs);
        }
        "EXPOSE" => {
            let ports = config.exposed_ports.get_or_insert_with(BTreeMap::new);
            for word in words(rest, &env).map_err(bad)? {
                for port in expand_ports(&word).map_err(bad)? {
                    ports.insert(port, serde_json::json!({}));
                }
            }
        }
        "VOLUME" => {
            let paths = match json_array(rest) {
                Some(paths) => paths,
                None => words(rest, &env).map_err(bad)?,
            };
            let volumes = config.volumes.get_or_insert_with(BTreeMap::new);
            for p in paths {
                let p = p.trim();
                if p.is_empty() {
                    return Err(invalid("VOLUME specified can not be an empty string"));
                }
                volumes.insert(p.to_owned(), serde_json::json!({}));
            }
        }
        "WORKDIR" => {
            let dir = expand(rest, &env).map_err(bad)?;
            let base = config.working_dir.as_deref().unwrap_or("/");
            let joined = if dir.starts_with('/') {
                dir
            } else {
                format!("{base}/{dir}")
            };
            config.working_dir = Some(clean_path(&joined));
        }
        "USER" => config.user = Some(expand(rest, &env).map_err(bad)?),
        "STOPSIGNAL" => config.stop_signal = Some(expand(rest, &env).map_err(bad)?),
        _ => {
            return Err(ChangeError::Unsupported {
                change: change.to_owned(),
                instruction,
            })
        }
    }
    Ok(())
}

/// Exec form if `rest` is a JSON array of strings, else shell form.
fn command(rest: &str) -> Vec<String> {
    json_array(rest).unwrap_or_else(|| vec!["/bin/sh".into(), "-c".into(), rest.to_owned()])
}

fn json_array(rest: &str) -> Option<Vec<String>> {
    if !rest.starts_with('[') {
        return None;
    }
    serde_json::from_str(rest).ok()
}

fn env_map(env: &[String]) -> BTreeMap<String, String> {
    env.iter()
        .map(|e| match e.split_once('=') {
            Some((k, v)) => (k.to_owned(), v.to_owned()),
            None => (e.clone(), String::new()),
        })
        .collect()
}

/// `k=v k2="v 2"`, or the legacy `key value with spaces`.
fn name_values(
    rest: &str,
    env: &BTreeMap<String, String>,
) -> Result<Vec<(String, String)>, String> {
    let first = rest.split_whitespace().next().unwrap_or("");
    if !first.contains('=') {
        let (key, value) = rest
            .split_once(char::is_whitespace)
            .ok_or_else(|| format!("{rest:?} needs a value: use key=value"))?;
        return Ok(vec![(key.to_owned(), expand(value.trim(), env)?)]);
    }
    words(rest, env)?
        .into_iter()
        .map(|w| match w.split_once('=') {
            Some((k, v)) if !k.is_empty() => Ok((k.to_owned(), v.to_owned())),
            _ => Err(format!("{w:?} is not key=value")),
        })
        .collect()
}

/// One word, quotes and `$VAR`s processed, whitespace kept.
fn expand(s: &str, env: &BTreeMap<String, String>) -> Result<String, String> {
    Ok(lex(s, env, false)?.concat())
}

/// Whitespace-separated words, quotes and `$VAR`s processed.
fn words(s: &str, env: &BTreeMap<String, String>) -> Result<Vec<String>, String> {
    lex(s, env, true)
}

/// The Dockerfile word lexer (moby `shell.Lex`), without the `${VAR:-default}` forms.
fn lex(s: &str, env: &BTreeMap<String, String>, split: bool) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            c if split && c.is_whitespace() => {
                if in_word {
                    out.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            '\'' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(c) => word.push(c),
                        None => return Err("unterminated single quote".into()),
                    }
                }
            }
            '"' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => match chars.next() {
                            Some(e @ ('"' | '\\' | '$')) => word.push(e),
                            Some(other) => {
                                word.push('\\');
                                word.push(other);
                            }
                            None => return Err("unterminated double quote".into()),
                        },
                        Some('$') => word.push_str(&variable(&mut chars, env)?),
                        Some(c) => word.push(c),
                        None => return Err("unterminated double quote".into()),
                    }
                }
            }
            '\\' => {
                in_word = true;
                if let Some(e) = chars.next() {
                    word.push(e);
                }
            }
            '$' => {
                in_word = true;
                word.push_str(&variable(&mut chars, env)?);
            }
            c => {
                in_word = true;
                word.push(c);
            }
        }
    }
    if in_word || !split {
        out.push(word);
    }
    Ok(out)
}

/// After a `$`: `NAME` or `{NAME}`; unset expands to nothing, a lone `$` stays.
fn variable(
    chars: &mut std::iter::Peekable<std::str::Chars<'_>>,
    env: &BTreeMap<String, String>,
) -> Result<String, String> {
    let is_name = |c: &char| c.is_ascii_alphanumeric() || *c == '_';
    let mut name = String::new();
    if chars.peek() == Some(&'{') {
        chars.next();
        loop {
            match chars.next() {
                Some('}') => break,
                Some(c) if is_name(&c) => name.push(c),
                Some(c) => return Err(format!("unsupported {c:?} in ${{...}}")),
                None => return Err("missing '}'".into()),
            }
        }
    } else {
        while let Some(c) = chars.peek().copied().filter(is_name) {
            name.push(c);
            chars.next();
        }
        if name.is_empty() {
            return Ok("$".into());
        }
    }
    Ok(env.get(&name).cloned().unwrap_or_default())
}

/// `80`, `80/udp`, `8000-8002/tcp` to `80/tcp`-style keys.
fn expand_ports(spec: &str) -> Result<Vec<String>, String> {
    let (range, proto) = spec.split_once('/').unwrap_or((spec, "tcp"));
    let proto = proto.to_ascii_lowercase();
    if !["tcp", "udp", "sctp"].contains(&proto.as_str()) {
        return Err(format!("invalid protocol {proto:?} in {spec:?}"));
    }
    let port = |p: &str| {
        p.parse::<u16>()
            .map_err(|_| format!("invalid port {p:?} in {spec:?}"))
    };
    let (start, end) = match range.split_once('-') {
        Some((a, b)) => (port(a)?, port(b)?),
        None => (port(range)?, port(range)?),
    };
    if end < start {
        return Err(format!("invalid port range {spec:?}"));
    }
    Ok((start..=end).map(|p| format!("{p}/{proto}")).collect())
}

/// Go's `path.Clean` for absolute paths: no `.`, `..` or repeated `/`.
fn clean_path(p: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for part in p.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            other => parts.push(other),
        }
    }
    format!("/{}", parts.join("/"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn apply(changes: &[&str]) -> Result<ContainerConfig, ChangeError> {
        let mut c = ContainerConfig::default();
        let changes: Vec<String> = changes.iter().map(|s| s.to_string()).collect();
        apply_changes(&mut c, &changes).map(|()| c)
    }

    fn v(s: &[&str]) -> Vec<String> {
        s.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn cmd_and_entrypoint_forms() {
        let c = apply(&[r#"CMD ["nginx", "-g", "daemon off;"]"#]).unwrap();
        assert_eq!(c.cmd.unwrap(), v(&["nginx", "-g", "daemon off;"]));
        let c = apply(&["cmd echo $HOME && ls"]).unwrap();
        assert_eq!(c.cmd.unwrap(), v(&["/bin/sh", "-c", "echo $HOME && ls"]));
        // Not a JSON string array: shell form, as Docker does.
        let c = apply(&["CMD [1, 2]"]).unwrap();
        assert_eq!(c.cmd.unwrap(), v(&["/bin/sh", "-c", "[1, 2]"]));
        // ENTRYPOINT after CMD keeps it; before (or alone) it clears it.
        let c = apply(&[r#"CMD ["-x"]"#, r#"ENTRYPOINT ["/app"]"#]).unwrap();
        assert_eq!(
            (c.entrypoint.unwrap(), c.cmd.unwrap()),
            (v(&["/app"]), v(&["-x"]))
        );
        let mut c = ContainerConfig {
            cmd: Some(v(&["inherited"])),
            ..ContainerConfig::default()
        };
        apply_changes(&mut c, &["ENTRYPOINT /app run".to_owned()]).unwrap();
        assert_eq!(c.entrypoint.unwrap(), v(&["/bin/sh", "-c", "/app run"]));
        assert!(c.cmd.is_none());
    }

    #[test]
    fn env_and_labels() {
        let c = apply(&[
            "ENV PATH=/usr/bin:/bin HOME=/root",
            r#"ENV GREETING="hello world" EMPTY= ESC=a\ b"#,
            "ENV LEGACY value with  spaces",
            "ENV PATH=/opt/bin:$PATH",
            "ENV SINGLE='$HOME' BRACED=${HOME}/x",
        ])
        .unwrap();
        assert_eq!(
            c.env.unwrap(),
            v(&[
                "PATH=/opt/bin:/usr/bin:/bin",
                "HOME=/root",
                "GREETING=hello world",
                "EMPTY=",
                "ESC=a b",
                "LEGACY=value with  spaces",
                "SINGLE=$HOME",
                "BRACED=/root/x",
            ])
        );
        let c = apply(&[
            r#"LABEL org.opencontainers.image.title="my app" version=1.0"#,
            "LABEL maintainer someone@example.com",
        ])
        .unwrap();
        let labels = c.labels.unwrap();
        assert_eq!(labels["org.opencontainers.image.title"], "my app");
        assert_eq!(labels["version"], "1.0");
        assert_eq!(labels["maintainer"], "someone@example.com");
        assert!(apply(&["ENV novalue"]).is_err());
        assert!(apply(&[r#"ENV A="unterminated"#]).is_err());
        assert!(apply(&["LABEL a=1 =2"]).is_err());
    }

    #[test]
    fn workdir_user_expose_volume_stopsignal() {
        let c = apply(&[
            "ENV BASE=/srv",
            "WORKDIR $BASE/app",
            "WORKDIR sub/../data",
            "USER 1000:1000",
            "EXPOSE 80 53/udp 8000-8002/TCP",
            r#"VOLUME ["/data", "/var/log"]"#,
            "VOLUME /cache /tmp/x",
            "stopsignal SIGQUIT",
        ])
        .unwrap();
        assert_eq!(c.working_dir.as_deref(), Some("/srv/app/data"));
        assert_eq!(c.user.as_deref(), Some("1000:1000"));
        let ports: Vec<&String> = c.exposed_ports.as_ref().unwrap().keys().collect();
        assert_eq!(
            ports,
            ["53/udp", "80/tcp", "8000/tcp", "8001/tcp", "8002/tcp"]
        );
        let vols: Vec<&String> = c.volumes.as_ref().unwrap().keys().collect();
        assert_eq!(vols, ["/cache", "/data", "/tmp/x", "/var/log"]);
        assert_eq!(c.stop_signal.as_deref(), Some("SIGQUIT"));
        let c = apply(&["WORKDIR rel"]).unwrap();
        assert_eq!(c.working_dir.as_deref(), Some("/rel"));
    }

    #[test]
    fn bad_changes_are_refused() {
        assert!(matches!(
            apply(&["RUN rm -rf /"]),
            Err(ChangeError::Unsupported { .. })
        ));
        assert!(matches!(
            apply(&["FROM scratch"]),
            Err(ChangeError::Unsupported { .. })
        ));
        for bad in [
            "",
            "CMD",
            "EXPOSE 70000",
            "EXPOSE 80/icmp",
            "EXPOSE 90-80",
            r#"VOLUME [""]"#,
        ] {
            assert!(
                matches!(apply(&[bad]), Err(ChangeError::Invalid { .. })),
                "{bad:?}"
            );
        }
        let err = apply(&["EXPOSE http"]).unwrap_err().to_string();
        assert!(
            err.contains("EXPOSE http") && err.contains("invalid port"),
            "{err}"
        );
    }
}
