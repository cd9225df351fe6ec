//! `volume create|ls|inspect|rm|prune`, with the docker CLI's output.

use std::collections::BTreeMap;
use std::io::{BufRead, Write};

use anyhow::{anyhow, Result};
use berth_api::client::{query, Client};
use berth_api::volume::{Volume, VolumeCreateRequest, VolumeListResponse, VolumePruneResponse};
use serde_json::{json, Value};

use super::{for_each, path_segment};
use crate::cli::{
    VolumeCreateArgs, VolumeInspectArgs, VolumeLsArgs, VolumePruneArgs, VolumeRmArgs,
};
use crate::commands::inspect::indent_json;
use crate::commands::ps::filters_json;
use crate::human::human_size;
use crate::table;
use crate::template::Template;

/// `KEY=VALUE` flags (`--label`, `--opt`) as a map; `KEY` alone is an empty value.
fn key_values(flags: &[String]) -> BTreeMap<String, String> {
    flags
        .iter()
        .map(|l| match l.split_once('=') {
            Some((k, v)) => (k.to_owned(), v.to_owned()),
            None => (l.clone(), String::new()),
        })
        .collect()
}

pub fn create(client: &Client, args: VolumeCreateArgs) -> Result<i32> {
    let request = VolumeCreateRequest {
        name: args.name.unwrap_or_default(),
        driver: args.driver,
        driver_opts: key_values(&args.opt),
        labels: key_values(&args.label),
    };
    let volume: Volume = client
        .post("/volumes/create")
        .json(&request)?
        .send()?
        .json()?;
    println!("{}", volume.name);
    Ok(0)
}

/// The docker CLI's column titles for volume fields.
fn header(field: &str) -> String {
    match field {
        "Name" => "VOLUME NAME",
        "Driver" => "DRIVER",
        "Scope" => "SCOPE",
        "Mountpoint" => "MOUNTPOINT",
        "Labels" => "LABELS",
        other => other,
    }
    .to_owned()
}

/// A volume as `--format` sees it: the docker CLI's fields, labels as `k=v,k2=v2`.
fn format_row(v: &Volume) -> Value {
    let labels = v
        .labels
        .iter()
        .map(|(k, val)| format!("{k}={val}"))
        .collect::<Vec<_>>()
        .join(",");
    json!({
        "Name": v.name,
        "Driver": v.driver,
        "Scope": v.scope,
        "Mountpoint": v.mountpoint,
        "Labels": labels,
    })
}

pub fn ls(client: &Client, args: VolumeLsArgs) -> Result<i32> {
    let filters = filters_json(&args.filter).map_err(|e| anyhow!(e))?;
    let q = match &filters {
        Some(f) => query(&[("filters", f)]),
        None => String::new(),
    };
    let list: VolumeListResponse = client.get_json(format!("/volumes{q}"))?;
    let mut volumes = list.volumes;
    volumes.sort_by(|a, b| a.name.cmp(&b.name));
    if args.quiet {
        for v in &volumes {
            println!("{}", v.name);
        }
        return Ok(0);
    }
    let format = args
        .format
        .unwrap_or_else(|| "table {{.Driver}}\t{{.Name}}".to_owned());
    let rows: Vec<Value> = volumes.iter().map(format_row).collect();
    print!("{}", table::render_format(&format, &rows, &header)?);
    Ok(0)
}

pub fn inspect(client: &Client, args: VolumeInspectArgs) -> Result<i32> {
    let template = args
        .format
        .as_deref()
        .map(|f| Template::parse(&f.replace("\\t", "\t").replace("\\n", "\n")))
        .transpose()?;
    let mut found = Vec::new();
    let mut failed = false;
    for name in &args.names {
        match client
            .get(format!("/volumes/{}", path_segment(name)))
            .send()
        {
            Ok(resp) => found.push(resp.bytes()?),
            Err(e) if e.status() == Some(404) => {
                eprintln!("Error: No such volume: {name}");
                failed = true;
            }
            Err(e) => return Err(e.into()),
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
    Ok(if failed { 1 } else { 0 })
}

pub fn rm(client: &Client, args: VolumeRmArgs) -> Result<i32> {
    let q = if args.force {
        query(&[("force", "1")])
    } else {
        String::new()
    };
    for_each(&args.names, |name| {
        client
            .delete(format!("/volumes/{}{q}", path_segment(name)))
            .send()?
            .discard()?;
        println!("{name}");
        Ok(())
    })
}

pub fn prune(client: &Client, args: VolumePruneArgs) -> Result<i32> {
    let warning = if args.all {
        "WARNING! This will remove all local volumes not used by at least one container."
    } else {
        "WARNING! This will remove anonymous local volumes not used by at least one container."
    };
    if !args.force {
        print!("{warning}\nAre you sure you want to continue? [y/N] ");
        std::io::stdout().flush()?;
        let mut answer = String::new();
        std::io::stdin().lock().read_line(&mut answer)?;
        if !matches!(answer.trim().to_ascii_lowercase().as_str(), "y" | "yes") {
            return Ok(0);
        }
    }
    let mut flags = args.filter.clone();
    if args.all {
        flags.push("all=true".to_owned());
    }
    let filters = filters_json(&flags).map_err(|e| anyhow!(e))?;
    let q = match &filters {
        Some(f) => query(&[("filters", f)]),
        None => String::new(),
    };
    let report: VolumePruneResponse = client.post(format!("/volumes/prune{q}")).send()?.json()?;
    if !report.volumes_deleted.is_empty() {
        println!("Deleted Volumes:");
        for name in &report.volumes_deleted {
            println!("{name}");
        }
        println!();
    }
    println!(
        "Total reclaimed space: {}",
        human_size(report.space_reclaimed as f64)
    );
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_and_rows() {
        let kv = key_values(&["a=b".into(), "c".into(), "d=e=f".into()]);
        assert_eq!(kv["a"], "b");
        assert_eq!(kv["c"], "");
        assert_eq!(kv["d"], "e=f");
        let v = Volume {
            name: "data".into(),
            driver: "local".into(),
            labels: kv,
            ..Default::default()
        };
        let row = format_row(&v);
        assert_eq!(row["Labels"], "a=b,c=,d=e=f");
        let text =
            table::render_format("table {{.Driver}}\t{{.Name}}", &[row], &header).expect("ok");
        assert_eq!(text, "DRIVER    VOLUME NAME\nlocal     data\n");
    }
}
