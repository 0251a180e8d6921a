"""StandIn for the `docker` CLI: there is no Docker engine on these machines.

Accepts only the documented forms edgepad uses (docs.docker.com/reference/cli/docker/):
  docker image inspect IMAGE
  docker build --tag|-t NAME --file|-f DOCKERFILE CONTEXT
  docker run [--rm] [--user|-u UID:GID] [--volume|-v SRC:DST[:ro]]... [--workdir|-w DIR] IMAGE COMMAND [ARG...]
`run` stands in for the container by running COMMAND on this host with every mounted DST path in its arguments
and working directory mapped back to SRC. Built images are remembered beside the record file. Anything else:
exit 125 with "StandIn docker: ..." on stderr, as the real client fails on unknown flags.
"""
import os
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from standins import record_call  # noqa: E402


def fail(message):
    sys.stderr.write("StandIn docker: %s\n" % message)
    sys.exit(125)


def images_file():
    record = os.environ.get("EDGEPAD_STANDIN_RECORD")
    if not record:
        fail("EDGEPAD_STANDIN_RECORD is not set")
    return Path(record).with_suffix(".images")


def built_images():
    path = images_file()
    return set(path.read_text().split()) if path.is_file() else set()


def image_inspect(args):
    if len(args) != 1:
        fail("usage: docker image inspect IMAGE")
    if args[0] not in built_images():
        sys.stderr.write("Error: No such image: %s\n" % args[0])
        sys.exit(1)
    print("[{}]")


def build(args):
    tag = dockerfile = None
    positional = []
    it = iter(args)
    for arg in it:
        if arg in ("--tag", "-t"):
            tag = next(it, None)
        elif arg in ("--file", "-f"):
            dockerfile = next(it, None)
        elif arg.startswith("-"):
            fail("unknown flag for build: %s" % arg)
        else:
            positional.append(arg)
    if not tag or len(positional) != 1:
        fail("usage: docker build --tag NAME [--file DOCKERFILE] CONTEXT")
    context = Path(positional[0])
    dockerfile = Path(dockerfile) if dockerfile else context / "Dockerfile"
    if not context.is_dir() or not dockerfile.is_file():
        fail("build context %s or Dockerfile %s does not exist" % (context, dockerfile))
    text = dockerfile.read_text()
    if "\nFROM " not in "\n" + text:
        fail("%s has no FROM instruction" % dockerfile)
    with open(images_file(), "a") as f:
        f.write(tag + "\n")
    print("Successfully tagged %s (StandIn: nothing was built)" % tag)


def run(args):
    mounts, workdir, image = [], None, None
    it = iter(args)
    for arg in it:
        if arg == "--rm":
            continue
        if arg in ("--user", "-u"):
            user = next(it, "")
            if ":" not in user:
                fail("--user expects UID:GID, got %r" % user)
        elif arg in ("--volume", "-v"):
            spec = next(it, "").split(":")
            if len(spec) not in (2, 3) or (len(spec) == 3 and spec[2] not in ("ro", "rw")):
                fail("--volume expects SRC:DST[:ro|rw], got %r" % ":".join(spec))
            if not os.path.isabs(spec[0]) or not Path(spec[0]).is_dir():
                fail("--volume source %s is not an existing absolute folder" % spec[0])
            mounts.append((spec[1], spec[0]))
        elif arg in ("--workdir", "-w"):
            workdir = next(it, None)
        elif arg.startswith("-"):
            fail("unknown flag for run: %s" % arg)
        else:
            image = arg
            break
    command = list(it)
    if image not in built_images():
        fail("image %s was never built" % image)
    if not command:
        fail("no command given")

    def to_host(value):
        for container_path, host_path in sorted(mounts, key=lambda m: -len(m[0])):
            if value == container_path or value.startswith(container_path + "/"):
                return host_path + value[len(container_path):]
        return value

    cwd = to_host(workdir) if workdir else os.getcwd()
    sys.exit(subprocess.call([to_host(a) for a in command], cwd=cwd))


def main(argv):
    record_call("docker", argv)
    if argv[:2] == ["image", "inspect"]:
        image_inspect(argv[2:])
    elif argv[:1] == ["build"]:
        build(argv[1:])
    elif argv[:1] == ["run"]:
        run(argv[1:])
    else:
        fail("unsupported command: docker %s" % " ".join(argv))


if __name__ == "__main__":
    main(sys.argv[1:])
