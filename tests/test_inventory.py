"""Which boards a deploy goes to: --host values and inventory files (plain and Ansible INI)."""
from __future__ import annotations

import pytest

from edgepad.deploy.inventory import parse_host, read_inventory
from edgepad.deploy.ssh import HostSpec
from edgepad.errors import InputFileError, UsageError


@pytest.mark.parametrize("text, expected", [
    ("vim3.local", HostSpec("vim3.local", 22, "khadas")),
    ("root@10.0.0.5", HostSpec("10.0.0.5", 22, "root")),
    ("vim3:2222", HostSpec("vim3", 2222, "khadas")),
    ("pi@[fe80::1]:2200", HostSpec("fe80::1", 2200, "pi")),
])
def test_host_forms(text, expected):
    assert parse_host(text, "khadas", 22) == expected


@pytest.mark.parametrize("text", ["", "a b", "-oProxyCommand=x", "user@", "host:port"])
def test_bad_hosts_are_refused(text):
    with pytest.raises(UsageError, match="--host"):
        parse_host(text, "khadas", 22)


def test_one_host_per_line(tmp_path):
    path = tmp_path / "boards.txt"
    path.write_text("# lab\nvim3-a\nroot@vim3-b:2222  # bench board\n\nvim3-a\n")
    assert read_inventory(path, "khadas", 22) == [HostSpec("vim3-a", 22, "khadas"), HostSpec("vim3-b", 2222, "root")]


def test_ansible_ini_with_vars_and_children(tmp_path):
    path = tmp_path / "hosts.ini"
    path.write_text("""
[lab]
vim3-a ansible_host=10.0.0.5
vim3-b ansible_host=10.0.0.6 ansible_port=2222 ansible_user=root edgepad_remote_dir=/opt/edgepad

[shop]
vim3-c

[fleet:children]
lab
shop

[fleet:vars]
ansible_user=pi

[all:vars]
ansible_port=22
""")
    assert read_inventory(path, "khadas", 22) == [
        HostSpec("10.0.0.5", 22, "pi"), HostSpec("10.0.0.6", 2222, "root", "/opt/edgepad"),
        HostSpec("vim3-c", 22, "pi"),
    ]


def test_empty_or_ranged_inventories_are_refused(tmp_path):
    empty = tmp_path / "empty"
    empty.write_text("# nothing\n")
    with pytest.raises(InputFileError, match="no hosts"):
        read_inventory(empty, "khadas", 22)
    ranged = tmp_path / "ranged.ini"
    ranged.write_text("[lab]\nvim3-[01:10]\n")
    with pytest.raises(InputFileError, match="ranges"):
        read_inventory(ranged, "khadas", 22)


@pytest.mark.parametrize("text, expected", [
    ('[lab]\nvim3-a ansible_user="khadas\n', r"hosts\.ini:2: cannot read .*No closing quotation"),
    ("[fleet:children]\nlab\n[lab:children]\nfleet\n[lab]\nvim3-a\n",
     r"cycle \((fleet -> lab -> fleet|lab -> fleet -> lab)\)"),
    ("[lab:vars]\nansible_user\n[lab]\nvim3-a\n", r"hosts\.ini:2: 'ansible_user' in \[lab:vars\] is not key=value"),
    ("[lab:hosts]\nvim3-a\n", r"section \[lab:hosts\] is not"),
])
def test_malformed_ansible_inventory_is_one_line(tmp_path, text, expected):
    import subprocess
    import sys

    path = tmp_path / "hosts.ini"
    path.write_text(text)
    with pytest.raises(InputFileError, match=expected):
        read_inventory(path, "khadas", 22)
    ran = subprocess.run([sys.executable, "-m", "edgepad", "deploy", str(tmp_path / "bundle"),
                          "--inventory", str(path)], capture_output=True, text=True)
    assert ran.returncode != 0 and "Traceback" not in ran.stderr
    assert len(ran.stderr.strip().splitlines()) == 1 and ran.stderr.startswith("error: --inventory ")
