//! `run`/`create` flags -> the `POST /containers/create` body, as the docker CLI builds it
//! (docker/cli `cli/command/container/opts.go` `parse`). Pure: the host's environment, the
//! `--env-file` contents, the working directory and the terminal size come in as arguments.

use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};

use berth_api::container::{
    BindOptions, ContainerConfig, ContainerCreateRequest, EmptyObject, HostConfig, Mount,
    RestartPolicy, StringSet, TmpfsOptions, VolumeDriverConfig, VolumeOptions,
};

use crate::cli::ContainerOpts;
use crate::port_spec::parse_port_specs;
use crate::reference::Reference;

/// What the host contributes to a create request.
pub struct HostContext<'a> {
    /// `$KEY` lookups for `-e KEY` and bare keys in env files.
    pub lookup_env: &'a dyn Fn(&str) -> Option<String>,
    /// The contents of each `--env-file`, in flag order.
    pub env_files: Vec<String>,
    /// To make `./dir:/dst` bind sources absolute.
    pub cwd: PathBuf,
    /// `[rows, cols]` of the user's terminal, when `-t` and stdout is one.
    pub console_size: Option<[u32; 2]>,
}

/// A create request ready to send.
#[derive(Debug, Clone, PartialEq)]
pub struct CreatePlan {
    pub name: Option<String>,
    /// The parsed image, for the pull that follows a "No such image".
    pub image: Reference,
    pub request: ContainerCreateRequest,
}

/// Builds the request. `run` says whether this is `run` (which sets `StdinOnce` and, with
/// `-d`, attaches nothing) rather than `create`.
pub fn build(
    opts: &ContainerOpts,
    run: bool,
    detach: bool,
    host: &HostContext<'_>,
) -> Result<CreatePlan, String> {
    let (image, command) = opts
        .image_and_command
        .split_first()
        .ok_or_else(|| "requires at least 1 argument".to_owned())?;
    let image_ref = Reference::parse(image)?;

    let (exposed, port_bindings) = parse_port_specs(&opts.publish)?;
    let env = parse_env(&host.env_files, &opts.env, host.lookup_env)?;
    let (binds, volumes) = parse_volumes(&opts.volume, &host.cwd)?;
    let mounts = opts
        .mount
        .iter()
        .map(|m| parse_mount(m))
        .collect::<Result<Vec<_>, _>>()?;
    let tmpfs = parse_tmpfs(&opts.tmpfs)?;
    let restart_policy = parse_restart_policy(opts.restart.as_deref().unwrap_or("no"))?;
    if opts.rm && !matches!(restart_policy.name.as_str(), "" | "no") {
        return Err("conflicting options: cannot specify both --restart and --rm".into());
    }
    let labels = opts
        .label
        .iter()
        .map(|l| match l.split_once('=') {
            Some((k, v)) => (k.to_owned(), v.to_owned()),
            None => (l.clone(), String::new()),
        })
        .collect::<BTreeMap<_, _>>();
    let entrypoint = opts.entrypoint.as_ref().map(|e| vec![e.clone()]);
    let attach = !(run && detach);

    let config = ContainerConfig {
        hostname: opts.hostname.clone().unwrap_or_default(),
        user: opts.user.clone().unwrap_or_default(),
        attach_stdin: attach && opts.interactive,
        attach_stdout: attach,
        attach_stderr: attach,
        exposed_ports: (!exposed.is_empty()).then_some(exposed),
        tty: opts.tty,
        open_stdin: opts.interactive,
        // Docker closes the container's stdin when the one attached client detaches from it.
        stdin_once: run && !detach && opts.interactive,
        env,
        cmd: (!command.is_empty()).then(|| command.to_vec()),
        image: image.clone(),
        volumes: (!volumes.is_empty()).then_some(volumes),
        working_dir: opts.workdir.clone().unwrap_or_default(),
        entrypoint,
        labels,
        stop_signal: opts.stop_signal.clone().unwrap_or_default(),
        stop_timeout: opts.stop_timeout,
        ..ContainerConfig::default()
    };
    let host_config = HostConfig {
        binds,
        mounts,
        tmpfs,
        network_mode: opts.network.clone().unwrap_or_else(|| "default".into()),
        port_bindings,
        restart_policy,
        auto_remove: opts.rm,
        publish_all_ports: opts.publish_all,
        console_size: if opts.tty { host.console_size } else { None },
        ..HostConfig::default()
    };
    Ok(CreatePlan {
        name: opts.name.clone(),
        image: image_ref,
        request: ContainerCreateRequest {
            config,
            host_config,
            ..ContainerCreateRequest::default()
        },
    })
}

/// Docker's `ReadKVEnvStrings`: env files first, then `-e`; `KEY` alone copies the
/// variable from this environment, or is dropped when it is not set.
pub fn parse_env(
    files: &[String],
    flags: &[String],
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    let mut one = |raw: &str, from_file: bool| -> Result<(), String> {
        let (key, value) = match raw.split_once('=') {
            Some((k, v)) => (k, Some(v)),
            None => (raw, None),
        };
        if key.is_empty() {
            return Err(format!("invalid environment variable: {raw}"));
        }
        if from_file && key.contains(char::is_whitespace) {
            return Err(format!("variable '{key}' contains whitespaces"));
        }
        match value {
            Some(_) => out.push(raw.to_owned()),
            None => {
                if let Some(v) = lookup(key) {
                    out.push(format!("{key}={v}"));
                }
            }
        }
        Ok(())
    };
    for content in files {
        for line in content.lines() {
            let line = line.trim_start();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            one(line, true)?;
        }
    }
    for e in flags {
        one(e, false)?;
    }
    Ok(out)
}

/// `-v` values -> (`HostConfig.Binds`, `Config.Volumes`). `/dst` alone is an anonymous
/// volume; `src:dst[:opts]` a bind or named volume. Relative sources (`./data`) are made
/// absolute, as docker 23+ does.
pub fn parse_volumes(specs: &[String], cwd: &Path) -> Result<(Vec<String>, StringSet), String> {
    let mut binds = Vec::new();
    let mut volumes = StringSet::new();
    for spec in specs {
        let parts: Vec<&str> = spec.split(':').collect();
        let invalid = |why: &str| format!("invalid volume specification: '{spec}': {why}");
        match parts.as_slice() {
            [dst] => {
                if !dst.starts_with('/') {
                    return Err(invalid(&format!(
                        "invalid mount path: '{dst}' mount path must be absolute"
                    )));
                }
                volumes.insert((*dst).to_owned(), EmptyObject {});
            }
            [src, dst, rest @ ..] if rest.len() <= 1 => {
                if src.is_empty() {
                    return Err(invalid("empty section between colons"));
                }
                if !dst.starts_with('/') {
                    return Err(invalid(&format!(
                        "invalid mount path: '{dst}' mount path must be absolute"
                    )));
                }
                let src = if *src == "." || src.starts_with("./") || src.starts_with("../") {
                    normalize(&cwd.join(src)).display().to_string()
                } else {
                    (*src).to_owned()
                };
                let mut bind = format!("{src}:{dst}");
                if let Some(mode) = rest.first() {
                    bind.push(':');
                    bind.push_str(mode);
                }
                binds.push(bind);
            }
            _ => return Err(format!("invalid volume specification: '{spec}'")),
        }
    }
    Ok((binds, volumes))
}

/// Go's `strconv.ParseBool`, which the docker CLI uses for `--mount` flags.
fn parse_bool(key: &str, value: &str) -> Result<bool, String> {
    match value {
        "1" | "t" | "T" | "true" | "TRUE" | "True" => Ok(true),
        "0" | "f" | "F" | "false" | "FALSE" | "False" => Ok(false),
        _ => Err(format!("invalid value for {key}: {value}")),
    }
}

/// go-units `RAMInBytes`: `64m`, `1g`, `512k`, `100` (binary multiples, `b`/`ib` optional).
fn ram_in_bytes(text: &str) -> Result<i64, String> {
    let lower = text.trim().to_ascii_lowercase();
    let unit_start = lower
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(lower.len());
    let (number, unit) = lower.split_at(unit_start);
    let value: f64 = number
        .parse()
        .map_err(|_| format!("invalid size: '{text}'"))?;
    let shift = match unit.trim_end_matches("ib").trim_end_matches('b') {
        "" => 0,
        "k" => 10,
        "m" => 20,
        "g" => 30,
        "t" => 40,
        "p" => 50,
        _ => return Err(format!("invalid size: '{text}'")),
    };
    Ok((value * (1u64 << shift) as f64) as i64)
}

/// One `--mount` value as the docker CLI's `MountOpt` reads it: comma-separated `key=value`
/// (`type`, `source`/`src`, `target`/`dst`/`destination`, `readonly`/`ro`,
/// `bind-propagation`, `volume-nocopy`, `volume-label`, `volume-driver`, `volume-opt`,
/// `tmpfs-size`, `tmpfs-mode`); `type` defaults to `volume`. The type itself is checked by
/// the daemon, as with docker.
pub fn parse_mount(value: &str) -> Result<Mount, String> {
    let mut m = Mount {
        kind: "volume".to_owned(),
        ..Mount::default()
    };
    let mut volume = VolumeOptions::default();
    let mut tmpfs = TmpfsOptions::default();
    let mut bind = BindOptions::default();
    let mut driver: Option<VolumeDriverConfig> = None;
    for field in value.split(',').filter(|f| !f.is_empty()) {
        let (key, val) = match field.split_once('=') {
            Some((k, v)) => (k.trim().to_ascii_lowercase(), Some(v)),
            None => (field.trim().to_ascii_lowercase(), None),
        };
        let need = |v: Option<&str>| {
            v.map(str::to_owned)
                .ok_or_else(|| format!("invalid field '{field}' must be a key=value pair"))
        };
        match key.as_str() {
            "readonly" | "ro" => m.read_only = val.map_or(Ok(true), |v| parse_bool(&key, v))?,
            "volume-nocopy" => volume.no_copy = val.map_or(Ok(true), |v| parse_bool(&key, v))?,
            "type" => m.kind = need(val)?.to_ascii_lowercase(),
            "source" | "src" => m.source = need(val)?,
            "target" | "dst" | "destination" => m.target = need(val)?,
            "bind-propagation" => bind.propagation = need(val)?,
            "volume-label" => {
                let kv = need(val)?;
                let (k, v) = kv.split_once('=').unwrap_or((kv.as_str(), ""));
                volume.labels.insert(k.to_owned(), v.to_owned());
            }
            "volume-driver" => driver.get_or_insert_with(Default::default).name = need(val)?,
            "volume-opt" => {
                let kv = need(val)?;
                let (k, v) = kv.split_once('=').unwrap_or((kv.as_str(), ""));
                driver
                    .get_or_insert_with(Default::default)
                    .options
                    .insert(k.to_owned(), v.to_owned());
            }
            "tmpfs-size" => tmpfs.size_bytes = ram_in_bytes(&need(val)?)?,
            "tmpfs-mode" => {
                let v = need(val)?;
                tmpfs.mode = u32::from_str_radix(&v, 8)
                    .map_err(|_| format!("invalid value for {key}: {v}"))?;
            }
            "consistency" => {}
            _ => return Err(format!("unexpected key '{key}' in '{field}'")),
        }
    }
    if m.target.is_empty() {
        return Err("target is required".to_owned());
    }
    if driver.is_some() {
        volume.driver_config = driver;
    }
    match m.kind.as_str() {
        "volume" => m.volume_options = Some(volume),
        "tmpfs" => m.tmpfs_options = Some(tmpfs),
        "bind" => m.bind_options = Some(bind),
        _ => {}
    }
    Ok(m)
}

/// `--tmpfs /dst[:opts]` -> `HostConfig.Tmpfs`.
pub fn parse_tmpfs(specs: &[String]) -> Result<BTreeMap<String, String>, String> {
    let mut out = BTreeMap::new();
    for spec in specs {
        let (dst, opts) = spec.split_once(':').unwrap_or((spec.as_str(), ""));
        if !dst.starts_with('/') {
            return Err(format!(
                "invalid value \"{spec}\" for --tmpfs: mount path must be absolute"
            ));
        }
        out.insert(dst.to_owned(), opts.to_owned());
    }
    Ok(out)
}

/// `a/./b/../c` -> `a/c` without touching the filesystem (the path may not exist yet).
fn normalize(p: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out
}

/// Docker's `ParseRestartPolicy` plus the CLI's validation, with their messages.
pub fn parse_restart_policy(policy: &str) -> Result<RestartPolicy, String> {
    let (name, count) = match policy.split_once(':') {
        Some(("", _)) => {
            return Err("invalid restart policy format: no policy provided before colon".into())
        }
        Some((k, v)) => (k, Some(v)),
        None => (policy, None),
    };
    let maximum_retry_count = match count {
        Some(v) if !v.is_empty() => v.parse::<i64>().map_err(|_| {
            "invalid restart policy format: maximum retry count must be an integer".to_owned()
        })?,
        _ => 0,
    };
    match name {
        "" | "no" | "always" | "unless-stopped" => {
            if maximum_retry_count != 0 {
                return Err(
                    "invalid restart policy: maximum retry count can only be used with 'on-failure'"
                        .into(),
                );
            }
        }
        "on-failure" => {
            if maximum_retry_count < 0 {
                return Err(
                    "invalid restart policy: maximum retry count cannot be negative".into(),
                );
            }
        }
        other => {
            return Err(format!(
                "invalid restart policy: unknown policy '{other}'; use one of 'no', 'always', \
                 'on-failure', or 'unless-stopped'"
            ))
        }
    }
    Ok(RestartPolicy {
        name: if name.is_empty() {
            "no".into()
        } else {
            name.into()
        },
        maximum_retry_count,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    #[command(disable_help_flag = true)]
    struct T {
        #[command(flatten)]
        opts: ContainerOpts,
    }

    fn opts(args: &[&str]) -> ContainerOpts {
        T::try_parse_from(std::iter::once("run").chain(args.iter().copied()))
            .expect("parses")
            .opts
    }

    fn host<'a>(lookup: &'a dyn Fn(&str) -> Option<String>) -> HostContext<'a> {
        HostContext {
            lookup_env: lookup,
            env_files: Vec::new(),
            cwd: PathBuf::from("/home/u/proj"),
            console_size: Some([40, 120]),
        }
    }

    #[test]
    fn interactive_run_like_the_docker_capture() {
        let lookup = |k: &str| (k == "HOME").then(|| "/root".to_owned());
        let o = opts(&[
            "-it",
            "-p",
            "8888:8888",
            "--name",
            "X",
            "-v",
            "myvol:/data",
            "-v",
            "/anon",
            "-e",
            "FOO=bar",
            "-e",
            "HOME",
            "-e",
            "UNSET",
            "bb",
            "sh",
            "-c",
            "echo hi",
        ]);
        let plan = build(&o, true, false, &host(&lookup)).expect("valid");
        assert_eq!(plan.name.as_deref(), Some("X"));
        assert_eq!(plan.image.familiar_string(), "bb:latest");
        let c = &plan.request.config;
        assert!(c.attach_stdin && c.attach_stdout && c.attach_stderr);
        assert!(c.tty && c.open_stdin && c.stdin_once);
        assert_eq!(c.image, "bb");
        assert_eq!(
            c.cmd.as_deref(),
            Some(&["sh".to_owned(), "-c".into(), "echo hi".into()][..])
        );
        assert_eq!(c.env, vec!["FOO=bar", "HOME=/root"]);
        assert!(c
            .exposed_ports
            .as_ref()
            .expect("exposed")
            .contains_key("8888/tcp"));
        assert!(c.volumes.as_ref().expect("anon").contains_key("/anon"));
        let h = &plan.request.host_config;
        assert_eq!(h.binds, vec!["myvol:/data"]);
        assert_eq!(h.network_mode, "default");
        assert_eq!(h.restart_policy.name, "no");
        assert_eq!(h.console_size, Some([40, 120]));
        let b = h.port_bindings["8888/tcp"].as_ref().expect("bound");
        assert_eq!(b[0].host_port, "8888");

        let json = serde_json::to_value(&plan.request).expect("encodes");
        assert_eq!(
            json["HostConfig"]["PortBindings"]["8888/tcp"][0]["HostPort"],
            "8888"
        );
        assert_eq!(json["Image"], "bb");
    }

    #[test]
    fn detached_rm_and_flags() {
        let lookup = |_: &str| None;
        let o = opts(&[
            "--rm",
            "-w",
            "/w",
            "-u",
            "1000:1000",
            "--entrypoint",
            "/bin/sh",
            "--network",
            "host",
            "-h",
            "box",
            "--stop-signal",
            "SIGINT",
            "--stop-timeout",
            "3",
            "-l",
            "a=b",
            "-l",
            "c",
            "-P",
            "alpine",
        ]);
        let plan = build(&o, true, true, &host(&lookup)).expect("valid");
        let c = &plan.request.config;
        assert!(!c.attach_stdout && !c.attach_stdin && !c.stdin_once);
        assert_eq!(c.cmd, None);
        assert_eq!(c.entrypoint.as_deref(), Some(&["/bin/sh".to_owned()][..]));
        assert_eq!(c.working_dir, "/w");
        assert_eq!(c.user, "1000:1000");
        assert_eq!(c.hostname, "box");
        assert_eq!(c.stop_signal, "SIGINT");
        assert_eq!(c.stop_timeout, Some(3));
        assert_eq!(c.labels.get("a").map(String::as_str), Some("b"));
        assert_eq!(c.labels.get("c").map(String::as_str), Some(""));
        let h = &plan.request.host_config;
        assert!(h.auto_remove && h.publish_all_ports);
        assert_eq!(h.network_mode, "host");
        assert_eq!(h.console_size, None, "only with -t");
    }

    #[test]
    fn flags_after_the_image_belong_to_the_command() {
        let o = opts(&["alpine", "ls", "-l", "--rm"]);
        assert!(!o.rm);
        assert_eq!(o.image_and_command, vec!["alpine", "ls", "-l", "--rm"]);
    }

    #[test]
    fn restart_policies() {
        let p = parse_restart_policy("on-failure:3").expect("valid");
        assert_eq!((p.name.as_str(), p.maximum_retry_count), ("on-failure", 3));
        assert_eq!(
            parse_restart_policy("always").expect("valid").name,
            "always"
        );
        assert!(parse_restart_policy("on-failure:x")
            .expect_err("bad")
            .contains("must be an integer"));
        assert!(parse_restart_policy("sometimes")
            .expect_err("bad")
            .contains("unknown policy 'sometimes'"));
        assert!(parse_restart_policy("always:2").is_err());
        let lookup = |_: &str| None;
        let o = opts(&["--rm", "--restart", "always", "alpine"]);
        assert_eq!(
            build(&o, true, false, &host(&lookup)).expect_err("conflict"),
            "conflicting options: cannot specify both --restart and --rm"
        );
    }

    #[test]
    fn env_files_then_flags() {
        let lookup = |k: &str| (k == "USER").then(|| "me".to_owned());
        let files = vec!["# comment\n\nA=1\n  USER\nMISSING\nB= spaced \n".to_owned()];
        let env = parse_env(&files, &["C=3".into()], &lookup).expect("valid");
        assert_eq!(env, vec!["A=1", "USER=me", "B= spaced ", "C=3"]);
        assert!(parse_env(&[], &["=x".into()], &lookup).is_err());
        assert!(parse_env(&["A B=1".into()], &[], &lookup).is_err());
    }

    #[test]
    fn volumes() {
        let cwd = Path::new("/home/u/proj");
        let (binds, vols) = parse_volumes(
            &[
                "./data:/d:ro".into(),
                "/h:/c".into(),
                "../x:/x".into(),
                "/anon".into(),
            ],
            cwd,
        )
        .expect("valid");
        assert_eq!(
            binds,
            vec!["/home/u/proj/data:/d:ro", "/h:/c", "/home/u/x:/x"]
        );
        assert!(vols.contains_key("/anon"));
        assert!(parse_volumes(&["a:b".into()], cwd).is_err());
        assert!(parse_volumes(&["a:/b:ro:x".into()], cwd).is_err());
        assert!(parse_volumes(&["rel".into()], cwd).is_err());
    }

    #[test]
    fn mounts_and_tmpfs() {
        let m = parse_mount("type=volume,source=data,target=/data,readonly,volume-nocopy")
            .expect("valid");
        assert_eq!((m.kind.as_str(), m.source.as_str()), ("volume", "data"));
        assert!(m.read_only);
        assert!(m.volume_options.expect("options").no_copy);
        let m =
            parse_mount("type=tmpfs,dst=/scratch,tmpfs-size=64m,tmpfs-mode=1770").expect("valid");
        let t = m.tmpfs_options.expect("options");
        assert_eq!((t.size_bytes, t.mode), (64 << 20, 0o1770));
        let m = parse_mount("target=/x").expect("valid");
        assert_eq!(m.kind, "volume");
        assert_eq!(
            parse_mount("type=bind,source=/a").expect_err("no target"),
            "target is required"
        );
        assert!(parse_mount("type=bind,bogus=1,target=/x").is_err());
        assert_eq!(
            parse_mount("type=bogus,target=/x")
                .expect("daemon decides")
                .kind,
            "bogus"
        );
        let t = parse_tmpfs(&["/run:rw,size=1m".into(), "/tmp".into()]).expect("valid");
        assert_eq!(t["/run"], "rw,size=1m");
        assert_eq!(t["/tmp"], "");
        assert!(parse_tmpfs(&["rel".into()]).is_err());
        let lookup = |_: &str| None;
        let o = opts(&[
            "--mount",
            "type=tmpfs,target=/t",
            "--tmpfs",
            "/run",
            "alpine",
        ]);
        let plan = build(&o, true, false, &host(&lookup)).expect("valid");
        assert_eq!(plan.request.host_config.mounts.len(), 1);
        assert!(plan.request.host_config.tmpfs.contains_key("/run"));
    }

    #[test]
    fn bad_image_and_ports_are_refused() {
        let lookup = |_: &str| None;
        let o = opts(&["UPPER"]);
        assert!(build(&o, true, false, &host(&lookup))
            .expect_err("bad")
            .starts_with("invalid reference format"));
        let o = opts(&["-p", "x:80", "alpine"]);
        assert_eq!(
            build(&o, true, false, &host(&lookup)).expect_err("bad"),
            "invalid hostPort: x"
        );
    }
}
