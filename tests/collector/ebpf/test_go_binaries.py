"""Go binaries as uprobe targets, without BPF: function addresses from .symtab and from .gopclntab agree,
RET offsets match the Go toolchain's own disassembler, versions/ABIs we cannot probe are refused, and
a running Go process is found among the candidate paths."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from collector.ebpf.go_tls import READ, WRITE, GoRefused, go_tls_targets, inspect
from collector.ebpf.gopclntab import go_binary
from collector.ebpf.targets import candidate_paths
from tests.support.goclient import GO, goclient_cmd, goclients  # noqa: F401


def _go_version() -> str:
    return subprocess.run([GO or "go", "env", "GOVERSION"], capture_output=True, text=True).stdout.strip()


def test_symtab_and_pclntab_agree(goclients) -> None:  # noqa: F811
    with go_binary(goclients["symtab"]) as g:
        assert g.has_symtab and g.buildinfo()[0] == _go_version()
        sym = g._from_symtab([WRITE, READ])
        pcl = g._from_pclntab([WRITE, READ])
    with go_binary(goclients["stripped"]) as s:
        assert not s.has_symtab
        stripped = s.functions([WRITE, READ])
    for name in (WRITE, READ):
        assert sym[name].entry == pcl[name].entry == stripped[name].entry
        assert stripped[name].source == "pclntab"
        # pclntab's end is the next function's entry: the symbol's size plus alignment padding
        assert sym[name].size <= pcl[name].size < sym[name].size + 64


def test_ret_offsets_match_go_objdump(goclients) -> None:  # noqa: F811
    t = inspect(goclients["stripped"])
    assert t is not None and t.stripped and t.go_version == _go_version()
    for fn in (t.write, t.read):
        pattern = "^" + re.escape(fn.name) + "$"
        out = subprocess.run([GO or "go", "tool", "objdump", "-s", pattern, str(goclients["symtab"])],
                             capture_output=True, text=True, check=True).stdout
        rets = [int(m.group(1), 16) for m in re.finditer(r"^\s+\S+\s+0x([0-9a-f]+)\s+\S+\s+RET\b", out, re.M)]
        assert rets and rets == fn.rets, (fn.name, [hex(r) for r in rets], [hex(r) for r in fn.rets])
        assert fn.entry == int(re.search(r"^\s+\S+\s+0x([0-9a-f]+)", out, re.M).group(1), 16)


def test_unsupported_go_is_refused(goclients, tmp_path: Path) -> None:  # noqa: F811
    data = goclients["symtab"].read_bytes()
    i = data.index(b"go1.", data.index(b"\xff Go buildinf:"))
    old = tmp_path / "go116"
    old.write_bytes(data[: i + 4] + b"16" + data[i + 6:])  # go1.19.x -> go1.16.x (same length)
    with pytest.raises(GoRefused, match="stack ABI"):
        inspect(old)
    # a stripped binary whose pclntab is the pre-1.18 layout: no way to find the functions
    with go_binary(goclients["stripped"]) as g:
        off = g.sections[".gopclntab"].offset
    data = bytearray(goclients["stripped"].read_bytes())
    data[off:off + 4] = (0xFFFFFFFA).to_bytes(4, "little")
    (tmp_path / "old-pclntab").write_bytes(bytes(data))
    with pytest.raises(GoRefused, match="pclntab"):
        inspect(tmp_path / "old-pclntab")
    targets, refused = go_tls_targets([str(old), str(goclients["stripped"]), sys.executable])
    assert [t.path for t in targets] == [str(goclients["stripped"])] and list(refused) == [str(old)]
    assert inspect(sys.executable) is None  # not Go


def test_running_go_process_is_a_candidate(goclients, tmp_path: Path) -> None:  # noqa: F811
    p = subprocess.Popen(goclient_cmd(goclients["stripped"], "https://127.0.0.1:1", wait=tmp_path / "never"))
    try:
        paths = candidate_paths()
        assert str(goclients["stripped"]) in paths
        targets, _ = go_tls_targets(paths)
        assert str(goclients["stripped"]) in [t.path for t in targets]
    finally:
        p.kill()
        p.wait()


def test_go_agent_cli_on_path_is_probed_ahead(goclients, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: F811
    """A one-shot `crush run …` makes its request before an exec-time attach could happen: agent CLIs
    on PATH are candidates from the start (here the test client installed under that name)."""
    bindir = tmp_path / "bin"
    bindir.mkdir()
    crush = bindir / "crush"
    crush.write_bytes(goclients["stripped"].read_bytes())
    crush.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bindir}:/usr/bin:/bin")
    paths = candidate_paths(include_processes=False)
    assert str(crush) in paths
    assert [t.path for t in go_tls_targets(paths)[0]] == [str(crush)]
