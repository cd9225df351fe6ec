//! The runner's command line.

use std::path::PathBuf;

pub const HELP: &str = "\
oci-conformance: check an OCI runtime (runc's command line) against the runtime-spec

usage: oci-conformance [--runtime PATH] [--filter SUBSTR]... [--jobs N] [--verbose]
                       [--probe PATH] [--list]

Every check builds a bundle whose rootfs holds a static helper, oci-probe, runs the
runtime on it (create/start/state/kill/delete/run/exec), and compares what the probe or
the host sees with the config.json it wrote. One TAP line per check, citing the spec
clause, then `N passed, N failed, N skipped`. The exit status is 0 when every check
that is neither skipped nor marked TODO passed.

options:
  --runtime PATH    the runtime to test (default: $RUNTIME, else runc on PATH)
  --filter SUBSTR   run only checks whose id or title contains SUBSTR (repeatable: any)
  --jobs N          checks to run at once (default 4)
  --verbose         on failure, show each runtime command the check ran and its stderr
  --probe PATH      a static oci-probe to use instead of building one from this checkout
                    (also $OCI_PROBE)
  --list            list the checks and exit

Needs root, busybox-static (/bin/busybox) for the hook checks, and a Rust toolchain
the first time (to build the probe, see `make conformance`). Expected failures are listed
in runtime-spec-tests/src/known.rs: TODO for features berth-runtime has not built yet,
notes on why Debian's runc fails what it fails (its own deviation or this host).
";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    pub runtime: Option<PathBuf>,
    pub filters: Vec<String>,
    pub jobs: usize,
    pub verbose: bool,
    pub probe: Option<PathBuf>,
    pub list: bool,
}

pub enum Parsed {
    Run(Options),
    Help,
}

/// Parses argv (without the program name). `--opt=value` and `--opt value` both work.
pub fn parse(args: &[String]) -> Result<Parsed, String> {
    let mut o = Options {
        runtime: None,
        filters: Vec::new(),
        jobs: 4,
        verbose: false,
        probe: None,
        list: false,
    };
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        let (name, inline) = match arg.split_once('=') {
            Some((n, v)) if n.starts_with("--") => (n, Some(v.to_string())),
            _ => (arg.as_str(), None),
        };
        let mut value = |what: &str| -> Result<String, String> {
            match &inline {
                Some(v) => Ok(v.clone()),
                None => it
                    .next()
                    .cloned()
                    .ok_or_else(|| format!("{what} needs a value")),
            }
        };
        match name {
            "--runtime" => o.runtime = Some(PathBuf::from(value("--runtime")?)),
            "--filter" => o.filters.push(value("--filter")?),
            "--jobs" | "-j" => {
                o.jobs = value("--jobs")?
                    .parse()
                    .map_err(|_| "--jobs takes a number".to_string())?
            }
            "--probe" => o.probe = Some(PathBuf::from(value("--probe")?)),
            "--verbose" | "-v" => o.verbose = true,
            "--list" => o.list = true,
            "--help" | "-h" => return Ok(Parsed::Help),
            other => return Err(format!("unknown argument {other:?} (see --help)")),
        }
    }
    Ok(Parsed::Run(o))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(args: &[&str]) -> Options {
        let v: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        match parse(&v).unwrap() {
            Parsed::Run(o) => o,
            Parsed::Help => panic!("help"),
        }
    }

    #[test]
    fn flags_in_both_spellings() {
        let o = run(&[
            "--runtime",
            "/x",
            "--filter=ns",
            "--filter",
            "hooks",
            "-j",
            "2",
        ]);
        assert_eq!(o.runtime, Some(PathBuf::from("/x")));
        assert_eq!(o.filters, vec!["ns", "hooks"]);
        assert_eq!(o.jobs, 2);
        assert!(!o.verbose);
        assert!(parse(&["--bogus".to_string()]).is_err());
        assert!(parse(&["--runtime".to_string()]).is_err());
    }
}
