"""Probe records -> store rows: TCP sockets become `flows`, exec/connect/DNS records `processes`,
getaddrinfo results and queries sent to port 53 `dns`. Vectorised over each drained batch; Python runs per distinct process or
address, not per event."""

from __future__ import annotations

import ipaddress
from datetime import UTC, datetime

import numpy as np
import pyarrow as pa

from collector.capture.community_id import community_ids
from collector.ebpf import events as ev
from collector.processes import ProcessTable
from collector.protocols.dns import QTYPES

EAI = {0: "NOERROR", -2: "NXDOMAIN", -3: "SERVFAIL", -5: "NODATA", -4: "FAIL", -11: "SYSTEM"}


def _const(value: str, n: int) -> pa.DictionaryArray:
    """A column holding one value (dictionary-encoded: no per-row Python strings)."""
    return pa.DictionaryArray.from_arrays(np.zeros(n, dtype=np.int8), [value])


class RowBuilder:
    """Stateful conversion (DNS names for server_name, the process table) shared across batches."""

    def __init__(self, host_id: str, processes: ProcessTable, clock: ev.Clock):
        self.host_id = host_id
        self.processes = processes
        self.clock = clock
        self.names: dict[str, str] = {}  # resolved address -> name (latest getaddrinfo)
        self._dnsq_cache: dict[bytes, tuple] = {}  # DNS query bytes after the id -> (name, qtype) or ()

    # -- flows ---------------------------------------------------------------------------------
    def flows(self, records: list[bytes]) -> tuple[pa.Table, np.ndarray]:
        """Closed TCP sockets -> a `flows` table (oriented originator -> responder)."""
        a = ev.stack(records, ev.CONN)
        if len(a) == 0:
            return pa.table({}), a
        table = self._flow_table(a)
        self._processes_of(a[a["owned"] == 1])
        return table, a

    def live_flow(self, state: bytes, sk: int, now_ns: int, opened_by: int | None = None) -> dict | None:
        """The `flows` row a socket still open will get when it is destroyed (flow_uid, community_id,
        tuple, direction, pid, ...), from its probes entry (loader.Probes.socket, events.SOCK_STATE):
        the destroy record of a tracked socket carries the entry's cookie and the same
        tuple, so the same columns come out. None until the entry holds a connected tuple, or when it
        was made after `opened_by` (kernel ns: e.g. the first plaintext seen on the socket), i.e. for
        another socket at a freed one's address."""
        st = np.frombuffer(state[: ev.SOCK_STATE.itemsize], dtype=ev.SOCK_STATE)[0]
        if not st["cookie"] or not st["dport"] or not st["sport"] or not st["established"]:
            return None
        if opened_by is not None and int(st["ts_first"]) > opened_by:
            return None
        a = np.zeros(1, dtype=ev.CONN)
        for f in ("tgid", "ppid", "uid", "start_ns", "cgroup_id", "comm", "outbound", "established", "owned",
                  "ts_first", "ts_established", "app_sent", "app_recv", "sport", "dport", "last_state", "rst",
                  "saddr", "daddr"):
            a[f] = st[f]
        a["type"] = ev.T_CONN
        a["family"] = 6 if st["family"] == 10 else 4
        a["sk"], a["cookie"], a["ts_end"] = sk, st["cookie"], now_ns
        return self._flow_table(a).to_pylist()[0]

    def _flow_table(self, a: np.ndarray) -> pa.Table:
        n = len(a)
        fam = np.where(a["family"] == 6, 6, 4).astype("u1")
        # sockets seen only at destroy (opened before the collector): guess by ephemeral port
        outbound = np.where(
            (a["owned"] == 1) | (a["established"] == 1) | (a["ts_first"] > 0),
            a["outbound"] == 1,
            (a["sport"] >= 32768) & (a["dport"] < 32768),
        )
        sport = np.where(outbound, a["sport"], a["dport"]).astype(np.int32)
        dport = np.where(outbound, a["dport"], a["sport"]).astype(np.int32)
        # tracked from connect/accept: the application's own byte counts (exact); else the kernel's
        tracked = a["ts_first"] > 0
        sent = np.where(tracked, a["app_sent"], a["k_sent"]).astype(np.int64)
        recv = np.where(tracked, a["app_recv"], a["k_recv"]).astype(np.int64)
        so, si = a["segs_out"].astype(np.int64), a["segs_in"].astype(np.int64)
        src_raw = np.where(outbound, a["saddr"], a["daddr"])
        dst_raw = np.where(outbound, a["daddr"], a["saddr"])
        src = ev.format_addrs(src_raw, fam)
        dst = ev.format_addrs(dst_raw, fam)
        owned = a["owned"] == 1
        pid = pa.array(a["tgid"].astype(np.int32), mask=~owned)
        pstart = pa.array(self.clock.process_start(a["start_ns"]), mask=~owned)
        ts_first = np.where(a["ts_first"] > 0, a["ts_first"], a["ts_end"])
        state, history = conn_state(outbound, a["established"] == 1, a["rst"], np.where(outbound, sent, recv) > 0,
                                    np.where(outbound, recv, sent) > 0)
        names = self.names
        server = [names.get(d) for d in dst.tolist()] if names else None
        return pa.table({
            "flow_uid": ev.flow_uids(self.host_id, self.clock.boot_epoch, a["cookie"]),
            "community_id": community_ids(6, ev.addr_rows(src_raw), sport, ev.addr_rows(dst_raw), dport, fam == 6),
            "host_id": _const(self.host_id, n),
            "ts_start": pa.array(self.clock.epoch_us(ts_first), pa.timestamp("us")),
            "ts_end": pa.array(self.clock.epoch_us(a["ts_end"]), pa.timestamp("us")),
            "proto": _const("tcp", n),
            "src_ip": pa.array(src.tolist(), pa.string()),
            "src_port": sport,
            "dst_ip": pa.array(dst.tolist(), pa.string()),
            "dst_port": dport,
            "bytes_out": np.where(outbound, sent, recv),
            "bytes_in": np.where(outbound, recv, sent),
            "packets_out": np.where(outbound, so, si),
            "packets_in": np.where(outbound, si, so),
            "server_name": pa.array(server, pa.string()) if server else pa.nulls(n, pa.string()),
            "pid": pid,
            "process_start": pstart,
            "source": _const("ebpf", n),
            "tcp_state": pa.array(state),
            "history": pa.array(history),
            "direction": pa.DictionaryArray.from_arrays(outbound.astype(np.int8), ["inbound", "outbound"]),
        })

    def _processes_of(self, a: np.ndarray, ts_field: str = "ts_end") -> None:
        """Each distinct (tgid, start) of a batch into the process table once (records carry a task_info)."""
        if len(a) == 0:
            return
        key = np.empty((len(a), 2), dtype=np.uint64)
        key[:, 0], key[:, 1] = a["tgid"], a["start_ns"]
        _, idx = np.unique(key.view(np.dtype((np.void, 16))).ravel(), return_index=True)
        starts = self.clock.process_start(a["start_ns"][idx])
        ts = self.clock.epoch_us(a[ts_field][idx]) / 1e6
        comms = ev.comm_text(a["comm"][idx])
        for j, i in enumerate(idx):
            r = a[i]
            self.processes.seen(int(r["tgid"]), ppid=int(r["ppid"]), start=float(starts[j]), uid=int(r["uid"]),
                                cgroup_id=int(r["cgroup_id"]), comm=comms[j], ts=float(ts[j]))

    # -- processes -------------------------------------------------------------------------------
    def execs(self, records: list[bytes]) -> int:
        a = ev.stack(records, ev.EXEC)
        if len(a) == 0:
            return 0
        starts = self.clock.process_start(a["start_ns"])
        ts = self.clock.epoch_us(a["ts"]) / 1e6
        comms = ev.comm_text(a["comm"])
        for i in range(len(a)):
            r = a[i]
            argv = bytes(r["args"])[: int(r["args_len"])]
            fname = r["filename"].split(b"\0", 1)[0].decode("utf-8", "replace")
            self.processes.seen(int(r["tgid"]), ppid=int(r["ppid"]), start=float(starts[i]), uid=int(r["uid"]),
                                cgroup_id=int(r["cgroup_id"]), comm=comms[i], exe=fname, argv=argv,
                                ts=float(ts[i]), is_exec=True)
        return len(a)

    # -- DNS -----------------------------------------------------------------------------------
    def dns(self, records: list[bytes]) -> list[dict]:
        a = ev.stack(records, ev.DNS)
        rows = []
        starts = self.clock.process_start(a["start_ns"]) if len(a) else []
        ts = self.clock.epoch_us(a["ts"]) if len(a) else []
        for i in range(len(a)):
            r = a[i]
            name = r["name"].split(b"\0", 1)[0].decode("utf-8", "replace")
            answers: list[str] = []
            for k in range(min(int(r["naddrs"]), 12)):
                ad = r["addrs"][k]
                raw = bytes(ad["addr"])
                if ad["family"] == 4:
                    text = str(ipaddress.IPv4Address(raw[:4]))
                elif ad["family"] == 6:
                    text = str(ipaddress.IPv6Address(raw))
                else:
                    continue
                if text not in answers:
                    answers.append(text)
            for addr in answers:
                self.names[addr] = name
            pid = int(r["tgid"])
            self.processes.seen(pid, ppid=int(r["ppid"]), start=float(starts[i]), uid=int(r["uid"]),
                                cgroup_id=int(r["cgroup_id"]), comm=ev.comm_text([r["comm"]])[0],
                                ts=float(ts[i]) / 1e6)
            rows.append({
                "ts": datetime.fromtimestamp(int(ts[i]) / 1e6, UTC).replace(tzinfo=None),
                "host_id": self.host_id, "query": name, "qtype": None,
                "rcode": EAI.get(int(r["ret"]), str(int(r["ret"]))), "answers": answers, "is_response": True,
                "pid": pid, "source": "ebpf-getaddrinfo",
            })
        if len(self.names) > 100_000:
            self.names.clear()
        return rows

    def dns_queries(self, records: list[bytes]) -> pa.Table:
        """Queries as sent to port 53 (a process's own resolver) -> `dns` rows with is_response false.

        Per row, Python does one bytes slice and one dict lookup: the question is parsed once per
        distinct message with the transaction id left out (cached across batches, so a resolver
        asking the same names again costs no parsing), ids and timestamps come from numpy, and
        processes go to the process table once per distinct (pid, start)."""
        a = ev.stack(records, ev.DNSQ)
        n = len(a)
        if n == 0:
            return pa.table({})
        base = ev.DNSQ.fields["data"][1]
        cache = self._dnsq_cache
        if len(cache) > 65536:
            cache.clear()
        names: list[str | None] = [None] * n
        qtypes: list[str | None] = [None] * n
        trans = a.view(ev.DNSQ_ID)["id"].astype(np.int32)
        for i, (r, ln) in enumerate(zip(records, a["len"].tolist(), strict=True)):
            key = r[base + 2 : base + ln]
            hit = cache.get(key)
            if hit is None:
                q = _parse_query(r[base : base + ln])
                hit = cache[key] = (q[0], QTYPES.get(q[1], str(q[1]))) if q is not None and q[3] == 0 else ()
            if hit:
                names[i], qtypes[i] = hit
                continue
            q = _parse_query(r[base : base + ln])  # TCP-framed, or not DNS: the id is elsewhere
            if q is not None:
                names[i], qtypes[i], trans[i] = q[0], QTYPES.get(q[1], str(q[1])), q[2]
        name_col = np.array(names, dtype=object)
        keep = np.flatnonzero(name_col != None)  # noqa: E711 (elementwise on an object array)
        if len(keep) == 0:
            return pa.table({})
        a = a[keep]
        self._processes_of(a, "ts")
        m = len(keep)
        return pa.table({
            "ts": pa.array(self.clock.epoch_us(a["ts"]), pa.timestamp("us")),
            "host_id": _const(self.host_id, m),
            "query": pa.array(name_col[keep].tolist(), pa.string()),
            "qtype": pa.array(np.array(qtypes, dtype=object)[keep].tolist(), pa.string()),
            "trans_id": trans[keep],
            "is_response": np.zeros(m, dtype=bool),
            "pid": a["tgid"].astype(np.int32),
            "source": _const("ebpf-udp53", m),
        })


def conn_state(outbound: np.ndarray, established: np.ndarray, rst: np.ndarray, data_orig: np.ndarray,
               data_resp: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Zeek-style conn_state and history from what the kernel saw of one socket (vectorised).

    `rst`: bit 0 reset received, bit 1 reset sent, bit 2 the sent one came first (probes.bpf.c). A
    socket's own resets are the originator's on an outbound socket and the responder's on an accepted
    one, so both ends of a loopback connection get the same state. History holds only the letters
    these events support, in this order: S (SYN), h (SYN-ACK: established), D/d (payload from the
    originator/responder), R/r (originator/responder reset, in the order they happened).
    """
    recv, sent, sent_first = (rst & 1) > 0, (rst & 2) > 0, (rst & 4) > 0
    orig_rst = np.where(outbound, sent, recv)
    resp_rst = np.where(outbound, recv, sent)
    orig_first = np.where(outbound, sent_first, recv & ~sent_first)
    any_rst = orig_rst | resp_rst
    state = np.select(
        [established & any_rst & orig_first, established & any_rst, established, resp_rst, orig_rst],
        ["RSTO", "RSTR", "SF", "REJ", "RSTOS0"], default="S0")
    h = np.full(len(rst), "S", dtype="U8")
    h = np.char.add(h, np.where(established, "h", ""))
    h = np.char.add(h, np.where(data_orig, "D", ""))
    h = np.char.add(h, np.where(data_resp, "d", ""))
    resets = np.select([orig_rst & resp_rst & orig_first, orig_rst & resp_rst, orig_rst, resp_rst],
                       ["Rr", "rR", "R", "r"], default="")
    return state, np.char.add(h, resets)


def parse_dns_query(data: bytes) -> tuple[str, int, int] | None:
    """(name, qtype, id) of the first question of a DNS query message; TCP's 2-byte length prefix
    is recognised. None for anything that is not a well-formed query."""
    q = _parse_query(data)
    return q[:3] if q is not None else None


def _parse_query(data: bytes) -> tuple[str, int, int, int] | None:
    """parse_dns_query plus the offset the message starts at (0, or 2 behind a TCP length prefix)."""
    for off in (2, 0):  # a length prefix that matches is TCP framing (else offset 0 may misparse it)
        if off == 2 and (len(data) < 2 or int.from_bytes(data[:2], "big") != len(data) - 2):
            continue
        msg = data[off:]
        if len(msg) < 17 or msg[2] & 0x80 or int.from_bytes(msg[4:6], "big") == 0:
            continue  # too short, a response, or no question
        labels, pos = [], 12
        while pos < len(msg) and msg[pos] != 0:
            n = msg[pos]
            if n > 63 or pos + 1 + n > len(msg):
                labels = None
                break
            labels.append(msg[pos + 1 : pos + 1 + n].decode("ascii", "replace"))
            pos += 1 + n
        if labels is None or pos + 5 > len(msg):
            continue
        return (".".join(labels) or ".", int.from_bytes(msg[pos + 1 : pos + 3], "big"), int.from_bytes(msg[:2], "big"),
                off)
    return None
