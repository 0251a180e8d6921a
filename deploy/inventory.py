"""Which boards: `--host` values (`[user@]host[:port]`) and `--inventory FILE` (one host per line, or Ansible INI).

Ansible INI: `[group]` sections list `name ansible_host=... ansible_port=... ansible_user=...` (and
`edgepad_remote_dir=...` for a board whose remote dir differs from --remote-dir); `[group:vars]`
and `[all:vars]` give defaults for ansible_user and ansible_port; `[group:children]` nests groups.
"""
from __future__ import annotations

import re
import shlex
from pathlib import Path

from edgepad.errors import InputFileError, UsageError

from .ssh import HostSpec

_HOST = re.compile(r"^(?:(?P<user>[^@\s]+)@)?(?:\[(?P<ip6>[0-9a-fA-F:.]+)\]|(?P<host>[^:\s\[\]@]+))"
                   r"(?::(?P<port>\d+))?$")
_ANSIBLE_KEYS = {
    "host": ("ansible_host", "ansible_ssh_host"),
    "port": ("ansible_port", "ansible_ssh_port"),
    "user": ("ansible_user", "ansible_ssh_user"),
}


def parse_host(text: str, user: str, port: int, where: str = "--host") -> HostSpec:
    match = _HOST.match(text.strip())
    if not match:
        raise UsageError(f"{where} {text!r}: expected [user@]host[:port], e.g. khadas@vim3.local:22")
    host = match["ip6"] or match["host"]
    if host.startswith("-"):
        raise UsageError(f"{where} {text!r}: a host name cannot start with '-'")
    return HostSpec(host, int(match["port"] or port), match["user"] or user)


def read_inventory(path: Path, user: str, port: int) -> list[HostSpec]:
    path = Path(path)
    try:
        lines = path.read_text().splitlines()
    except OSError as error:
        raise InputFileError(f"--inventory {path}: cannot read it ({error.strerror})") from None
    if any(_section(line) for line in lines):
        hosts = _ansible_ini(lines, path, user, port)
    else:
        hosts = [parse_host(line.split("#")[0], user, port, f"--inventory {path}:{n}")
                 for n, line in enumerate(lines, 1) if line.split("#")[0].strip()]
    if not hosts:
        raise InputFileError(f"--inventory {path}: no hosts in it; write one host per line, "
                             "or an Ansible INI inventory")
    return unique(hosts)


def unique(hosts: list[HostSpec]) -> list[HostSpec]:
    seen, result = set(), []
    for spec in hosts:
        if spec not in seen:
            seen.add(spec)
            result.append(spec)
    return result


def _section(line: str) -> str | None:
    stripped = line.strip()
    return stripped[1:-1].strip() if stripped.startswith("[") and stripped.endswith("]") else None


def _ansible_ini(lines: list[str], path: Path, user: str, port: int) -> list[HostSpec]:
    group_hosts: dict[str, list[tuple[str, dict, int]]] = {}
    group_vars: dict[str, dict] = {}
    children: dict[str, list[str]] = {}
    section = "ungrouped"
    for n, raw in enumerate(lines, 1):
        line = raw.strip()
        if not line or line[0] in "#;":
            continue
        name = _section(line)
        if name is not None:
            section = name
            continue
        group, _, kind = section.partition(":")
        where = f"--inventory {path}:{n}"
        if kind not in ("", "vars", "children"):
            raise InputFileError(f"{where}: section [{section}] is not [group], [group:vars] or [group:children]")
        if kind == "vars":
            key, equals, value = line.partition("=")
            if not equals or not key.strip():
                raise InputFileError(f"{where}: {line!r} in [{section}] is not key=value")
            group_vars.setdefault(group, {})[key.strip()] = value.strip()
        elif kind == "children":
            children.setdefault(group, []).append(line.split()[0])
        else:
            try:
                tokens = shlex.split(line, comments=True)
            except ValueError as error:
                raise InputFileError(f"{where}: cannot read {line!r} ({error}: close the quote)") from None
            if not tokens:
                continue
            if re.search(r"\[[^\]]*:[^\]]*\]", tokens[0]):
                raise InputFileError(f"--inventory {path}:{n}: host ranges like {tokens[0]} are not supported; "
                                     "list the hosts")
            variables = dict(t.split("=", 1) for t in tokens[1:] if "=" in t)
            group_hosts.setdefault(group, []).append((tokens[0], variables, n))

    def groups_of(group: str, chain: tuple[str, ...] = ()) -> list[str]:
        if group in chain:
            cycle = " -> ".join(chain[chain.index(group):] + (group,))
            raise InputFileError(f"--inventory {path}: the :children sections form a cycle ({cycle}); "
                                 "a group cannot contain itself")
        parents = [p for p, kids in children.items() if group in kids]
        return [group] + [g for p in parents for g in groups_of(p, chain + (group,))]

    for group in children:
        groups_of(group)  # a cycle is an error even when no host sits below it

    hosts = []
    for group, entries in group_hosts.items():
        defaults: dict = dict(group_vars.get("all", {}))
        for g in reversed(groups_of(group)):
            defaults.update(group_vars.get(g, {}))
        for alias, variables, n in entries:
            merged = {**defaults, **variables}
            address = _first(merged, "host") or alias
            spec = parse_host(address, _first(merged, "user") or user, port, f"--inventory {path}:{n}")
            port_text = _first(merged, "port")
            if port_text:
                if not port_text.isdigit():
                    raise InputFileError(f"--inventory {path}:{n}: ansible_port={port_text} is not a number")
                spec = HostSpec(spec.host, int(port_text), spec.user)
            if merged.get("edgepad_remote_dir"):
                spec = HostSpec(spec.host, spec.port, spec.user, merged["edgepad_remote_dir"])
            hosts.append(spec)
    return hosts


def _first(variables: dict, what: str) -> str | None:
    for key in _ANSIBLE_KEYS[what]:
        if variables.get(key):
            return variables[key]
    return None
