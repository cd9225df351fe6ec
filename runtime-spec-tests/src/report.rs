//! TAP output (one line per check, diagnostics as `#` lines) and the summary.

use crate::harness::{Check, Fail, Finished};
use crate::known::{self, Class};

#[derive(Debug, Default)]
pub struct Report {
    runtime: String,
    version: String,
    verbose: bool,
    /// Expected failures: `known::KNOWN`, or a test's own list.
    known: &'static [known::Known],
    pub passed: usize,
    pub failed: usize,
    pub skipped: usize,
    /// Failing checks marked TODO (feature not built yet): not failures.
    pub todo: usize,
    /// Failing checks marked TODO as known bugs of the runtime: not failures either.
    pub todo_bugs: Vec<&'static str>,
    /// TODO checks that pass: their entries in known.rs should go.
    pub todo_passing: Vec<&'static str>,
    pub known_deviation: usize,
    pub known_host: usize,
    /// Failures nothing in known.rs explains.
    pub unexplained: Vec<&'static str>,
}

impl Report {
    pub fn new(runtime: &str, version: &str, verbose: bool) -> Report {
        Report {
            known: known::KNOWN,
            runtime: runtime.to_string(),
            version: version.to_string(),
            verbose,
            ..Report::default()
        }
    }

    /// The TAP lines for check number `n`.
    pub fn lines(&mut self, n: usize, check: &Check, f: &Finished) -> Vec<String> {
        let desc = check.description();
        let known = known::lookup_in(self.known, check.id, &self.runtime, &self.version);
        let mut diag: Vec<String> = f.notes.clone();
        let outcome = match (&f.outcome, f.leftovers.is_empty()) {
            (Ok(()), false) => Err(Fail::Fail(f.leftovers.join("; "))),
            (Err(Fail::Fail(m)), false) => {
                Err(Fail::Fail(format!("{m}; {}", f.leftovers.join("; "))))
            }
            (o, _) => o.clone(),
        };
        let mut out = Vec::new();
        match outcome {
            Err(Fail::Skip(reason)) => {
                self.skipped += 1;
                out.push(format!("ok {n} - {desc} # SKIP {reason}"));
            }
            Ok(()) => {
                self.passed += 1;
                match known {
                    Some(k) if matches!(k.class, Class::Todo | Class::Bug) => {
                        self.todo_passing.push(check.id);
                        out.push(format!("ok {n} - {desc} # TODO {}", todo_text(k)));
                        diag.push(format!(
                            "passes now: remove {:?} from the TODO list in runtime-spec-tests/src/known.rs",
                            check.id
                        ));
                    }
                    Some(k) => {
                        out.push(format!("ok {n} - {desc}"));
                        diag.push(format!(
                            "{}: noted as failing ({}) but passed: update known.rs",
                            k.runtime, k.reason
                        ));
                    }
                    None => out.push(format!("ok {n} - {desc}")),
                }
            }
            Err(Fail::Fail(msg)) => {
                match known {
                    Some(k) if k.class == Class::Todo => {
                        self.todo += 1;
                        out.push(format!("not ok {n} - {desc} # TODO {}", todo_text(k)));
                    }
                    Some(k) if k.class == Class::Bug => {
                        self.todo_bugs.push(check.id);
                        out.push(format!("not ok {n} - {desc} # TODO {}", todo_text(k)));
                    }
                    Some(k) => {
                        self.failed += 1;
                        let class = match k.class {
                            Class::Host => {
                                self.known_host += 1;
                                "host limitation (this machine)"
                            }
                            _ => {
                                self.known_deviation += 1;
                                "deviation (the runtime itself)"
                            }
                        };
                        out.push(format!("not ok {n} - {desc}"));
                        out.push(format!("# {}: {class}: {}", k.runtime, k.reason));
                    }
                    None => {
                        self.failed += 1;
                        self.unexplained.push(check.id);
                        out.push(format!("not ok {n} - {desc}"));
                    }
                }
                diag.push(msg);
                if self.verbose {
                    diag.extend(f.log.iter().cloned());
                }
            }
        }
        out.extend(diag.into_iter().map(|d| format!("#   {d}")));
        out
    }

    /// `N passed, N failed, N skipped` plus what the failures were.
    pub fn summary(&self) -> String {
        let mut s = format!(
            "{} passed, {} failed, {} skipped",
            self.passed, self.failed, self.skipped
        );
        if self.todo > 0 || !self.todo_bugs.is_empty() {
            s.push_str(&format!(
                ", {} todo ({} not built yet, {} known bugs)",
                self.todo + self.todo_bugs.len(),
                self.todo,
                self.todo_bugs.len()
            ));
        }
        let known = self.known_deviation + self.known_host;
        if known > 0 {
            s.push_str(&format!(
                " ({known} of the failures explained: {} runtime deviations, {} host limitations)",
                self.known_deviation, self.known_host
            ));
        }
        s
    }

    /// Everything that is not skipped or TODO passed.
    pub fn success(&self) -> bool {
        self.failed == 0
    }
}

fn todo_text(k: &known::Known) -> String {
    match k.class {
        Class::Bug => format!("bug, fix pending in the runtime: {}", k.reason),
        _ => format!("not built yet: {}", k.reason),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::harness::{Ctx, Outcome};
    use std::time::Duration;

    fn nothing(_: &mut Ctx) -> Outcome {
        Ok(())
    }

    fn check(id: &'static str) -> Check {
        Check {
            id,
            title: "t",
            clause: "c",
            run: nothing,
        }
    }

    fn finished(outcome: Outcome, leftovers: &[&str]) -> Finished {
        Finished {
            outcome,
            leftovers: leftovers.iter().map(|s| s.to_string()).collect(),
            log: vec![],
            notes: vec![],
            elapsed: Duration::ZERO,
        }
    }

    #[test]
    fn tap_lines_and_counts() {
        let mut r = Report::new("runc", "runc version 1.1.5+ds1", false);
        let ok = r.lines(1, &check("create-status"), &finished(Ok(()), &[]));
        assert_eq!(ok, vec!["ok 1 - t (c) [create-status]"]);
        let skip = r.lines(
            2,
            &check("x"),
            &finished(Err(Fail::Skip("why".into())), &[]),
        );
        assert_eq!(skip, vec!["ok 2 - t (c) [x] # SKIP why"]);
        // A pass with leftovers is a failure.
        let left = r.lines(3, &check("y"), &finished(Ok(()), &["cgroup left"]));
        assert_eq!(left[0], "not ok 3 - t (c) [y]");
        assert_eq!(left[1], "#   cgroup left");
        // A failure runc is known for is annotated but still a failure.
        let known = r.lines(4, &check("domainname"), &finished(Err("x".into()), &[]));
        assert!(known[1].starts_with("# runc: deviation"), "{known:?}");
        assert_eq!((r.passed, r.failed, r.skipped), (1, 2, 1));
        assert_eq!(r.unexplained, vec!["y"]);
        assert!(!r.success());
        assert_eq!(
            r.summary(),
            "1 passed, 2 failed, 1 skipped (1 of the failures explained: 1 runtime deviations, 0 host limitations)"
        );
    }

    #[test]
    fn todo_failures_do_not_fail_the_run() {
        static BUGS: &[known::Known] = &[known::bug("hooks-stdin-start-container", "a test entry")];
        let mut r = Report::new("berth-runtime", "berth-runtime 0.1.0", false);
        r.known = BUGS;
        let bug = r.lines(
            1,
            &check("hooks-stdin-start-container"),
            &finished(Err("pid 0".into()), &[]),
        );
        assert!(bug[0].starts_with("not ok 1 - t (c) [hooks-stdin-start-container] # TODO bug"));
        assert!(r.success());
        // runc's notes do not apply to another runtime or another runc version.
        let mut r2 = Report::new("runc", "runc version 1.2.0", false);
        let l = r2.lines(1, &check("domainname"), &finished(Err("x".into()), &[]));
        assert_eq!(l.len(), 2);
        assert_eq!(r2.unexplained, vec!["domainname"]);
    }
}
