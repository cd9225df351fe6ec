//! A fake cgroup directory for the limit planners' unit tests, shared by v1 and v2.

use super::resources::{Step, Write};
use std::fs;
use std::path::PathBuf;

/// `<tmp>/berth-cg-<pid>-<n>/child` holding `files`; removed on drop.
pub struct Fixture(PathBuf);

impl Fixture {
    pub fn new(files: &[(&str, &str)]) -> Fixture {
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("berth-cg-{}-{n}", std::process::id()));
        fs::create_dir_all(dir.join("child")).unwrap();
        for (f, v) in files {
            fs::write(dir.join("child").join(f), v).unwrap();
        }
        Fixture(dir)
    }

    /// The container's (child) cgroup directory.
    pub fn dir(&self) -> PathBuf {
        self.0.join("child")
    }

    /// A file in the parent cgroup.
    pub fn parent_file(&self, f: &str, v: &str) {
        fs::write(self.0.join(f), v).unwrap();
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// The planned writes as (file name, value), in order.
pub fn writes(steps: &[Step]) -> Vec<(String, String)> {
    steps
        .iter()
        .map(|s| match s {
            Step::Write {
                write: Write { file, value, .. },
                ..
            } => (
                file.file_name().unwrap().to_string_lossy().into_owned(),
                value.clone(),
            ),
            Step::DeviceFilter { .. } => ("<bpf>".into(), String::new()),
        })
        .collect()
}
