"""docker-py against berthd: one line per step, "ok" or "FAIL" with the reason.

Run by crates/daemon/tests/docker_py.rs with BERTH_SOCK (the daemon's socket) and
BERTH_REGISTRY (host:port of a plain-HTTP registry on 127.0.0.1, optional). Every step
cleans up its own containers; the exit status is 1 if any step failed.
"""

import io
import os
import sys
import tarfile
import tempfile
import time
import traceback
import urllib.request

import docker
from docker.errors import APIError, ContainerError, ImageNotFound, NotFound

SOCK = os.environ["BERTH_SOCK"]
REGISTRY = os.environ.get("BERTH_REGISTRY")

client = docker.DockerClient(base_url="unix://" + SOCK, timeout=60)
failed = []


def step(fn):
    """Runs fn now as a named step; records a failure and goes on to the next step."""
    name = fn.__name__
    try:
        fn()
        print(f"ok   {name}", flush=True)
    except BaseException as e:  # noqa: BLE001 - report everything, including asserts
        print(f"FAIL {name}: {type(e).__name__}: {e}", flush=True)
        traceback.print_exc()
        failed.append(name)
    return fn


def eq(got, want, what=""):
    assert got == want, f"{what}: got {got!r}, want {want!r}"


def raises(exc, fn, *args, **kwargs):
    try:
        fn(*args, **kwargs)
    except exc as e:
        return e
    raise AssertionError(f"{fn.__qualname__}{args} did not raise {exc.__name__}")


def sleeper(**kwargs):
    return client.containers.run("busybox", "sleep 300", detach=True, **kwargs)


def gone(container):
    try:
        container.remove(force=True)
    except NotFound:
        pass


def tar_of(name, data, mode=0o644):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        info = tarfile.TarInfo(name)
        info.size = len(data)
        info.mode = mode
        info.mtime = int(time.time())
        tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


@step
def ping_and_version():
    assert client.ping() is True
    v = client.version()
    assert v["ApiVersion"], v
    print(f"     berthd API {v['ApiVersion']}, docker-py {docker.__version__}")


@step
def run_echo_remove():
    eq(client.containers.run("busybox", "echo hi", remove=True), b"hi\n", "output")
    left = [c.id for c in client.containers.list(all=True)]
    eq(left, [], "containers after remove=True")


@step
def run_nonzero_raises_container_error():
    e = raises(
        ContainerError,
        client.containers.run,
        "busybox",
        ["sh", "-c", "echo oops >&2; exit 3"],
        remove=True,
    )
    eq(e.exit_status, 3, "exit status")
    eq(e.stderr, b"oops\n", "stderr")


@step
def run_published_port_and_fetch():
    c = client.containers.run(
        "busybox",
        "httpd -f -p 80 -h /www",
        detach=True,
        ports={"80/tcp": ("127.0.0.1", None)},
    )
    try:
        c.reload()
        eq(c.status, "running", "status")
        bindings = c.ports.get("80/tcp")
        assert bindings, f"container.ports: {c.ports!r}"
        eq(bindings, c.attrs["NetworkSettings"]["Ports"]["80/tcp"], "NetworkSettings.Ports")
        eq(bindings[0]["HostIp"], "127.0.0.1", "HostIp")
        port = int(bindings[0]["HostPort"])
        assert port > 0, bindings
        deadline = time.time() + 10
        while True:
            try:
                url = f"http://127.0.0.1:{port}/index.html"
                with urllib.request.urlopen(url, timeout=5) as r:
                    eq(r.read(), b"hello from berth\n", "page")
                break
            except OSError:
                if time.time() > deadline:
                    raise
                time.sleep(0.1)
    finally:
        gone(c)


@step
def exec_run():
    c = sleeper()
    try:
        eq(tuple(c.exec_run("echo x")), (0, b"x\n"), "echo x")
        eq(c.exec_run(["sh", "-c", "exit 7"]).exit_code, 7, "exit 7")
        eq(c.exec_run("/no/such/command").exit_code, 127, "missing command")
        r = c.exec_run(["sh", "-c", "echo $FOO; pwd"], environment={"FOO": "bar"}, workdir="/tmp")
        eq(tuple(r), (0, b"bar\n/tmp\n"), "environment dict + workdir")
        r = c.exec_run(["sh", "-c", "echo $FOO"], environment=["FOO=baz"])
        eq(r.output, b"baz\n", "environment list")
        eq(c.exec_run("id -u", user="nobody").output, b"65534\n", "user")
        r = c.exec_run(["sh", "-c", "echo out; echo err >&2"], demux=True)
        eq(r.output, (b"out\n", b"err\n"), "demux")
        r = c.exec_run(["sh", "-c", "echo a; sleep 0.2; echo b"], stream=True)
        eq(b"".join(r.output), b"a\nb\n", "stream")
        # The low-level API: exec_inspect's ExitCode.
        ex = client.api.exec_create(c.id, ["sh", "-c", "exit 5"])
        client.api.exec_start(ex["Id"])
        info = client.api.exec_inspect(ex["Id"])
        eq((info["Running"], info["ExitCode"]), (False, 5), "exec_inspect")
    finally:
        gone(c)


@step
def logs():
    c = client.containers.run(
        "busybox",
        ["sh", "-c", "echo one; sleep 0.1; echo two >&2; sleep 0.1; echo three"],
        detach=True,
    )
    try:
        eq(c.wait()["StatusCode"], 0, "wait")
        eq(c.logs(), b"one\ntwo\nthree\n", "logs()")
        eq(c.logs(stderr=False), b"one\nthree\n", "stdout only")
        eq(c.logs(stdout=False), b"two\n", "stderr only")
        eq(c.logs(tail=1), b"three\n", "tail=1")
        lines = c.logs(timestamps=True).decode().splitlines()
        eq(len(lines), 3, "timestamped lines")
        stamps = [line.split(" ", 1)[0] for line in lines]
        assert all(len(t) > 20 and "T" in t for t in stamps), lines
        eq(sorted(stamps), stamps, "timestamps in order")
        eq(b"".join(c.logs(stream=True)), b"one\ntwo\nthree\n", "stream")
    finally:
        gone(c)


@step
def put_and_get_archive():
    c = sleeper()
    try:
        assert c.put_archive("/tmp", tar_of("file", b"payload\n", 0o640)) is True
        eq(tuple(c.exec_run("cat /tmp/file")), (0, b"payload\n"), "file in the container")
        eq(c.exec_run("stat -c %a /tmp/file").output, b"640\n", "mode")
        for state in ("running", "stopped"):
            bits, stat = c.get_archive("/tmp/file")
            eq((stat["name"], stat["size"]), ("file", 8), f"stat ({state})")
            with tarfile.open(fileobj=io.BytesIO(b"".join(bits))) as tar:
                eq(tar.extractfile("file").read(), b"payload\n", f"round trip ({state})")
            c.stop(timeout=0)
        raises(NotFound, c.get_archive, "/no/such/file")
        raises(NotFound, c.put_archive, "/no/such/dir", tar_of("f", b""))
    finally:
        gone(c)


@step
def volumes():
    v = client.volumes.create(name="pyvol", labels={"from": "docker-py"})
    c = None
    try:
        eq(v.name, "pyvol", "name")
        assert "pyvol" in [x.name for x in client.volumes.list()], client.volumes.list()
        got = client.volumes.get("pyvol")
        eq(got.attrs["Labels"], {"from": "docker-py"}, "labels")
        assert got.attrs["Mountpoint"], got.attrs
        out = client.containers.run(
            "busybox",
            ["sh", "-c", "echo data > /data/f"],
            volumes={"pyvol": {"bind": "/data", "mode": "rw"}},
            remove=True,
        )
        eq(out, b"", "writer output")
        out = client.containers.run("busybox", "cat /data/f", volumes=["pyvol:/data:ro"], remove=True)
        eq(out, b"data\n", "data from the volume")
        c = client.containers.create("busybox", "true", volumes=["pyvol:/data"])
        e = raises(APIError, v.remove)
        eq(e.status_code, 409, "remove a volume in use")
        c.remove()
        c = None
        v.remove()
        raises(NotFound, client.volumes.get, "pyvol")
    finally:
        if c is not None:
            gone(c)
        try:
            client.volumes.get("pyvol").remove(force=True)
        except NotFound:
            pass


@step
def images():
    tags = [t for i in client.images.list() for t in i.tags]
    assert "busybox:latest" in tags, tags
    img = client.images.get("busybox")
    assert img.id.startswith("sha256:"), img.id
    assert "busybox:latest" in img.tags, img.tags
    assert img.tag("pytag", "v1") is True
    eq(client.images.get("pytag:v1").id, img.id, "tagged id")
    eq([i.id for i in client.images.list(name="pytag")], [img.id], "list(name=)")
    client.images.remove("pytag:v1")
    raises(ImageNotFound, client.images.get, "pytag:v1")
    eq(client.images.get("busybox").id, img.id, "busybox after untag")


@step
def lifecycle():
    c = client.containers.create("busybox", "sleep 300", name="pylife")
    try:
        eq(c.status, "created", "after create")
        eq(client.containers.get("pylife").id, c.id, "get by name")
        c.start()
        c.reload()
        eq(c.status, "running", "after start")
        c.stop(timeout=1)
        c.reload()
        eq(c.status, "exited", "after stop")
        eq(c.wait()["StatusCode"], 137, "wait after stop (sleep as PID 1 ignores TERM)")
        exited = [x.id for x in client.containers.list(all=True, filters={"status": "exited"})]
        eq(exited, [c.id], "list(all, status=exited)")
        eq([x.id for x in client.containers.list()], [], "list() running")
        c.start()
        c.reload()
        eq(c.status, "running", "after second start")
        eq([x.id for x in client.containers.list()], [c.id], "list() running")
        c.kill()
        eq(c.wait(timeout=30)["StatusCode"], 137, "wait after kill")
        c.remove()
        raises(NotFound, client.containers.get, c.id)
    finally:
        gone(c)


@step
def run_tty_tmpfs_and_bind_mount():
    eq(client.containers.run("busybox", "echo hi", tty=True, remove=True), b"hi\r\n", "tty")
    out = client.containers.run(
        "busybox", ["sh", "-c", "grep ' /scratch ' /proc/mounts"], tmpfs={"/scratch": "size=1m"}, remove=True
    )
    assert out.startswith(b"tmpfs /scratch tmpfs"), out
    with tempfile.TemporaryDirectory() as host:
        with open(os.path.join(host, "f"), "w") as f:
            f.write("from the host\n")
        out = client.containers.run(
            "busybox", "cat /host/f", volumes={host: {"bind": "/host", "mode": "ro"}}, remove=True
        )
        eq(out, b"from the host\n", "bind mount")
        e = raises(
            ContainerError,
            client.containers.run,
            "busybox",
            "touch /host/g",
            volumes=[f"{host}:/host:ro"],
            remove=True,
        )
        assert b"Read-only file system" in e.stderr, e.stderr


@step
def top_stats_pause_rename_diff_restart():
    c = sleeper(name="pydaily")
    try:
        top = c.top()
        assert "PID" in top["Titles"], top
        assert any("sleep 300" in " ".join(p) for p in top["Processes"]), top
        stats = c.stats(stream=False)
        assert stats["memory_stats"].get("usage", 0) > 0, stats["memory_stats"]
        assert "cpu_usage" in stats["cpu_stats"], stats["cpu_stats"]
        c.pause()
        c.reload()
        eq(c.status, "paused", "after pause")
        c.unpause()
        c.reload()
        eq(c.status, "running", "after unpause")
        c.rename("pyrenamed")
        c.reload()
        eq(c.name, "pyrenamed", "after rename")
        eq(c.exec_run("touch /tmp/new").exit_code, 0, "touch")
        changes = c.diff()
        assert {"Path": "/tmp/new", "Kind": 1} in changes, changes
        started = c.attrs["State"]["StartedAt"]
        c.restart(timeout=0)
        c.reload()
        eq(c.status, "running", "after restart")
        assert c.attrs["State"]["StartedAt"] != started, c.attrs["State"]
    finally:
        gone(c)


@step
def events():
    since = time.time() - 1
    out = client.containers.run("busybox", "true", name="pyevents", remove=True)
    eq(out, b"", "output")
    until = time.time() + 1
    seen = [
        e["Action"]
        for e in client.events(
            since=since, until=until, decode=True, filters={"type": "container", "container": "pyevents"}
        )
    ]
    for action in ("create", "start", "die", "destroy"):
        assert action in seen, seen


@step
def prune_df_info():
    client.containers.create("busybox", "true", name="pyprune")
    client.volumes.create(name="pyprunevol")
    pruned = client.containers.prune()
    assert len(pruned["ContainersDeleted"] or []) == 1, pruned
    raises(NotFound, client.containers.get, "pyprune")
    pruned = client.volumes.prune(filters={"all": "true"})
    assert "pyprunevol" in (pruned["VolumesDeleted"] or []), pruned
    df = client.df()
    assert any("busybox:latest" in (i.get("RepoTags") or []) for i in df["Images"]), df
    for key in ("Containers", "Volumes", "LayersSize"):
        assert key in df, df
    info = client.info()
    assert info["ServerVersion"] and info["Driver"], info


@step
def errors():
    raises(NotFound, client.containers.get, "no-such-container")
    raises(ImageNotFound, client.images.get, "no-such-image:latest")
    raises(NotFound, client.api.inspect_container, "no-such-container")
    c = client.containers.create("busybox", "true", name="pydup")
    try:
        e = raises(APIError, client.containers.create, "busybox", "true", name="pydup")
        eq(e.status_code, 409, "name conflict")
        e = raises(APIError, c.exec_run, "true")
        eq(e.status_code, 409, "exec in a stopped container")
    finally:
        gone(c)


@step
def push_and_pull():
    assert REGISTRY, "BERTH_REGISTRY not set"
    repo = f"{REGISTRY}/bb"
    img = client.images.get("busybox")
    assert img.tag(repo, "1") is True
    lines = list(client.images.push(repo, tag="1", stream=True, decode=True))
    errs = [l for l in lines if "error" in l or "errorDetail" in l]
    eq(errs, [], "push errors")
    client.images.remove(f"{repo}:1")
    raises(ImageNotFound, client.images.get, f"{repo}:1")
    pulled = client.images.pull(repo, tag="1")
    assert f"{repo}:1" in pulled.tags, pulled.tags
    eq(client.containers.run(f"{repo}:1", "echo pulled", remove=True), b"pulled\n", "run pulled")
    e = raises(APIError, client.images.pull, f"{REGISTRY}/missing", tag="1")
    assert e.status_code in (404, 500), e


# Last: it removes busybox and loads it back.
@step
def image_save_and_load():
    img = client.images.get("busybox")
    data = b"".join(img.save(named="busybox:latest"))
    for tag in img.tags:
        client.images.remove(tag)
    raises(ImageNotFound, client.images.get, img.id)
    loaded = client.images.load(data)
    eq([i.id for i in loaded], [img.id], "loaded images")
    eq(client.images.get("busybox").id, img.id, "busybox after load")


print("failed: " + ", ".join(failed) if failed else "all steps passed", flush=True)
sys.exit(1 if failed else 0)
