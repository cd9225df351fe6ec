//! The layer unpacker on tars a registry could send: raw bytes (plain, gzip or zstd by
//! magic), or well-formed tars of chosen entries so that mutations get past the tar
//! checksum to the unpacker's own handling of `..`, absolute names, symlink and hardlink
//! escapes, whiteouts, devices and xattrs.
//!
//! Each run unpacks into `sandbox/layer` of a fresh temp dir (on /dev/shm when it is there:
//! no disk I/O, cheap syncfs) next to `sandbox/canary` and an empty `sandbox/outside`. An
//! entry that lands anywhere but under `layer` fails the run: that is the escape the
//! unpacker promises cannot happen.

#![no_main]

use std::io::Write;
use std::path::Path;

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;

const CANARY: &[u8] = b"untouched\n";

#[derive(Arbitrary, Debug)]
enum Input {
    Raw(Vec<u8>),
    Entries(Vec<Entry>),
}

#[derive(Arbitrary, Debug)]
struct Entry {
    kind: Kind,
    path: Name,
    link: Name,
    mode: u16,
    owner: u8,
    data: Vec<u8>,
    xattr: Option<(XattrName, Vec<u8>)>,
}

#[derive(Arbitrary, Debug)]
enum Kind {
    File,
    Dir,
    Symlink,
    Hardlink,
    Char,
    Block,
    Fifo,
    Other(u8),
}

#[derive(Arbitrary, Debug)]
enum XattrName {
    User,
    OverlayOpaque,
    Security,
    Any(String),
}

/// A path built from the parts that matter to containment, so that `../outside/x`,
/// `/canary` or `a/.wh..wh..opq` come up often.
#[derive(Arbitrary, Debug)]
struct Name {
    absolute: bool,
    parts: Vec<Part>,
}

#[derive(Arbitrary, Debug)]
enum Part {
    Dot,
    DotDot,
    Empty,
    A,
    B,
    Outside,
    Canary,
    Layer,
    Whiteout(Box<Part>),
    Opaque,
    MetaWhiteout,
    Any(String),
}

impl Part {
    fn render(&self) -> String {
        match self {
            Part::Dot => ".".into(),
            Part::DotDot => "..".into(),
            Part::Empty => String::new(),
            Part::A => "a".into(),
            Part::B => "b".into(),
            Part::Outside => "outside".into(),
            Part::Canary => "canary".into(),
            Part::Layer => "layer".into(),
            Part::Whiteout(inner) => format!(".wh.{}", inner.render()),
            Part::Opaque => ".wh..wh..opq".into(),
            Part::MetaWhiteout => ".wh..wh.plnk".into(),
            Part::Any(s) => s.clone(),
        }
    }
}

impl Name {
    fn render(&self) -> Vec<u8> {
        let parts: Vec<String> = self.parts.iter().take(8).map(Part::render).collect();
        let mut s = parts.join("/");
        if self.absolute {
            s.insert(0, '/');
        }
        s.into_bytes()
    }
}

fn build_tar(entries: &[Entry]) -> Vec<u8> {
    let mut tar = tar::Builder::new(Vec::new());
    for e in entries.iter().take(32) {
        if let Some((name, value)) = &e.xattr {
            let key = match name {
                XattrName::User => "SCHILY.xattr.user.fuzz".to_owned(),
                XattrName::OverlayOpaque => "SCHILY.xattr.trusted.overlay.opaque".to_owned(),
                XattrName::Security => "SCHILY.xattr.security.capability".to_owned(),
                XattrName::Any(s) => format!("SCHILY.xattr.{s}"),
            };
            let _ = tar.append_pax_extensions([(key.as_str(), value.as_slice())]);
        }
        let mut h = tar::Header::new_gnu();
        let (kind, data): (tar::EntryType, &[u8]) = match e.kind {
            Kind::File => (tar::EntryType::Regular, &e.data),
            Kind::Dir => (tar::EntryType::Directory, &[]),
            Kind::Symlink => (tar::EntryType::Symlink, &[]),
            Kind::Hardlink => (tar::EntryType::Link, &[]),
            Kind::Char => (tar::EntryType::Char, &[]),
            Kind::Block => (tar::EntryType::Block, &[]),
            Kind::Fifo => (tar::EntryType::Fifo, &[]),
            Kind::Other(b) => (tar::EntryType::new(b), &e.data),
        };
        h.set_entry_type(kind);
        h.set_mode(u32::from(e.mode) & 0o7777);
        h.set_uid(u64::from(e.owner));
        h.set_gid(u64::from(e.owner));
        h.set_size(data.len() as u64);
        h.set_mtime(1_600_000_000);
        // Written into the header fields directly: tar::Header::set_path refuses `..`,
        // which is exactly what a hostile layer carries.
        let old = h.as_old_mut();
        let path = e.path.render();
        let n = path.len().min(old.name.len() - 1);
        old.name[..n].copy_from_slice(&path[..n]);
        let link = e.link.render();
        let n = link.len().min(old.linkname.len() - 1);
        old.linkname[..n].copy_from_slice(&link[..n]);
        h.set_cksum();
        let _ = tar.append(&h, data);
    }
    tar.into_inner().unwrap_or_default()
}

fn scratch_base() -> &'static Path {
    let shm = Path::new("/dev/shm");
    if shm.is_dir() {
        shm
    } else {
        Box::leak(std::env::temp_dir().into_boxed_path())
    }
}

fuzz_target!(|input: Input| {
    let blob = match &input {
        Input::Raw(bytes) => bytes.clone(),
        Input::Entries(entries) => build_tar(entries),
    };
    let sandbox = tempfile::Builder::new()
        .prefix("berth-fuzz-unpack.")
        .tempdir_in(scratch_base())
        .expect("temp dir");
    let layer = sandbox.path().join("layer");
    std::fs::create_dir(&layer).expect("layer dir");
    std::fs::create_dir(sandbox.path().join("outside")).expect("outside dir");
    std::fs::File::create(sandbox.path().join("canary"))
        .and_then(|mut f| f.write_all(CANARY))
        .expect("canary");

    // Errors are fine (a bad layer is refused); panics and escapes are not.
    let _ = berth_image::layer_unpack::unpack_layer(&blob[..], &layer);

    let mut names: Vec<String> = std::fs::read_dir(sandbox.path())
        .expect("read sandbox")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(
        names,
        ["canary", "layer", "outside"],
        "an entry escaped the layer dir"
    );
    assert_eq!(
        std::fs::read(sandbox.path().join("canary")).expect("canary"),
        CANARY,
        "an entry wrote through to a file outside the layer"
    );
    assert_eq!(
        std::fs::read_dir(sandbox.path().join("outside"))
            .expect("outside")
            .count(),
        0,
        "an entry wrote into a directory outside the layer"
    );
    let canary_meta = std::fs::symlink_metadata(sandbox.path().join("canary")).expect("canary");
    assert!(canary_meta.file_type().is_file(), "canary replaced");
});
