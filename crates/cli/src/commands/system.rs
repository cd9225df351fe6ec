//! `version` and `info`, laid out like the docker CLI's.

use std::fmt::Write as _;

use anyhow::Result;
use berth_api::client::{Client, API_PREFIX};
use berth_api::{Info, SystemVersion};

use crate::human::bytes_size;

/// Go's `GOARCH` name for this build, as `docker version` prints OS/Arch.
fn go_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "powerpc64" => "ppc64le",
        other => other,
    }
}

fn client_section() -> String {
    format!(
        "Client:\n Version:           {}\n API version:       {}\n OS/Arch:           {}/{}\n Context:           default\n",
        env!("CARGO_PKG_VERSION"),
        API_PREFIX.trim_start_matches("/v"),
        std::env::consts::OS,
        go_arch()
    )
}

pub fn version(client: &Client) -> Result<i32> {
    print!("{}", client_section());
    // The client section is printed even when the daemon is unreachable, as docker does.
    let v: SystemVersion = client.get_json("/version")?;
    println!();
    print!("{}", server_section(&v));
    Ok(0)
}

fn server_section(v: &SystemVersion) -> String {
    let mut s = String::new();
    let title = if v.platform.name.is_empty() {
        "Server:".to_owned()
    } else {
        format!("Server: {}", v.platform.name)
    };
    let _ = writeln!(s, "{title}");
    let engine = v.components.iter().find(|c| c.name == "Engine");
    let _ = writeln!(s, " Engine:");
    let detail = |key: &str, fallback: &str| -> String {
        engine
            .and_then(|e| e.details.get(key).cloned())
            .unwrap_or_else(|| fallback.to_owned())
    };
    let version = engine.map_or(v.version.as_str(), |e| e.version.as_str());
    let _ = writeln!(s, "  Version:          {version}");
    let _ = writeln!(
        s,
        "  API version:      {} (minimum version {})",
        detail("ApiVersion", &v.api_version),
        detail("MinAPIVersion", &v.min_api_version)
    );
    let _ = writeln!(
        s,
        "  Go version:       {}",
        detail("GoVersion", &v.go_version)
    );
    let _ = writeln!(
        s,
        "  Git commit:       {}",
        detail("GitCommit", &v.git_commit)
    );
    let _ = writeln!(
        s,
        "  Built:            {}",
        detail("BuildTime", &v.build_time)
    );
    let _ = writeln!(
        s,
        "  OS/Arch:          {}/{}",
        detail("Os", &v.os),
        detail("Arch", &v.arch)
    );
    let _ = writeln!(
        s,
        "  Experimental:     {}",
        detail("Experimental", &v.experimental.to_string())
    );
    for c in v.components.iter().filter(|c| c.name != "Engine") {
        let _ = writeln!(s, " {}:", c.name);
        let _ = writeln!(s, "  Version:          {}", c.version);
        for (k, val) in &c.details {
            let _ = writeln!(s, "  {:<17} {val}", format!("{k}:"));
        }
    }
    s
}

pub fn info(client: &Client) -> Result<i32> {
    println!(
        "Client:\n Version:    {}\n Context:    default\n Debug Mode: false\n",
        env!("CARGO_PKG_VERSION")
    );
    let info: Info = client.get_json("/info")?;
    print!("{}", server_info(&info));
    for w in &info.warnings {
        eprintln!("{w}");
    }
    Ok(0)
}

fn server_info(i: &Info) -> String {
    let mut s = String::from("Server:\n");
    let mut line = |k: &str, v: &dyn std::fmt::Display| {
        let _ = writeln!(s, " {k}: {v}");
    };
    line("Containers", &i.containers);
    line(" Running", &i.containers_running);
    line(" Paused", &i.containers_paused);
    line(" Stopped", &i.containers_stopped);
    line("Images", &i.images);
    line("Server Version", &i.server_version);
    line("Storage Driver", &i.driver);
    for [k, v] in &i.driver_status {
        line(&format!(" {k}"), v);
    }
    line("Logging Driver", &i.logging_driver);
    line("Cgroup Driver", &i.cgroup_driver);
    line("Cgroup Version", &i.cgroup_version);
    let runtimes: Vec<&str> = i.runtimes.keys().map(String::as_str).collect();
    line("Runtimes", &runtimes.join(" "));
    line("Default Runtime", &i.default_runtime);
    line("Kernel Version", &i.kernel_version);
    line("Operating System", &i.operating_system);
    line("OSType", &i.os_type);
    line("Architecture", &i.architecture);
    line("CPUs", &i.ncpu);
    line("Total Memory", &bytes_size(i.mem_total as f64));
    line("Name", &i.name);
    line("ID", &i.id);
    line("Docker Root Dir", &i.docker_root_dir);
    line("Debug Mode", &i.debug);
    line("Experimental", &i.experimental_build);
    line("Live Restore Enabled", &i.live_restore_enabled);
    if !i.security_options.is_empty() {
        let _ = writeln!(s, " Security Options:");
        for o in &i.security_options {
            // `name=seccomp,profile=builtin` -> `seccomp` with `Profile: builtin` below.
            for (n, kv) in o.split(',').enumerate() {
                let (k, v) = kv.split_once('=').unwrap_or(("", kv));
                if n == 0 {
                    let _ = writeln!(s, "  {v}");
                } else {
                    let mut key = k.to_owned();
                    if let Some(f) = key.get_mut(..1) {
                        f.make_ascii_uppercase();
                    }
                    let _ = writeln!(s, "   {key}: {v}");
                }
            }
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use berth_api::ComponentVersion;

    #[test]
    fn server_section_prefers_engine_details() {
        let mut v = SystemVersion {
            version: "0.1.0".into(),
            api_version: "1.44".into(),
            min_api_version: "1.24".into(),
            os: "linux".into(),
            arch: "amd64".into(),
            ..SystemVersion::default()
        };
        v.platform.name = "berth".into();
        let mut e = ComponentVersion {
            name: "Engine".into(),
            version: "0.1.0".into(),
            ..ComponentVersion::default()
        };
        e.details.insert("GoVersion".into(), "rustc 1.80".into());
        v.components.push(e);
        let s = server_section(&v);
        assert!(
            s.starts_with("Server: berth\n Engine:\n  Version:          0.1.0\n"),
            "{s}"
        );
        assert!(s.contains("  API version:      1.44 (minimum version 1.24)\n"));
        assert!(s.contains("  Go version:       rustc 1.80\n"));
        assert!(s.contains("  OS/Arch:          linux/amd64\n"));
    }

    #[test]
    fn info_lists_counts_and_security_options() {
        let i = Info {
            containers: 3,
            containers_running: 1,
            security_options: vec!["name=seccomp,profile=builtin".into()],
            ..Info::default()
        };
        let s = server_info(&i);
        assert!(s.contains(" Containers: 3\n  Running: 1\n"));
        assert!(
            s.contains(" Security Options:\n  seccomp\n   Profile: builtin\n"),
            "{s}"
        );
    }
}
