"""Runs ON THE BOARD, sent as `python3 -c <this file> <operation>` with a JSON request on stdin; prints JSON.

Each operation touches only paths inside the remote root it is given; names arrive as JSON data, never as shell
text, so a file called `$(touch pwned)` is just a file name. Python 3.8+, standard library only.

Board layout: ROOT/releases/<id>/ (complete, verified releases), ROOT/releases/.partial-<id>/ (an upload in
progress or cut), ROOT/releases/.failed-<id>/ (failed its health check), ROOT/current -> releases/<id>.
"""
import hashlib
import json
import os
import platform
import shutil
import sys

RELEASES = "releases"
CURRENT = "current"
PARTIAL = ".partial-"
FAILED = ".failed-"


def inside(root, *parts):
    """ROOT/parts..., refusing anything that would resolve outside ROOT."""
    path = os.path.join(root, *parts)
    real_root = os.path.realpath(root)
    real = os.path.realpath(os.path.dirname(path))
    if real != real_root and not real.startswith(real_root + os.sep):
        raise ValueError("refusing path outside the remote dir: %r" % path)
    return path


def sha256(path):
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def current_release(root):
    link = os.path.join(root, CURRENT)
    if not os.path.islink(link):
        return None
    return os.path.basename(os.readlink(link).rstrip("/"))


def finished_files(folder):
    """{relative path: sha256} of the completely uploaded files of a cut upload (no `.part-` temporaries)."""
    found = {}
    for directory, _dirs, names in os.walk(folder):
        for name in names:
            path = os.path.join(directory, name)
            if ".part-" not in name and os.path.isfile(path) and not os.path.islink(path):
                found[os.path.relpath(path, folder).replace(os.sep, "/")] = sha256(path)
    return found


def op_scan(req):
    """Complete releases with their manifests ({path: sha256}), leftovers, and what `current` points to.

    Files that a cut upload finished (renamed from their temporary name) are hashed and listed too, so the next
    deploy resumes from them instead of sending them again."""
    root = req["root"]
    releases_dir = os.path.join(root, RELEASES)
    result = {"exists": os.path.isdir(root), "current": current_release(root), "releases": [], "partial": [], "failed": [],
              "resumable": []}
    if not os.path.isdir(releases_dir):
        return result
    for name in sorted(os.listdir(releases_dir)):
        if name.startswith(PARTIAL):
            result["partial"].append(name)
            result["resumable"].append({"id": name, "files": finished_files(os.path.join(releases_dir, name))})
        elif name.startswith(FAILED):
            result["failed"].append(name)
        elif not name.startswith("."):
            files = {}
            manifest = os.path.join(releases_dir, name, "manifest.json")
            try:
                with open(manifest) as f:
                    files = {e["path"]: e["sha256"] for e in json.load(f)["files"]}
                files["manifest.json"] = sha256(manifest)
            except (OSError, ValueError, KeyError, TypeError):
                pass  # an unreadable manifest: nothing in that release is reused
            result["releases"].append({"id": name, "files": files})
    return result


def op_prepare(req):
    """Create the staging release folder, its subfolders, and hard links (or copies) of files the board has;
    then drop leftovers of earlier cut uploads and failed releases."""
    root = req["root"]
    staging = inside(root, RELEASES, req["staging"])
    os.makedirs(staging, exist_ok=True)
    for folder in req["dirs"]:
        os.makedirs(inside(root, RELEASES, req["staging"], folder), exist_ok=True)
    linked, copied = 0, 0
    for source_release, source_path, target_path in req["reuse"]:
        source = inside(root, RELEASES, source_release, source_path)
        target = inside(root, RELEASES, req["staging"], target_path)
        if os.path.lexists(target):
            os.unlink(target)
        try:
            os.link(source, target)
            linked += 1
        except OSError:  # a filesystem without hard links: copy on the board, still nothing sent
            shutil.copyfile(source, target)
            copied += 1
    # cut uploads and failed releases go now: what was worth keeping is linked into the new release
    removed = op_prune({"root": root, "keep": 1, "only_leftovers": True, "protect": [req["staging"]]})["removed"]
    return {"linked": linked, "copied": copied, "removed": removed}


def op_hash(req):
    """sha256 and size of each listed file of a release folder (null when missing)."""
    root = req["root"]
    result = {}
    for path in req["paths"]:
        full = inside(root, RELEASES, req["release"], path)
        if os.path.isfile(full) and not os.path.islink(full):
            result[path] = [sha256(full), os.path.getsize(full)]
        else:
            result[path] = None
    return result


def op_finalize(req):
    """The verified staging folder becomes releases/<id> (one rename)."""
    root = req["root"]
    os.rename(inside(root, RELEASES, req["staging"]), inside(root, RELEASES, req["release"]))
    return {"release": req["release"]}


def op_switch(req):
    """Point `current` at releases/<id> atomically: a new symlink under a temporary name, renamed over it."""
    root = req["root"]
    release = req["release"]
    if not os.path.isdir(inside(root, RELEASES, release)) or release.startswith("."):
        raise ValueError("no complete release %r under %s" % (release, root))
    previous = current_release(root)
    temporary = inside(root, ".current-%d" % os.getpid())
    if os.path.lexists(temporary):
        os.unlink(temporary)
    os.symlink(os.path.join(RELEASES, release), temporary)
    os.replace(temporary, inside(root, CURRENT))
    return {"previous": previous, "current": release}


def op_publish(req):
    """finalize then switch, in one round trip."""
    op_finalize(req)
    return op_switch(req)


def op_unset_current(req):
    """After a failed first deploy: no release is better than a bad one."""
    link = inside(req["root"], CURRENT)
    if os.path.islink(link):
        os.unlink(link)
    return {"current": None}


def op_mark_failed(req):
    root = req["root"]
    source = inside(root, RELEASES, req["release"])
    target = inside(root, RELEASES, FAILED + req["release"])
    if os.path.lexists(target):
        shutil.rmtree(target)
    os.rename(source, target)
    return {"failed": FAILED + req["release"]}


def op_prune(req):
    """Keep the newest `keep` releases and the current one; drop failed releases and leftovers of cut uploads.

    With only_leftovers, complete releases all stay (a deploy about to reuse their files calls it so)."""
    root = req["root"]
    releases_dir = inside(root, RELEASES)
    if not os.path.isdir(releases_dir):
        return {"removed": []}
    current = current_release(root)
    keep_names = set(req.get("protect", []))
    names = sorted(os.listdir(releases_dir))
    complete = [n for n in names if not n.startswith(".")]
    keep_names.update(complete[-max(int(req["keep"]), 1):])
    if current:
        keep_names.add(current)
    removed = []
    for name in names:
        leftover = name.startswith(PARTIAL) or name.startswith(FAILED)
        stale = leftover or (not req.get("only_leftovers") and not name.startswith(".") and name not in keep_names)
        if stale and name not in keep_names:
            path = inside(root, RELEASES, name)
            if os.path.isdir(path) and not os.path.islink(path):
                shutil.rmtree(path)
            else:
                os.unlink(path)
            removed.append(name)
    return {"removed": removed}


def op_remove(req):
    """Remove one file under the remote root (health-check outputs, bench images)."""
    path = inside(req["root"], *req["path"].split("/"))
    if os.path.lexists(path):
        os.unlink(path)
    return {}


def galcore_version_from_dmesg():
    """The galcore (NPU driver) version from the kernel log, e.g. 'Galcore version 6.4.4.3.310723AAA'."""
    import re
    import subprocess

    try:
        log = subprocess.run(["dmesg"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    for line in log.decode("utf-8", "replace").splitlines():
        if "galcore" in line.lower():
            found = re.search(r"version\s*[:=]?\s*(\d+(?:\.\d+){2,3}[\w.]*)", line, re.IGNORECASE)
            if found:
                return found.group(1)
    return None


def op_facts(req):
    """Board facts for `edgepad status`: Python, CPU serial, NPU driver, which inference backends import."""
    facts = {"python": platform.python_version(), "machine": platform.machine(), "cpu_serial": None,
             "npu_driver": None, "backends": []}
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.lower().startswith("serial"):
                    facts["cpu_serial"] = line.split(":", 1)[1].strip()
    except OSError:
        pass
    for path in ("/sys/module/galcore/version", "/sys/module/galcore/parameters/version"):
        try:
            with open(path) as f:
                facts["npu_driver"] = f.read().strip()
                facts["npu_driver_source"] = path
                break
        except OSError:
            pass
    if facts["npu_driver"] is None:
        facts["npu_driver"] = galcore_version_from_dmesg()
        facts["npu_driver_source"] = "dmesg" if facts["npu_driver"] else None
    for module in ("ksnn", "onnxruntime", "cv2"):
        try:
            __import__(module)
            facts["backends"].append(module)
        except Exception:  # a broken optional backend only means it is not available
            pass
    return facts


OPERATIONS = {
    "scan": op_scan, "prepare": op_prepare, "hash": op_hash, "finalize": op_finalize, "switch": op_switch, "publish": op_publish,
    "unset_current": op_unset_current, "mark_failed": op_mark_failed, "prune": op_prune, "remove": op_remove,
    "facts": op_facts,
}


def hold_deploy_lock(req):
    """Hold ROOT/.deploy.lock (flock) until the deploy closes this command's stdin, or its connection drops:
    the lock can never outlive the deploy that took it."""
    import fcntl

    root = req["root"]
    os.makedirs(root, exist_ok=True)
    fd = os.open(inside(root, ".deploy.lock"), os.O_CREAT | os.O_RDWR, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return {"ok": False, "error": "busy"}
    sys.stdout.write(json.dumps({"ok": True, "result": {"locked": True}}) + "\n")
    sys.stdout.flush()
    sys.stdin.read()
    return None


def main():
    request = json.loads(sys.stdin.readline() or "{}")  # one JSON line; the lock keeps stdin open after it
    try:
        if sys.argv[1] == "lock":
            result = hold_deploy_lock(request)
            if result is None:
                return
        else:
            result = {"ok": True, "result": OPERATIONS[sys.argv[1]](request)}
    except (OSError, ValueError, KeyError) as error:
        result = {"ok": False, "error": "%s: %s" % (type(error).__name__, error)}
    sys.stdout.write(json.dumps(result))


if __name__ == "__main__":
    main()
