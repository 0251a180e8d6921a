"""Which NBGs the board's NPU driver (VeriSilicon's galcore kernel module and its user-space libraries) can load.

An NBG carries its format in its header (the 32-bit word at byte 4; the card's `targets.vim3.nbg_format`). A
VeriSilicon runtime reads NBGs up to the format it was built with and refuses newer ones (TIM-VX's NBG reader,
src/tim/utils/nbg_parser/nbg_parser.c: `header->version > NBG_FORMAT_VERSION` fails with "NBG parser is forward
compatible with NBG format, please update NBG parser in time"), and Khadas rebuilt every KSNN demo NBG when their
images moved to a new galcore (github.com/khadas/ksnn, below). The board's driver version comes from the board,
which is not trusted: only a version that parses is used, anything else counts as unknown.

Verdicts: "incompatible" only where the documents below say the pair cannot load (the NBG's format is newer than
the format documented for a driver at least as new as the board's); "compatible" where Khadas published NBGs of
that format for that driver; everything else "unknown" (a warning, never a refusal), including an older format on
a newer driver, a board without galcore and a driver newer than any documented here.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

# galcore version -> the NBG format of the NBGs Khadas published for it. Source: github.com/khadas/ksnn, the demo
# models under examples/*/models/ (header word at byte 4, read from the repository's history):
#   6.4.6.2: commits 42760ac, 021fa75, 828d796 (2021-12-08, "update ... to ksnn v1.2, npu version 6.4.6.2"): 0x0001000e
#   6.4.8.7: commits e794c2c, a00b225, 1ae5f48 (2022-03-24, "ksnn v1.3: ... demo to npu 6.4.8.7"): 0x0001000f,
#            and still 0x0001000f in KSNN 1.4's yolov8n demo (a96395c, 2024-04-10)
# Khadas' earlier images shipped 6.4.4.3 (Paddle Lite's TIM-VX guide asks for 6.4.4.3 on the A311D); no document
# pairs it with an NBG format, but it is older than 6.4.6.2, so it cannot read formats newer than 0x0001000e.
DRIVER_NBG_FORMATS = {(6, 4, 6, 2): 0x0001000E, (6, 4, 8, 7): 0x0001000F}
DOCUMENTED_BY = "github.com/khadas/ksnn demo NBGs per driver; TIM-VX nbg_parser refuses newer NBG formats"
_VERSION = re.compile(r"^(\d{1,3})\.(\d{1,3})\.(\d{1,3})(?:\.(\d{1,6}))?(?:[.+_-][0-9A-Za-z.+_-]{0,40})?$")


@dataclass
class DriverCheck:
    """The board's driver against one model's NBG."""

    model: str
    verdict: str  # compatible, incompatible, unknown
    reason: str
    nbg_format: str | None = None
    toolkit: str | None = None

    def to_json(self) -> dict:
        return {"model": self.model, "verdict": self.verdict, "reason": self.reason, "nbg_format": self.nbg_format,
                "toolkit": self.toolkit}


@dataclass
class DriverCompatibility:
    """The board's NPU driver against every NBG of a release."""

    driver: str | None  # the version as the board reported it (None: no galcore found)
    source: str | None
    checks: list[DriverCheck] = field(default_factory=list)

    @property
    def incompatible(self) -> list[DriverCheck]:
        return [c for c in self.checks if c.verdict == "incompatible"]

    @property
    def verdict(self) -> str:
        if not self.checks:
            return "no NBG"
        if self.incompatible:
            return "incompatible"
        return "compatible" if all(c.verdict == "compatible" for c in self.checks) else "unknown"

    def refusal(self, host: str) -> str | None:
        """One line when the release cannot load on this board, else None."""
        if not self.incompatible:
            return None
        first = self.incompatible[0]
        others = f" (and {len(self.incompatible) - 1} more model(s))" if len(self.incompatible) > 1 else ""
        return (f"{host}: refused before any upload: model '{first.model}': {first.reason}{others}; convert with "
                f"a toolkit whose NBG format this driver loads (--npu-toolkit khadas-sdk with Khadas' SDK for the "
                f"board's image) or update the board's NPU driver; nothing was changed on the board")

    def warnings(self) -> list[str]:
        return [f"model '{c.model}': {c.reason}" for c in self.checks if c.verdict == "unknown"]

    def to_json(self) -> dict:
        return {"driver": self.driver, "source": self.source, "verdict": self.verdict,
                "models": [c.to_json() for c in self.checks], "documented_by": DOCUMENTED_BY}


def parse_driver_version(text) -> tuple[int, ...] | None:
    """'6.4.4.3.310723AAA' -> (6, 4, 4, 3); None for anything that is not a plain version (the board is untrusted)."""
    if not isinstance(text, str) or len(text) > 64:
        return None
    match = _VERSION.match(text.strip())
    if not match:
        return None
    return tuple(int(part) for part in match.groups() if part is not None)


def parse_nbg_format(text) -> int | None:
    if isinstance(text, int):
        return text
    try:
        return int(str(text), 16) if text else None
    except ValueError:
        return None


def check_nbg(model: str, driver: str | None, nbg_format: str | None, toolkit: str | None = None) -> DriverCheck:
    """One model's NBG (its card's nbg_format) against the board's galcore version."""
    shown = f"NBG format {nbg_format}" + (f" ({toolkit})" if toolkit else "")
    fmt = parse_nbg_format(nbg_format)
    if fmt is None:
        return DriverCheck(model, "unknown", f"its card does not record the NBG format; {_driver_words(driver)}",
                           nbg_format, toolkit)
    version = parse_driver_version(driver)
    if version is None:
        return DriverCheck(model, "unknown", f"{shown}, {_driver_words(driver)}: cannot tell whether it loads",
                           nbg_format, toolkit)
    key = _four(version)
    documented = DRIVER_NBG_FORMATS.get(key)
    if documented is not None and fmt == documented:
        return DriverCheck(model, "compatible", f"{shown} on galcore {driver}: the format of Khadas' own NBGs for "
                           f"that driver", nbg_format, toolkit)
    newer = [(v, f) for v, f in sorted(DRIVER_NBG_FORMATS.items()) if v >= key and v[:2] == key[:2]]
    if newer and fmt > newer[0][1]:
        bound_version, bound = newer[0]
        basis = "" if bound_version == key else f" (no newer than galcore {'.'.join(map(str, bound_version))}'s)"
        return DriverCheck(model, "incompatible", f"{shown} is newer than galcore {driver} can load: its NBG "
                           f"formats go up to 0x{bound:08x}{basis}", nbg_format, toolkit)
    return DriverCheck(model, "unknown", f"{shown} on galcore {driver}: no document pairs them (known: "
                       f"{_known()}); it may not load", nbg_format, toolkit)


def check_release(cards: dict, driver: str | None, source: str | None) -> DriverCompatibility:
    """The board's driver against the NBG of every model card that has one (targets.vim3)."""
    result = DriverCompatibility(driver if isinstance(driver, str) else None, source)
    for name, card in sorted(cards.items()):
        top = card.targets.vim3
        # a fully convolutional net (PNet) has one NBG per input size, each entry with its own header facts
        entries = [(name, top)] + [(f"{name} {size}", entry) for size, entry in sorted((top.sizes or {}).items())] \
            if top is not None else []
        for label, entry in entries:
            if not (entry.nbg or entry.nb or entry.nbg_format):
                continue
            toolkit = " ".join(str(p) for p in (entry.toolkit or top.toolkit, entry.toolkit_version
                                                or top.toolkit_version) if p) or None
            result.checks.append(check_nbg(label, result.driver, entry.nbg_format, toolkit))
    return result


def _four(version: tuple[int, ...]) -> tuple[int, ...]:
    return tuple(version) + (0,) * (4 - len(version))


def _driver_words(driver) -> str:
    if driver is None:
        return "the board has no galcore NPU driver (no /sys/module/galcore, modinfo or kernel log line)"
    return f"the board's galcore version {str(driver)[:64]!r} is not a version edgepad can read"


def _known() -> str:
    return ", ".join(f"galcore {'.'.join(map(str, v))} -> 0x{f:08x}" for v, f in sorted(DRIVER_NBG_FORMATS.items()))
