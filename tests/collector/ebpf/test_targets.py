"""Extra uprobe targets: binaries that define SSL_* themselves (node), found by their ELF symbols;
and a Node client that writes no key log, decoded live from the node binary's SSL_* uprobes."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from collector.ebpf.targets import defined_symbols, go_tls_symbols, ssl_binaries
from collector.store import Store
from tests.collector.live.conftest import live, needs_ebpf  # noqa: F401
from tests.support.fixtures import pki_dir, zoo  # noqa: F401

NODE = shutil.which("node")
needs_node = pytest.mark.skipif(NODE is None, reason="node is not installed (deploy/deps.sh --test installs it)")


@needs_node
def test_node_exports_ssl_symbols() -> None:
    (t,) = [x for x in ssl_binaries([NODE]) if x.kind == "node"]
    assert {"SSL_read", "SSL_write"} <= set(t.symbols)


def test_importers_and_non_elf_are_not_targets(tmp_path: Path) -> None:
    curl = shutil.which("curl")
    if curl:
        assert ssl_binaries([curl]) == []  # imports SSL_* from libssl: the libssl probes cover it
    junk = tmp_path / "junk"
    junk.write_bytes(b"#!/bin/sh\necho hi\n")
    assert ssl_binaries([str(junk)]) == [] and defined_symbols(tmp_path / "missing", ["SSL_read"]) == set()
    assert go_tls_symbols(sys.executable) == set()


NODE_AGENT = """
const [url] = process.argv.slice(1);
fetch(url + '/v1/chat/completions', {method: 'POST', headers: {'content-type': 'application/json',
  authorization: 'Bearer sk-uprobe-node-0000000000000000'}, body: JSON.stringify({model: 'gpt-4o',
  messages: [{role: 'user', content: 'run: ls'}], tools: [{type: 'function', function: {name: 'run_shell',
  parameters: {type: 'object', properties: {command: {type: 'string'}}}}}]})})
  .then(r => r.json()).then(j => console.log(JSON.stringify({pid: process.pid,
     args: j.choices[0].message.tool_calls[0].function.arguments})));
"""


@pytest.mark.ebpf
@needs_ebpf
@needs_node
def test_node_client_without_keylog_decoded_from_node_uprobes(live, zoo) -> None:  # noqa: ANN001, F811
    router = zoo("inject", alpn=("http/1.1",))
    (node,) = [t.path for t in ssl_binaries([NODE])]
    c = live("--no-capture", "--interval", "1", "--max-delay", "1", "--ssl-lib", node)
    assert f"@{node}" in c.output() or "ssl(" in c.output(), c.output()
    env = {"NODE_EXTRA_CA_CERTS": str(router.ca_path), "PATH": "/usr/bin:/bin"}
    p = subprocess.run([NODE, "-e", NODE_AGENT, router.url], capture_output=True, text=True, env=env, timeout=60)
    assert p.returncode == 0, p.stderr
    out = json.loads(p.stdout)
    assert c.stop() == 0, c.output()
    with Store.open(str(c.store), read_only=True) as s:
        rows = s.sql("SELECT exchange_id, pid, api, source FROM llm_exchanges WHERE source = 'uprobe' AND pid = ?",
                     [out["pid"]]).fetchall()
        assert rows, c.output()
        calls = s.sql("SELECT arguments FROM tool_calls WHERE exchange_id = ? AND direction = 'response'",
                      [rows[0][0]]).fetchall()
    assert rows[0][2] == "openai.chat"
    assert json.loads(calls[0][0])["command"] == json.loads(out["args"])["command"]
