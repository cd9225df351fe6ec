//! Volumes end to end: the real docker CLI (and `berth`) against a real berthd running
//! real containers. Named volumes, anonymous ones, copy-up from the image, `rm -v`,
//! `--mount` of each type, `--tmpfs`, read-only binds, data that outlives the container and
//! the daemon, and the errors for bad input.

mod support;

use support::cli::{berth, berth_ok, err, fails, ok};
use support::engine::Engine;

fn volume_names(engine: &Engine) -> Vec<String> {
    ok(engine, &["volume", "ls", "-q"])
        .lines()
        .map(str::to_owned)
        .collect()
}

#[test]
fn volume_create_ls_inspect_rm() {
    let engine = Engine::start();
    assert_eq!(
        ok(
            &engine,
            &["volume", "create", "--label", "team=web", "data"]
        ),
        "data\n"
    );
    assert_eq!(volume_names(&engine), vec!["data"]);
    let inspect: serde_json::Value =
        serde_json::from_str(&ok(&engine, &["volume", "inspect", "data"])).expect("JSON");
    let v = &inspect[0];
    assert_eq!(v["Name"], "data");
    assert_eq!(v["Driver"], "local");
    assert_eq!(v["Scope"], "local");
    assert_eq!(v["Labels"]["team"], "web");
    let mountpoint = engine.data_root().join("volumes/data/_data");
    assert_eq!(v["Mountpoint"], mountpoint.display().to_string());
    assert!(mountpoint.is_dir());
    // Creating an existing name answers with the existing volume.
    assert_eq!(ok(&engine, &["volume", "create", "data"]), "data\n");
    let filtered = ok(
        &engine,
        &["volume", "ls", "-q", "--filter", "label=team=web"],
    );
    assert_eq!(filtered, "data\n");
    let filtered = ok(
        &engine,
        &["volume", "ls", "-q", "--filter", "label=team=db"],
    );
    assert_eq!(filtered, "");
    // A generated name: 64 hex characters.
    let anon = ok(&engine, &["volume", "create"]);
    let anon = anon.trim();
    assert_eq!(anon.len(), 64, "{anon}");
    assert!(anon.bytes().all(|b| b.is_ascii_hexdigit()));

    // Raw API shapes.
    let list = engine.request("GET", "/volumes", None);
    assert_eq!(list.status, 200);
    assert!(list.json()["Warnings"].is_null());
    assert_eq!(list.json()["Volumes"].as_array().map(Vec::len), Some(2));
    let missing = engine.request("GET", "/volumes/nope", None);
    assert_eq!(missing.status, 404);
    assert_eq!(missing.json()["message"], "get nope: no such volume");

    assert_eq!(
        ok(&engine, &["volume", "rm", "data", anon]),
        format!("data\n{anon}\n")
    );
    assert!(volume_names(&engine).is_empty());
    assert!(!engine.data_root().join("volumes/data").exists());
    let e = fails(&engine, &["volume", "rm", "data"]);
    assert!(e.contains("no such volume"), "{e}");
    ok(&engine, &["volume", "rm", "-f", "data"]);

    // Bad input.
    let e = fails(&engine, &["volume", "create", "bad/name"]);
    assert!(e.contains("includes invalid characters"), "{e}");
    let e = fails(&engine, &["volume", "create", "-d", "nfs", "x1"]);
    assert!(e.contains("plugin \"nfs\" not found"), "{e}");
    let r = engine.request("POST", "/volumes/create", Some(r#"{"Name":"../../etc"}"#));
    assert_eq!(r.status, 400, "{}", r.text());
}

#[test]
fn named_volume_outlives_containers_and_the_daemon() {
    let mut engine = Engine::start();
    // Created on first use.
    ok(
        &engine,
        &[
            "run",
            "--rm",
            "-v",
            "data:/data",
            "busybox",
            "sh",
            "-c",
            "echo x > /data/f",
        ],
    );
    assert_eq!(volume_names(&engine), vec!["data"]);
    let read = [
        "run",
        "--rm",
        "-v",
        "data:/data",
        "busybox",
        "cat",
        "/data/f",
    ];
    assert_eq!(ok(&engine, &read), "x\n");

    ok(
        &engine,
        &[
            "create",
            "--name",
            "holder",
            "-v",
            "data:/data:ro",
            "busybox",
        ],
    );
    let mounts: serde_json::Value = serde_json::from_str(&ok(
        &engine,
        &["inspect", "-f", "{{json .Mounts}}", "holder"],
    ))
    .expect("JSON");
    let m = &mounts[0];
    assert_eq!(m["Type"], "volume");
    assert_eq!(m["Name"], "data");
    assert_eq!(m["Destination"], "/data");
    assert_eq!(m["Driver"], "local");
    assert_eq!(m["RW"], false);
    let ps = ok(&engine, &["ps", "-a", "--format", "{{.Mounts}}"]);
    assert!(ps.contains("data"), "{ps}");

    // In use, even by a stopped container: refused with the users' ids.
    let id = ok(&engine, &["inspect", "-f", "{{.Id}}", "holder"]);
    let e = fails(&engine, &["volume", "rm", "data"]);
    assert!(
        e.contains("volume is in use") && e.contains(id.trim()),
        "{e}"
    );
    let e = fails(&engine, &["volume", "rm", "-f", "data"]);
    assert!(e.contains("volume is in use"), "{e}");
    let r = engine.request("DELETE", "/volumes/data", None);
    assert_eq!(r.status, 409);

    // The reference survives a daemon restart, and so does the data.
    engine.stop_daemon();
    engine.start_daemon();
    let e = fails(&engine, &["volume", "rm", "data"]);
    assert!(e.contains("volume is in use"), "{e}");
    ok(&engine, &["rm", "-v", "holder"]);
    assert_eq!(
        volume_names(&engine),
        vec!["data"],
        "rm -v keeps named volumes"
    );
    assert_eq!(ok(&engine, &read), "x\n");
    ok(&engine, &["volume", "rm", "data"]);
}

#[test]
fn copy_up_anonymous_volumes_and_prune() {
    let engine = Engine::start();
    // The image's /www/index.html is copied into the new, empty volume.
    assert_eq!(
        ok(
            &engine,
            &[
                "run",
                "--rm",
                "-v",
                "fresh:/www",
                "busybox",
                "cat",
                "/www/index.html"
            ]
        ),
        "hello from berth\n"
    );
    let copied = engine.data_root().join("volumes/fresh/_data/index.html");
    assert!(copied.exists());
    // Not again once it has content: a change in the volume stays.
    std::fs::write(&copied, "changed\n").expect("write");
    assert_eq!(
        ok(
            &engine,
            &[
                "run",
                "--rm",
                "-v",
                "fresh:/www",
                "busybox",
                "cat",
                "/www/index.html"
            ]
        ),
        "changed\n"
    );
    // nocopy: an empty volume stays empty.
    assert_eq!(
        ok(
            &engine,
            &[
                "run",
                "--rm",
                "-v",
                "empty:/www:nocopy",
                "busybox",
                "ls",
                "/www"
            ]
        ),
        ""
    );

    // `-v /path`: an anonymous volume, labelled, copied up too; `rm -v` removes it.
    ok(
        &engine,
        &[
            "run",
            "--name",
            "anon",
            "-v",
            "/www",
            "busybox",
            "sh",
            "-c",
            "cat /www/index.html",
        ],
    );
    let name = ok(
        &engine,
        &["inspect", "-f", "{{(index .Mounts 0).Name}}", "anon"],
    );
    let name = name.trim().to_owned();
    assert_eq!(name.len(), 64, "{name}");
    let label = ok(
        &engine,
        &["volume", "inspect", "-f", "{{json .Labels}}", &name],
    );
    assert!(label.contains("com.docker.volume.anonymous"), "{label}");
    assert!(volume_names(&engine).contains(&name));
    ok(&engine, &["rm", "-v", "anon"]);
    assert!(!volume_names(&engine).contains(&name), "rm -v removed it");

    // Without -v it stays, and `volume prune` (anonymous only by default) takes it.
    ok(
        &engine,
        &["run", "--name", "keep", "-v", "/scratch", "busybox", "true"],
    );
    let kept = ok(
        &engine,
        &["inspect", "-f", "{{(index .Mounts 0).Name}}", "keep"],
    );
    let kept = kept.trim().to_owned();
    // --rm removes the anonymous volumes of the container it removes.
    ok(&engine, &["run", "--rm", "-v", "/gone", "busybox", "true"]);
    ok(&engine, &["rm", "keep"]);
    let before = volume_names(&engine);
    assert!(before.contains(&kept));
    assert_eq!(before.len(), 3, "fresh, empty and the kept one: {before:?}");
    let report = ok(&engine, &["volume", "prune", "-f"]);
    assert!(report.contains(&kept), "{report}");
    let mut after = volume_names(&engine);
    after.sort();
    assert_eq!(after, vec!["empty", "fresh"]);
    let report = ok(&engine, &["volume", "prune", "-f", "-a"]);
    assert!(report.contains("Total reclaimed space"), "{report}");
    assert!(volume_names(&engine).is_empty());
}

#[test]
fn mounts_tmpfs_and_read_only_binds() {
    let engine = Engine::start();
    let tmpfs = ok(
        &engine,
        &[
            "run",
            "--rm",
            "--mount",
            "type=tmpfs,target=/t,tmpfs-size=1m",
            "--tmpfs",
            "/t2",
            "busybox",
            "grep",
            "-E",
            " /t2? ",
            "/proc/mounts",
        ],
    );
    assert_eq!(tmpfs.lines().count(), 2, "{tmpfs}");
    assert!(tmpfs.lines().all(|l| l.starts_with("tmpfs ")), "{tmpfs}");
    assert!(tmpfs.contains("size=1024k"), "{tmpfs}");

    // --mount type=volume, read-only enforced.
    let o = engine.docker(&[
        "run",
        "--rm",
        "--mount",
        "type=volume,source=mv,target=/m,readonly",
        "busybox",
        "sh",
        "-c",
        "echo z > /m/f",
    ]);
    assert!(!o.status.success());
    assert!(err(&o).contains("Read-only file system"), "{}", err(&o));
    ok(
        &engine,
        &[
            "run",
            "--rm",
            "--mount",
            "type=volume,src=mv,dst=/m",
            "busybox",
            "touch",
            "/m/f",
        ],
    );

    // A read-only host bind: readable, not writable.
    let host = engine.dir.path().join("hostdir");
    std::fs::create_dir_all(&host).expect("mkdir");
    std::fs::write(host.join("hello"), "from the host\n").expect("write");
    let spec = format!("{}:/x:ro", host.display());
    assert_eq!(
        ok(
            &engine,
            &["run", "--rm", "-v", &spec, "busybox", "cat", "/x/hello"]
        ),
        "from the host\n"
    );
    let o = engine.docker(&[
        "run",
        "--rm",
        "-v",
        &spec,
        "busybox",
        "sh",
        "-c",
        "echo z > /x/f",
    ]);
    assert!(!o.status.success());
    assert!(err(&o).contains("Read-only file system"), "{}", err(&o));
    assert!(!host.join("f").exists());
    let spec = format!("type=bind,source={},target=/x", host.display());
    ok(
        &engine,
        &["run", "--rm", "--mount", &spec, "busybox", "touch", "/x/f"],
    );
    assert!(host.join("f").exists());
    ok(
        &engine,
        &[
            "create",
            "--name",
            "bb",
            "-v",
            &format!("{}:/x", host.display()),
            "busybox",
        ],
    );
    let t = ok(
        &engine,
        &[
            "inspect",
            "-f",
            "{{range .Mounts}}{{.Type}} {{.RW}} {{.Propagation}}{{end}}",
            "bb",
        ],
    );
    assert_eq!(t.trim(), "bind true rprivate");

    // Bad input: a clear error, no container.
    let e = fails(
        &engine,
        &[
            "run",
            "--rm",
            "--mount",
            "type=bogus,target=/x",
            "busybox",
            "true",
        ],
    );
    assert!(e.contains("mount type unknown"), "{e}");
    let e = fails(
        &engine,
        &["run", "--rm", "-v", "bad name:/x", "busybox", "true"],
    );
    assert!(e.contains("includes invalid characters"), "{e}");
    let e = fails(
        &engine,
        &[
            "run",
            "--rm",
            "--mount",
            "type=bind,source=/no/such/dir,target=/x",
            "busybox",
            "true",
        ],
    );
    assert!(e.contains("bind source path does not exist"), "{e}");
    let e = fails(
        &engine,
        &[
            "run", "--rm", "-v", "a1:/x", "-v", "a2:/x", "busybox", "true",
        ],
    );
    assert!(e.contains("Duplicate mount point"), "{e}");
    let ps = ok(&engine, &["ps", "-aq"]);
    assert_eq!(ps.lines().count(), 1, "only `bb`: {ps}");
    assert!(
        !volume_names(&engine).iter().any(|v| v == "a1" || v == "a2"),
        "a refused create keeps no volume it would have made? {:?}",
        volume_names(&engine)
    );
}

#[test]
fn berth_volume_commands() {
    let engine = Engine::start();
    assert_eq!(
        berth_ok(&engine, &["volume", "create", "--label", "a=b", "bv"]),
        "bv\n"
    );
    assert_eq!(
        berth_ok(&engine, &["volume", "ls"]),
        "DRIVER    VOLUME NAME\nlocal     bv\n"
    );
    assert_eq!(berth_ok(&engine, &["volume", "ls", "-q"]), "bv\n");
    let inspect: serde_json::Value =
        serde_json::from_str(&berth_ok(&engine, &["volume", "inspect", "bv"])).expect("JSON");
    assert_eq!(inspect[0]["Labels"]["a"], "b");
    assert_eq!(
        berth_ok(&engine, &["volume", "inspect", "-f", "{{.Driver}}", "bv"]),
        "local\n"
    );
    berth_ok(
        &engine,
        &[
            "run",
            "--rm",
            "-v",
            "bv:/d",
            "busybox",
            "sh",
            "-c",
            "echo hi > /d/f",
        ],
    );
    assert_eq!(
        berth_ok(
            &engine,
            &[
                "run",
                "--rm",
                "--mount",
                "type=volume,source=bv,target=/d",
                "busybox",
                "cat",
                "/d/f"
            ]
        ),
        "hi\n"
    );
    assert_eq!(
        berth_ok(
            &engine,
            &[
                "run",
                "--rm",
                "--tmpfs",
                "/t",
                "busybox",
                "sh",
                "-c",
                "grep -c ' /t tmpfs' /proc/mounts"
            ]
        ),
        "1\n"
    );
    berth_ok(
        &engine,
        &["create", "--name", "cv", "-v", "bv:/d", "busybox"],
    );
    let o = berth(&engine, &["volume", "rm", "bv"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(err(&o).contains("volume is in use"), "{}", err(&o));
    berth_ok(&engine, &["rm", "cv"]);
    let o = berth(&engine, &["volume", "rm", "nope"]);
    assert!(err(&o).contains("no such volume"), "{}", err(&o));
    berth_ok(&engine, &["volume", "rm", "-f", "nope"]);
    let report = berth_ok(&engine, &["volume", "prune", "-f"]);
    assert_eq!(report, "Total reclaimed space: 0B\n");
    let report = berth_ok(&engine, &["volume", "prune", "-f", "-a"]);
    assert!(report.starts_with("Deleted Volumes:\nbv\n"), "{report}");
    assert_eq!(berth_ok(&engine, &["volume", "ls", "-q"]), "");
}

#[test]
fn image_volumes_become_anonymous_volumes() {
    let engine = Engine::start();
    let tar = support::engine::busybox_rootfs_tar();
    let o = engine.docker_stdin(
        &[
            "import",
            "--change",
            "VOLUME /www",
            "--change",
            "CMD [\"sh\"]",
            "-",
            "volimg",
        ],
        Some(&tar),
    );
    assert!(o.status.success(), "{}\n{}", err(&o), engine.log());
    // The image's VOLUME gets an anonymous volume, filled from the image.
    assert_eq!(
        ok(
            &engine,
            &["run", "--name", "iv", "volimg", "cat", "/www/index.html"]
        ),
        "hello from berth\n"
    );
    let m = ok(
        &engine,
        &[
            "inspect",
            "-f",
            "{{range .Mounts}}{{.Type}} {{.Destination}} {{len .Name}}{{end}}",
            "iv",
        ],
    );
    assert_eq!(m.trim(), "volume /www 64");
    // A user mount at that path wins: no anonymous volume.
    let host = engine.dir.path().join("site");
    std::fs::create_dir_all(&host).expect("mkdir");
    std::fs::write(host.join("index.html"), "mine\n").expect("write");
    let spec = format!("{}:/www", host.display());
    assert_eq!(
        ok(
            &engine,
            &[
                "run",
                "--rm",
                "-v",
                &spec,
                "volimg",
                "cat",
                "/www/index.html"
            ]
        ),
        "mine\n"
    );
    assert_eq!(volume_names(&engine).len(), 1);
    ok(&engine, &["rm", "-v", "iv"]);
    assert!(volume_names(&engine).is_empty());
}
