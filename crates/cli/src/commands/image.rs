//! Image verbs: `pull`, `push`, `images`, `rmi`, `tag`, `load`, `save`, `import`.

use std::fs::File;
use std::io::{self, IsTerminal, Read, Write};
use std::os::fd::AsFd;

use anyhow::{anyhow, Result};
use berth_api::client::{query, Client, Response};
use berth_api::image::{ImageDeleteItem, ImageSummary};
use berth_api::stream::JsonMessage;
use serde_json::{json, Value};

use super::{for_each, path_segment, short_id};
use crate::cli::{
    ImagesArgs, ImportArgs, LoadArgs, PullArgs, PushArgs, RmiArgs, SaveArgs, TagArgs,
};
use crate::human::{ago, format_unix_utc, human_size_precision};
use crate::progress;
use crate::reference::Reference;
use crate::table::render_format;
use crate::terminal;

/// base64url of `{}`: no credentials. dockerd and berthd both accept it; some proxies
/// reject a push without the header.
const NO_AUTH: &str = "e30=";

const DEFAULT_FORMAT: &str =
    "table {{.Repository}}\t{{.Tag}}\t{{.ID}}\t{{.CreatedSince}}\t{{.Size}}";

/// The terminal width for progress display, `None` when stdout is not a terminal.
fn stdout_width() -> Option<u16> {
    let out = io::stdout();
    out.is_terminal()
        .then(|| terminal::size_of(out.as_fd()).map_or(80, |(_, cols)| cols))
}

pub fn pull(client: &Client, args: PullArgs) -> Result<i32> {
    let r = Reference::parse(&args.image).map_err(|e| anyhow!(e))?;
    if args.quiet {
        pull_image(client, &r, &mut io::sink(), None)?;
    } else {
        pull_image(client, &r, &mut io::stdout().lock(), stdout_width())?;
    }
    println!("{}", r.full_string());
    Ok(0)
}

/// `POST /images/create?fromImage=<full name>&tag=<tag or digest>`, progress to `out`.
pub fn pull_image(
    client: &Client,
    r: &Reference,
    out: &mut dyn Write,
    width: Option<u16>,
) -> Result<()> {
    let tag = r
        .digest
        .clone()
        .or_else(|| r.tag_or_latest())
        .unwrap_or_else(|| "latest".into());
    let full = r.full_name();
    let resp = client
        .post(format!(
            "/images/create{}",
            query(&[("fromImage", &full), ("tag", &tag)])
        ))
        .header("X-Registry-Auth", NO_AUTH)
        .send()?;
    show_stream(resp, out, width)
}

/// A progress stream when the daemon sent JSON, else the body as it came.
fn show_stream(mut resp: Response, out: &mut dyn Write, width: Option<u16>) -> Result<()> {
    if resp.is_json() {
        progress::display(resp.json_stream::<JsonMessage>(), out, width)?;
    } else {
        io::copy(&mut resp, out)?;
    }
    Ok(())
}

pub fn push(client: &Client, args: PushArgs) -> Result<i32> {
    let r = Reference::parse(&args.image).map_err(|e| anyhow!(e))?;
    let tag = r.tag_or_latest().unwrap_or_else(|| "latest".into());
    let resp = client
        .post(format!(
            "/images/{}/push{}",
            path_segment(&r.familiar_name()),
            query(&[("tag", &tag)])
        ))
        .header("X-Registry-Auth", NO_AUTH)
        .send()?;
    if args.quiet {
        show_stream(resp, &mut io::sink(), None)?;
        println!("{}", r.familiar_string());
    } else {
        show_stream(resp, &mut io::stdout().lock(), stdout_width())?;
    }
    Ok(0)
}

pub fn images(client: &Client, args: ImagesArgs) -> Result<i32> {
    let mut q: Vec<(&str, &str)> = Vec::new();
    if args.all {
        q.push(("all", "1"));
    }
    let filters = args
        .repository
        .as_ref()
        .map(|r| json!({ "reference": { r.as_str(): true } }).to_string());
    if let Some(f) = &filters {
        q.push(("filters", f));
    }
    let list: Vec<ImageSummary> = client.get_json(format!("/images/json{}", query(&q)))?;
    let trunc = !args.no_trunc;
    if args.quiet {
        let mut last = String::new();
        for img in &list {
            let id = if trunc { short_id(&img.id) } else { &img.id };
            if id != last {
                println!("{id}");
                last = id.to_owned();
            }
        }
        return Ok(0);
    }
    let rows: Vec<Value> = list.iter().flat_map(|i| image_rows(i, trunc)).collect();
    let format = args.format.as_deref().unwrap_or(DEFAULT_FORMAT);
    print!("{}", render_format(format, &rows, &image_header)?);
    Ok(0)
}

fn image_header(field: &str) -> String {
    match field {
        "ID" => "IMAGE ID",
        "Repository" => "REPOSITORY",
        "Tag" => "TAG",
        "Digest" => "DIGEST",
        "CreatedSince" => "CREATED",
        "CreatedAt" => "CREATED AT",
        "Size" => "SIZE",
        "Containers" => "CONTAINERS",
        other => return other.to_uppercase(),
    }
    .to_owned()
}

/// One row per tag; an untagged image shows its digests' repositories, or `<none>`.
fn image_rows(img: &ImageSummary, trunc: bool) -> Vec<Value> {
    let id = if trunc {
        short_id(&img.id).to_owned()
    } else {
        img.id.clone()
    };
    let digest = img
        .repo_digests
        .first()
        .and_then(|d| d.split_once('@'))
        .map_or("<none>", |(_, d)| d);
    let row = |repo: &str, tag: &str| {
        json!({
            "Repository": repo,
            "Tag": tag,
            "Digest": digest,
            "ID": id,
            "CreatedSince": ago(img.created),
            "CreatedAt": format_unix_utc(img.created),
            "Size": human_size_precision(img.size as f64, 3),
            "Containers": if img.containers < 0 { "N/A".to_owned() } else { img.containers.to_string() },
        })
    };
    let tags: Vec<&String> = img
        .repo_tags
        .iter()
        .filter(|t| t.as_str() != "<none>:<none>")
        .collect();
    if !tags.is_empty() {
        return tags
            .iter()
            .map(|t| {
                let (repo, tag) = split_repo_tag(t);
                row(repo, tag)
            })
            .collect();
    }
    let digests: Vec<&str> = img
        .repo_digests
        .iter()
        .filter_map(|d| d.split_once('@').map(|(r, _)| r))
        .filter(|r| *r != "<none>")
        .collect();
    if digests.is_empty() {
        return vec![row("<none>", "<none>")];
    }
    digests.iter().map(|r| row(r, "<none>")).collect()
}

/// `localhost:5000/app:1.0` -> (`localhost:5000/app`, `1.0`): the tag is after the last
/// colon that follows the last slash.
fn split_repo_tag(s: &str) -> (&str, &str) {
    match s.rfind(':') {
        Some(i) if !s[i..].contains('/') => (&s[..i], &s[i + 1..]),
        _ => (s, "<none>"),
    }
}

pub fn rmi(client: &Client, args: RmiArgs) -> Result<i32> {
    let mut q: Vec<(&str, &str)> = Vec::new();
    if args.force {
        q.push(("force", "1"));
    }
    if args.no_prune {
        q.push(("noprune", "1"));
    }
    let q = query(&q);
    for_each(&args.images, |name| {
        let items: Vec<ImageDeleteItem> = client
            .delete(format!("/images/{}{q}", path_segment(name)))
            .send()?
            .json()?;
        for item in items {
            if let Some(u) = item.untagged {
                println!("Untagged: {u}");
            }
            if let Some(d) = item.deleted {
                println!("Deleted: {d}");
            }
        }
        Ok(())
    })
}

pub fn tag(client: &Client, args: TagArgs) -> Result<i32> {
    let target = Reference::parse(&args.target).map_err(|e| anyhow!(e))?;
    if target.digest.is_some() {
        return Err(anyhow!("refusing to create a tag with a digest reference"));
    }
    let tag = target.tag_or_latest().unwrap_or_else(|| "latest".into());
    client.post_empty(format!(
        "/images/{}/tag{}",
        path_segment(&args.source),
        query(&[("repo", &target.familiar_name()), ("tag", &tag)])
    ))?;
    Ok(0)
}

pub fn load(client: &Client, args: LoadArgs) -> Result<i32> {
    let input: Box<dyn Read> = match &args.input {
        Some(p) => Box::new(File::open(p).map_err(|e| anyhow!("open {}: {e}", p.display()))?),
        None => {
            if io::stdin().is_terminal() {
                return Err(anyhow!("requested load from stdin, but stdin is empty"));
            }
            Box::new(io::stdin().lock())
        }
    };
    let q = if args.quiet { "?quiet=1" } else { "?quiet=0" };
    let resp = client
        .post(format!("/images/load{q}"))
        .body_reader(input, "application/x-tar")
        .send()?;
    show_stream(resp, &mut io::stdout().lock(), stdout_width())?;
    Ok(0)
}

pub fn save(client: &Client, args: SaveArgs) -> Result<i32> {
    if args.output.is_none() && io::stdout().is_terminal() {
        return Err(anyhow!(
            "cowardly refusing to save to a terminal. Use the -o flag or redirect"
        ));
    }
    let names: Vec<(&str, &str)> = args.images.iter().map(|n| ("names", n.as_str())).collect();
    let mut resp = client.get(format!("/images/get{}", query(&names))).send()?;
    match &args.output {
        Some(path) => {
            // Write beside the target and rename, so a failed save leaves no half archive.
            let tmp = path.with_extension("berth-save.tmp");
            let result = (|| -> Result<()> {
                let mut f =
                    File::create(&tmp).map_err(|e| anyhow!("create {}: {e}", tmp.display()))?;
                io::copy(&mut resp, &mut f)?;
                f.sync_all()?;
                std::fs::rename(&tmp, path)?;
                Ok(())
            })();
            if result.is_err() {
                let _ = std::fs::remove_file(&tmp);
            }
            result?;
        }
        None => {
            io::copy(&mut resp, &mut io::stdout().lock())?;
        }
    }
    Ok(0)
}

pub fn import(client: &Client, args: ImportArgs) -> Result<i32> {
    if let Some(r) = &args.repository {
        Reference::parse(r).map_err(|e| anyhow!(e))?;
    }
    let is_url = args.source.starts_with("http://") || args.source.starts_with("https://");
    let from_src = if is_url { args.source.as_str() } else { "-" };
    let repo = args.repository.clone().unwrap_or_default();
    let message = args.message.clone().unwrap_or_default();
    let path = format!(
        "/images/create{}",
        query(&[
            ("fromSrc", from_src),
            ("repo", &repo),
            ("tag", ""),
            ("message", &message)
        ])
    );
    let resp = if is_url {
        client.post(path).send()?
    } else {
        let input: Box<dyn Read> = if args.source == "-" {
            Box::new(io::stdin().lock())
        } else {
            Box::new(File::open(&args.source).map_err(|e| anyhow!("open {}: {e}", args.source))?)
        };
        client
            .post(path)
            .body_reader(input, "application/x-tar")
            .send()?
    };
    show_stream(resp, &mut io::stdout().lock(), stdout_width())?;
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_per_tag_and_none() {
        let img = ImageSummary {
            id: format!("sha256:{}", "ab".repeat(32)),
            repo_tags: vec!["busybox:latest".into(), "localhost:5000/bb:1".into()],
            size: 4_260_000,
            created: crate::human::now_unix() - 3 * 86400,
            ..ImageSummary::default()
        };
        let rows = image_rows(&img, true);
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[1]["Repository"], "localhost:5000/bb");
        assert_eq!(rows[1]["Tag"], "1");
        assert_eq!(rows[0]["ID"], "abababababab");
        assert_eq!(rows[0]["Size"], "4.26MB");
        assert_eq!(rows[0]["CreatedSince"], "3 days ago");
        let dangling = ImageSummary {
            repo_tags: vec!["<none>:<none>".into()],
            ..img.clone()
        };
        let rows = image_rows(&dangling, true);
        assert_eq!(
            (rows[0]["Repository"].as_str(), rows[0]["Tag"].as_str()),
            (Some("<none>"), Some("<none>"))
        );
        let out = render_format(DEFAULT_FORMAT, &image_rows(&img, true)[..1], &image_header)
            .expect("renders");
        assert_eq!(
            out,
            "REPOSITORY   TAG       IMAGE ID       CREATED      SIZE\n\
             busybox      latest    abababababab   3 days ago   4.26MB\n"
        );
    }

    #[test]
    fn repo_tag_split_respects_registry_ports() {
        assert_eq!(
            split_repo_tag("localhost:5000/app"),
            ("localhost:5000/app", "<none>")
        );
        assert_eq!(split_repo_tag("app:1.0"), ("app", "1.0"));
    }
}
