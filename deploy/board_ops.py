"""Runs ON THE BOARD, sent as `python3 -c <this file> <operation>` with a JSON request on stdin; prints JSON.

Each operation touches only paths inside the remote root it is given; names arrive as JSON data, never as shell
text, so a file called `$(touch pwned)` is just a file name. Python 3.8+, standard library only.

Board layout: ROOT/releases/<id>/ (complete, verified releases), ROOT/releases/.partial-<id>/ (an upload in
progress or cut), ROOT/releases/.failed-<id>/ (failed its health check), ROOT/current -> releases/<id>.
The names below are the only definition of that layout: the host modules import them from here.

Everything a deploy makes durable is fsync'ed before the rename or symlink swap that publishes it: a board that
loses power right after a deploy has either the old `current` or the new one, never empty files.
"""
import errno
import glob
import hashlib
import json
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

RELEASES = "releases"
CURRENT = "current"
PARTIAL = ".partial-"
FAILED = ".failed-"
LOCK_NAME = ".deploy.lock"
CURRENT_TEMPORARY = ".current-"
STDERR_TAIL = 4000
# where Mesa's Teflon delegate is installed (Debian's mesa-teflon-delegate, a Mesa build, Armbian); the runtime's
# tflite backend searches the same folders
TEFLON_LIBRARIES = ("/usr/lib/*-linux-gnu/libteflon.so", "/usr/lib/libteflon.so", "/usr/local/lib/libteflon.so",
                    "/usr/local/lib/*-linux-gnu/libteflon.so", "/usr/lib/teflon/libteflon.so")


def inside(root, *parts):
    """ROOT/parts..., refusing empty, `.` and `..` components, absolute parts, and anything that resolves
    (symlinks included, the last component too) outside ROOT."""
    components = []
    for part in parts:
        pieces = part.split("/")
        if part.startswith("/") or any(piece in ("", ".", "..") or "\0" in piece for piece in pieces):
            raise ValueError("refusing path component %r under the remote dir" % part)
        components.extend(pieces)
    path = os.path.join(root, *components)
    real_root = os.path.realpath(root)
    real = os.path.realpath(path)
    if real != real_root and not real.startswith(real_root + os.sep):
        raise ValueError("refusing path outside the remote dir: %r" % path)
    return path


def fsync_path(path):
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_tree(folder):
    """Every file, then every folder bottom-up, down to the disk."""
    for directory, _dirs, names in os.walk(folder, topdown=False):
        for name in names:
            path = os.path.join(directory, name)
            if os.path.isfile(path) and not os.path.islink(path):
                fsync_path(path)
        fsync_path(directory)


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
    result = {"exists": os.path.isdir(root), "current": current_release(root), "releases": [], "partial": [],
              "failed": [], "resumable": []}
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
                files = {}  # an unreadable manifest: nothing in that release is reused
            # the manifest says what was there; only files still there as regular files can be reused
            files = {path: digest for path, digest in files.items() if is_regular(releases_dir, name, path)}
            result["releases"].append({"id": name, "files": files})
    return result


def is_regular(releases_dir, release, path):
    try:
        full = inside(releases_dir, release, path)
    except ValueError:
        return False
    return os.path.isfile(full) and not os.path.islink(full)


def op_prepare(req):
    """Create the staging release folder, its subfolders, and hard links (or copies) of files the board has;
    then drop leftovers of earlier cut uploads and failed releases."""
    root = req["root"]
    staging = inside(root, RELEASES, req["staging"])
    os.makedirs(staging, exist_ok=True)
    for folder in req["dirs"]:
        os.makedirs(inside(root, RELEASES, req["staging"], folder), exist_ok=True)
    linked, copied, missing = 0, 0, []
    for source_release, source_path, target_path in req["reuse"]:
        source = inside(root, RELEASES, source_release, source_path)
        target = inside(root, RELEASES, req["staging"], target_path)
        if os.path.lexists(target):
            os.unlink(target)
        if not os.path.isfile(source) or os.path.islink(source):
            missing.append(target_path)  # gone since the scan: the sha256 check finds it and it is sent
            continue
        try:
            os.link(source, target)
            linked += 1
        except OSError:  # a filesystem without hard links: copy on the board, still nothing sent
            shutil.copyfile(source, target)
            copied += 1
    # cut uploads and failed releases go now: what was worth keeping is linked into the new release
    removed = op_prune({"root": root, "keep": 1, "only_leftovers": True, "protect": [req["staging"]]})["removed"]
    return {"linked": linked, "copied": copied, "missing": missing, "removed": removed}


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
    """The verified staging folder, flushed to disk, becomes releases/<id> (one rename, flushed too)."""
    root = req["root"]
    staging = inside(root, RELEASES, req["staging"])
    fsync_tree(staging)
    os.rename(staging, inside(root, RELEASES, req["release"]))
    fsync_path(inside(root, RELEASES))
    return {"release": req["release"]}


def op_switch(req):
    """Point `current` at releases/<id> atomically: a new symlink under a temporary name, renamed over it."""
    root = req["root"]
    release = req["release"]
    if not os.path.isdir(inside(root, RELEASES, release)) or release.startswith("."):
        raise ValueError("no complete release %r under %s" % (release, root))
    previous = current_release(root)
    temporary = inside(root, CURRENT_TEMPORARY + str(os.getpid()))
    if os.path.lexists(temporary):
        os.unlink(temporary)
    fsync_path(inside(root, RELEASES))
    os.symlink(os.path.join(RELEASES, release), temporary)
    os.replace(temporary, os.path.join(root, CURRENT))
    fsync_path(root)
    return {"previous": previous, "current": release}


def op_publish(req):
    """finalize then switch, in one round trip."""
    op_finalize(req)
    return op_switch(req)


def op_mark_failed(req):
    root = req["root"]
    source = inside(root, RELEASES, req["release"])
    target = inside(root, RELEASES, FAILED + req["release"])
    if current_release(root) == req["release"]:
        raise ValueError("release %r is current; switch away from it first" % req["release"])
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
            path = os.path.join(releases_dir, name)  # a name from listdir: never outside, even as a symlink
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


# The NPU driver's version, where Khadas' images keep it: the module's sysfs entry, `modinfo galcore`, the kernel log
# ("Galcore version 6.4.4.3.310723AAA", Paddle Lite's and Khadas' docs: `dmesg | grep Galcore`). Reads are bounded:
# the board is not trusted to keep a version short or a kernel log small.
GALCORE_VERSION_FILES = ("/sys/module/galcore/version", "/sys/module/galcore/parameters/version")
VERSION_READ_LIMIT = 256
COMMAND_OUTPUT_LIMIT = 4 * 1024 * 1024
COMMAND_TIMEOUT_S = 10
GALCORE_VERSION = r"(\d+(?:\.\d+){2,3}[\w.+-]{0,40})"


def bounded_output(argv, limit=COMMAND_OUTPUT_LIMIT, seconds=COMMAND_TIMEOUT_S):
    """At most `limit` bytes of a command's stdout within `seconds` (then it is killed); None if it cannot run."""
    import threading

    try:
        process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                   stderr=subprocess.DEVNULL, start_new_session=True)
    except OSError:
        return None
    timer = threading.Timer(seconds, process.kill)
    timer.start()
    try:
        data = process.stdout.read(limit)
    finally:
        timer.cancel()
        process.stdout.close()
        if process.poll() is None:
            process.kill()
        process.wait()
    return data.decode("utf-8", "replace")


def galcore_version_from_dmesg():
    """The galcore (NPU driver) version from the kernel log, e.g. 'Galcore version 6.4.4.3.310723AAA'."""
    import re

    for line in (bounded_output(["dmesg"]) or "").splitlines():
        if "galcore" in line.lower():
            found = re.search(r"version\s*[:=]?\s*" + GALCORE_VERSION, line, re.IGNORECASE)
            if found:
                return found.group(1)
    return None


def galcore_version_from_modinfo():
    """The `version:` field of `modinfo galcore` (the module on disk, loaded or not)."""
    import re

    found = re.search(r"^version:\s*" + GALCORE_VERSION + r"\s*$", bounded_output(["modinfo", "galcore"]) or "",
                      re.MULTILINE)
    return found.group(1) if found else None


def galcore_version():
    """(version, where it was read) or (None, why there is none)."""
    import re

    for path in GALCORE_VERSION_FILES:
        try:
            with open(path, "rb") as f:
                text = f.read(VERSION_READ_LIMIT).decode("utf-8", "replace").strip()
        except OSError:
            continue
        found = re.match(GALCORE_VERSION + r"$", text)
        return (found.group(1), path) if found else (None, "%s holds no version" % path)
    version = galcore_version_from_modinfo()
    if version:
        return version, "modinfo galcore"
    version = galcore_version_from_dmesg()
    if version:
        return version, "dmesg"
    return None, "no galcore: not in /sys/module, `modinfo galcore` or the kernel log"


def op_space(req):
    """Free bytes for this user on the filesystem of the remote root (or of its nearest existing parent)."""
    folder = req["root"]
    while not os.path.isdir(folder) and os.path.dirname(folder) != folder:
        folder = os.path.dirname(folder)
    stat = os.statvfs(folder)
    return {"free": stat.f_bavail * stat.f_frsize, "total": stat.f_blocks * stat.f_frsize}


def op_run(req):
    """Run argv with a deadline; on expiry kill its whole process group (a hung NPU load must not live on).
    Returns the exit code (None after a timeout), the tail of stderr, and the size of `expect` (None: missing)."""
    expect = inside(req["root"], req["expect"]) if req.get("expect") else None
    if expect and os.path.lexists(expect):
        os.unlink(expect)
    with tempfile.TemporaryFile() as stderr:
        process = subprocess.Popen(req["argv"], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=stderr,
                                   start_new_session=True)
        try:
            code = process.wait(timeout=float(req["seconds"]))
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
            code = None
        stderr.seek(max(0, stderr.seek(0, os.SEEK_END) - STDERR_TAIL))
        tail = stderr.read().decode("utf-8", "replace")
    size = None
    if expect and os.path.isfile(expect) and not os.path.islink(expect):
        size = os.path.getsize(expect)
    return {"exit_code": code, "stderr": tail, "out_size": size}


def op_npu_driver(req):
    """The galcore version alone: what deploy checks the release's NBGs against before it changes anything."""
    version, source = galcore_version()
    return {"npu_driver": version, "npu_driver_source": source}


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
    facts["npu_driver"], facts["npu_driver_source"] = galcore_version()
    # The mainline path: Mesa's Teflon TFLite delegate over the etnaviv kernel driver (Linux 6.7+)
    facts["etnaviv"] = os.path.isdir("/sys/module/etnaviv")
    facts["teflon"] = next((found for pattern in TEFLON_LIBRARIES for found in sorted(glob.glob(pattern))), None)
    for module in ("ksnn", "onnxruntime", "cv2", "tflite_runtime", "ai_edge_litert"):
        try:
            __import__(module)
            facts["backends"].append(module)
        except Exception:  # a broken optional backend only means it is not available
            pass
    return facts



ELF_MACHINES = {3: "i686", 62: "x86_64", 40: "armv7l", 183: "aarch64"}  # e_machine -> platform.machine()
MACHINE_FOLDERS = set(ELF_MACHINES.values())  # vim3/<machine>/libnn_<case>.so: a library built for that machine
NPU_BUILD_FACTS = b"edgepad-npu-build;"


def elf_machine(path):
    with open(path, "rb") as f:
        header = f.read(20)
    if len(header) < 20 or header[:4] != b"\x7fELF":
        return "not an ELF file"
    return ELF_MACHINES.get(int.from_bytes(header[18:20], "little"), "unknown")


def is_emulator_build(path):
    """edgepad's host build for VeriSilicon's x86 emulator records the emulator SDK in its build facts."""
    with open(path, "rb") as f:
        data = f.read()
    start = data.find(NPU_BUILD_FACTS)
    if start < 0:
        return False
    facts = data[start + len(NPU_BUILD_FACTS):data.find(b"\0", start)].split(b";")
    return any(fact.startswith(b"sdk=") and len(fact) > 4 for fact in facts)


def op_npu_libraries(req):
    """Make each NPU library of a release runnable on this board; say how, per library (relative path):

    installed  the bundle ships a build for this machine (vim3/<machine>/libnn_<case>.so, or the library itself)
    emulator   the library is the host's x86 emulator build and this board is x86-64 (the loopback board)
    built      built here from the shipped ovxlib case with vim3/build_board.sh (the board's gcc and ovxlib) into
               vim3/<machine>/libnn_<case>.so, which the runtime prefers
    A build that fails is an error naming the library and the build's last line."""
    root = req["root"]
    machine = platform.machine()
    how, errors = {}, []
    for library in req["libraries"]:
        path = inside(root, RELEASES, req["release"], library)
        folder, name = os.path.split(path)
        native = os.path.join(folder, machine, name)
        if os.path.isfile(native):
            found = elf_machine(native)
            if found != machine:
                errors.append("%s: the bundle's %s/%s is built for %s, this board is %s" % (library, machine, name,
                                                                                             found, machine))
            how[library] = "installed"
            continue
        if os.path.isfile(path) and elf_machine(path) == machine:
            how[library] = "emulator" if is_emulator_build(path) else "installed"
            continue
        script = os.path.join(folder, "build_board.sh")
        if not os.path.isfile(script):
            errors.append("%s: built for %s, this board is %s, and there is no build_board.sh beside it to build it "
                          "here" % (library, elf_machine(path) if os.path.isfile(path) else "nothing", machine))
            continue
        os.makedirs(os.path.dirname(native), exist_ok=True)
        build_dir = tempfile.mkdtemp(prefix="edgepad-npu-build-")
        env = dict(os.environ, OUT=native, BUILD_DIR=build_dir)
        env.pop("EMULATOR_SDK", None)
        try:
            done = subprocess.run(["bash", script], cwd=folder, env=env, stdin=subprocess.DEVNULL,
                                  stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=float(req["seconds"]))
            said = done.stdout.decode("utf-8", "replace").strip().splitlines()
            ok = done.returncode == 0 and os.path.isfile(native)
        except subprocess.TimeoutExpired:
            said, ok = ["did not finish within %s s" % req["seconds"]], False
        finally:
            shutil.rmtree(build_dir, ignore_errors=True)
        if not ok:
            errors.append("%s: building it on the board with build_board.sh failed: %s" % (
                library, said[-1] if said else "no output"))
            continue
        how[library] = "built"
    return {"machine": machine, "libraries": how, "error": "; ".join(errors) or None}



def read_holder(path):
    try:
        with open(path) as f:
            holder = json.load(f)
        return holder if isinstance(holder, dict) else {}
    except (OSError, ValueError):
        return {}


def hold_deploy_lock(req):
    """Hold ROOT/.deploy.lock (flock) until the deploy closes this command's stdin, or its connection drops.

    The file names the holder (the host's pid, host name, command and start time, and this process's pid) so
    that a deploy that finds it taken can say by whom, and `--break-lock` can end a holder whose client is gone
    but whose connection sshd has not noticed yet (ClientAliveInterval)."""
    import fcntl

    root = req["root"]
    os.makedirs(root, exist_ok=True)
    path = inside(root, LOCK_NAME)
    while True:
        fd = os.open(path, os.O_CREAT | os.O_RDWR, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            return {"ok": False, "error": "busy", "holder": read_holder(path)}
        try:
            same = os.stat(path).st_ino == os.fstat(fd).st_ino
        except OSError:
            same = False
        if same:
            break
        os.close(fd)  # the file was replaced by --break-lock between our open and our flock: take the new one
    holder = dict(req.get("holder") or {}, board_pid=os.getpid(), board_host=socket.gethostname(),
                  since=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
    os.ftruncate(fd, 0)
    os.write(fd, json.dumps(holder).encode())
    os.fsync(fd)
    sys.stdout.write(json.dumps({"ok": True, "result": {"locked": True}}) + "\n")
    sys.stdout.flush()
    sys.stdin.read()
    return None


def op_break_lock(req):
    """Free ROOT/.deploy.lock whoever holds it: end the board-side holder process (when it is one) and replace
    the file, so the next deploy takes a fresh lock at once. Returns who held it."""
    import fcntl

    path = inside(req["root"], LOCK_NAME)
    if not os.path.exists(path):
        return {"held": False, "holder": {}}
    holder = read_holder(path)
    fd = os.open(path, os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        held = False
    except OSError:
        held = True
    finally:
        os.close(fd)
    pid = holder.get("board_pid")
    if held and isinstance(pid, int) and is_lock_holder(pid):
        os.kill(pid, signal.SIGTERM)
    os.unlink(path)
    return {"held": held, "holder": holder}


def is_lock_holder(pid):
    """A pid from the lock file is only signalled when it is really this script holding the lock."""
    try:
        with open("/proc/%d/cmdline" % pid, "rb") as f:
            argv = f.read().split(b"\0")
    except OSError:
        return False
    argv = [a for a in argv if a]
    return bool(argv) and argv[-1] == b"lock" and b"hold_deploy_lock" in b" ".join(argv)


OPERATIONS = {
    "scan": op_scan, "prepare": op_prepare, "hash": op_hash, "finalize": op_finalize, "switch": op_switch,
    "publish": op_publish, "mark_failed": op_mark_failed, "prune": op_prune, "remove": op_remove,
    "space": op_space, "run": op_run, "facts": op_facts, "break_lock": op_break_lock,
    "npu_libraries": op_npu_libraries, "npu_driver": op_npu_driver,
}


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
        result = {"ok": False, "error": "%s: %s" % (type(error).__name__, error),
                  "errno": errno.errorcode.get(getattr(error, "errno", None) or 0)}
    sys.stdout.write(json.dumps(result))


if __name__ == "__main__":
    main()
