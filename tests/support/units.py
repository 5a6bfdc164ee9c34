"""What the systemd units in deploy/systemd grant, for tests that run a command as a unit would."""

from __future__ import annotations

import re

from tests.conftest import REPO


def collector_caps() -> list[str]:
    """The collector unit's CapabilityBoundingSet, as setpriv names them (e.g. "bpf", "perfmon")."""
    text = (REPO / "deploy/systemd/routerwatch-collector.service").read_text()
    caps = re.search(r"^CapabilityBoundingSet=(.*)$", text, re.M).group(1).split()
    return [c.removeprefix("CAP_").lower() for c in caps]


def as_collector_unit(cmd: list[str]) -> list[str]:
    """`cmd` under setpriv with only the collector unit's capabilities (uid 0, no CAP_SYS_ADMIN)."""
    caps = ",".join(["-all", *(f"+{c}" for c in collector_caps())])
    return ["setpriv", f"--bounding-set={caps}", "--inh-caps=-all", "--", *cmd]
