//! `network create|ls|inspect|rm|connect|disconnect`, with the docker CLI's output.

use std::collections::BTreeMap;

use anyhow::{anyhow, Result};
use berth_api::client::{query, Client};
use serde_json::{json, Value};

use super::{for_each, path_segment};
use crate::cli::{
    NetworkConnectArgs, NetworkCreateArgs, NetworkDisconnectArgs, NetworkInspectArgs,
    NetworkLsArgs, NetworkRmArgs,
};
use crate::commands::inspect::indent_json;
use crate::commands::ps::filters_json;
use crate::table;
use crate::template::Template;

pub fn create(client: &Client, args: NetworkCreateArgs) -> Result<i32> {
    let labels: BTreeMap<String, String> = args
        .label
        .iter()
        .map(|l| match l.split_once('=') {
            Some((k, v)) => (k.to_owned(), v.to_owned()),
            None => (l.clone(), String::new()),
        })
        .collect();
    let config: Vec<Value> = args.subnet.iter().map(|s| json!({"Subnet": s})).collect();
    let request = json!({
        "Name": args.name,
        "Driver": args.driver,
        "IPAM": {"Driver": "default", "Config": config},
        "Labels": labels,
    });
    let reply: Value = client
        .post("/networks/create")
        .json(&request)?
        .send()?
        .json()?;
    println!("{}", reply["Id"].as_str().unwrap_or_default());
    Ok(0)
}

fn header(field: &str) -> String {
    match field {
        "ID" => "NETWORK ID",
        "Name" => "NAME",
        "Driver" => "DRIVER",
        "Scope" => "SCOPE",
        "Labels" => "LABELS",
        "CreatedAt" => "CREATED AT",
        other => other,
    }
    .to_owned()
}

/// A network as `--format` sees it: the docker CLI's fields.
fn format_row(n: &Value, trunc: bool) -> Value {
    let id = n["Id"].as_str().unwrap_or_default();
    let id = if trunc && id.len() > 12 {
        &id[..12]
    } else {
        id
    };
    let labels = n["Labels"]
        .as_object()
        .map(|m| {
            m.iter()
                .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default()))
                .collect::<Vec<_>>()
                .join(",")
        })
        .unwrap_or_default();
    json!({
        "ID": id,
        "Name": n["Name"],
        "Driver": n["Driver"],
        "Scope": n["Scope"],
        "Labels": labels,
        "CreatedAt": n["Created"],
    })
}

pub fn ls(client: &Client, args: NetworkLsArgs) -> Result<i32> {
    let filters = filters_json(&args.filter).map_err(|e| anyhow!(e))?;
    let q = match &filters {
        Some(f) => query(&[("filters", f)]),
        None => String::new(),
    };
    let mut nets: Vec<Value> = client.get_json(format!("/networks{q}"))?;
    nets.sort_by(|a, b| a["Name"].as_str().cmp(&b["Name"].as_str()));
    let rows: Vec<Value> = nets.iter().map(|n| format_row(n, !args.no_trunc)).collect();
    if args.quiet {
        for r in &rows {
            println!("{}", r["ID"].as_str().unwrap_or_default());
        }
        return Ok(0);
    }
    let format = args
        .format
        .unwrap_or_else(|| "table {{.ID}}\t{{.Name}}\t{{.Driver}}\t{{.Scope}}".to_owned());
    print!("{}", table::render_format(&format, &rows, &header)?);
    Ok(0)
}

pub fn inspect(client: &Client, args: NetworkInspectArgs) -> Result<i32> {
    let template = args
        .format
        .as_deref()
        .map(|f| Template::parse(&f.replace("\\t", "\t").replace("\\n", "\n")))
        .transpose()?;
    let mut found = Vec::new();
    let mut failed = false;
    for name in &args.names {
        match client
            .get(format!("/networks/{}", path_segment(name)))
            .send()
        {
            Ok(resp) => found.push(resp.bytes()?),
            Err(e) if e.status() == Some(404) => {
                eprintln!("Error: No such network: {name}");
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

pub fn rm(client: &Client, args: NetworkRmArgs) -> Result<i32> {
    for_each(&args.names, |name| {
        match client
            .delete(format!("/networks/{}", path_segment(name)))
            .send()
        {
            Ok(resp) => resp.discard()?,
            Err(e) if args.force && e.status() == Some(404) => return Ok(()),
            Err(e) => return Err(e.into()),
        }
        println!("{name}");
        Ok(())
    })
}

/// Prints nothing on success, as the docker CLI.
pub fn connect(client: &Client, args: NetworkConnectArgs) -> Result<i32> {
    let request = json!({
        "Container": args.container,
        "EndpointConfig": {"Aliases": args.alias},
    });
    client
        .post(format!("/networks/{}/connect", path_segment(&args.network)))
        .json(&request)?
        .send()?
        .discard()?;
    Ok(0)
}

pub fn disconnect(client: &Client, args: NetworkDisconnectArgs) -> Result<i32> {
    let request = json!({"Container": args.container, "Force": args.force});
    client
        .post(format!(
            "/networks/{}/disconnect",
            path_segment(&args.network)
        ))
        .json(&request)?
        .send()?
        .discard()?;
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows() {
        let n = json!({"Id": "0123456789abcdef", "Name": "appnet", "Driver": "bridge",
            "Scope": "local", "Labels": {"a": "b"}});
        let row = format_row(&n, true);
        assert_eq!(row["ID"], "0123456789ab");
        assert_eq!(row["Labels"], "a=b");
        let text =
            table::render_format("table {{.Name}}\t{{.Driver}}", &[row], &header).expect("ok");
        assert_eq!(text, "NAME      DRIVER\nappnet    bridge\n");
    }
}
