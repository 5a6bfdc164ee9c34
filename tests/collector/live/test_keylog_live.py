"""An agent run through `routerwatch wrap` is decrypted live from the capture ring and its key log,
linked to its flow and process, and its key log is deleted after use; its connection, seen by eBPF
and by the capture, is one `ebpf+pcap` flow."""

from __future__ import annotations

import json
import os
import subprocess
import time
from urllib.parse import urlparse

import pytest

from collector.store import Store
from tests.collector.live.conftest import needs_ebpf
from tests.conftest import BIN, REPO
from tests.support.clients import agent_cmd
from tests.support.fixtures import pki_dir, zoo  # noqa: F401

pytestmark = [pytest.mark.ebpf, needs_ebpf]


def test_wrapped_agent_is_decrypted_live_and_keys_deleted(live, zoo, tmp_path):  # noqa: F811
    router = zoo("honest")
    keydir = tmp_path / "keys"
    env = {"ROUTERWATCH_KEYLOG_DIR": str(keydir)}
    # --no-ssl: the plaintext must come from the capture + key log, not from the uprobes
    c = live("--no-ssl", "--iface", "lo", "--capture-dir", str(tmp_path / "cap"), "--interval", "1",
             "--max-delay", "1", env=env)
    e = dict(os.environ, **env, SSL_CERT_FILE=str(router.ca_path))
    e.pop("SSLKEYLOGFILE", None)
    p = subprocess.run([str(BIN / "routerwatch"), "wrap", "--",
                        *agent_cmd(router.url, "openai", ca=router.ca_path, extra=["--no-exec"])],
                       cwd=REPO, env=e, capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and list(keydir.glob("wrap-*.keylog")):
        time.sleep(0.5)
    assert c.stop() == 0, c.output()
    assert not list(keydir.glob("wrap-*")), list(keydir.iterdir())  # key material deleted after use
    with Store.open(str(c.store), read_only=True) as s:
        rows = s.sql("""
            SELECT e.api, e.source, e.pid, f.pid, f.dst_port, p.ppid, p.exe
            FROM llm_exchanges e JOIN flows f ON f.flow_uid = e.flow_uid
            LEFT JOIN processes p ON p.pid = f.pid AND p.start_time = f.process_start
            WHERE e.source = 'keylog'""").fetchall()
        detail = json.loads(s.sql("SELECT detail FROM collector_stats ORDER BY ts DESC LIMIT 1").fetchone()[0])
        # one connection seen by eBPF and by the capture is one flow: a single ebpf+pcap row for the
        # agent's end (the router's accepted socket on this host keeps its own 'ebpf' row, same Community ID)
        merged = s.sql("""
            SELECT f.flow_uid, f.source, f.capture_id, f.server_name, f.pid, f.bytes_out, f.tcp_state,
                   (SELECT count(*) FROM flows o WHERE o.community_id = f.community_id AND o.direction = 'outbound'),
                   (SELECT count(*) FROM flows o WHERE o.flow_uid = f.flow_uid),
                   (SELECT list(o.source) FROM flows o WHERE o.community_id = f.community_id
                    AND o.direction = 'inbound')
            FROM flows f JOIN llm_exchanges e ON e.flow_uid = f.flow_uid WHERE e.source = 'keylog'""").fetchall()
    assert rows, (detail, c.output())
    api, source, epid, fpid, dport, ppid, exe = rows[0]
    assert api == "openai.chat" and dport == router.port
    assert epid == fpid and ppid is not None and "python" in exe  # the agent, a child of the wrapper
    assert detail["keylog_flows_decrypted"] >= 1 and detail["keylog_decrypt_errors"] == 0
    _uid, fsource, capture_id, server_name, pid, bytes_out, state, outbound_rows, uid_rows, inbound = merged[0]
    assert (fsource, outbound_rows, uid_rows, pid) == ("ebpf+pcap", 1, 1, fpid), merged
    assert capture_id.startswith("seg_") and bytes_out > 0 and state == "SF", merged
    host = urlparse(router.url).hostname
    if not host.replace(".", "").isdigit():  # a name: the capture's SNI
        assert server_name == host, merged
    assert inbound == ["ebpf"], merged
    assert detail["flows_ebpf_pcap"] >= 1
