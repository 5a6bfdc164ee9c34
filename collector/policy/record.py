"""Gate decisions as `gate_decisions` rows: one shape for the proxy and the agent hook.

Arguments and evidence pass through collector.secrets before they become a row (a tool call can
carry a credential the router injected or the model echoed): rows hold placeholders and
fingerprints, never the raw secret; the fingerprints themselves go to `secrets_seen`.
"""

from __future__ import annotations

import datetime as dt

from collector import secrets
from collector.policy.model import ToolCall, Verdict

MAX_ARGUMENTS = 16 * 1024


def _ts(t: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(t, dt.UTC).replace(tzinfo=None)


def decision_row(call: ToolCall | None, verdict: Verdict, *, ts: float, host_id: str, source: str,
                 fp: secrets.Fingerprinter, policy: str, agent: str | None = None, router: str | None = None,
                 pid: int | None = None, flow_uid: str | None = None, exchange_id: str | None = None,
                 api: str | None = None, streamed: bool | None = None, held_ms: float | None = None,
                 session_id: str | None = None) -> tuple[dict, list[dict]]:
    """(gate_decisions row, secrets_seen rows for what the redaction found)."""
    found: list[dict] = []

    def clean(text: str | None, location: str) -> str | None:
        if not text:
            return text
        red, pairs = secrets.redact(text, fp)
        for m, f in pairs:
            if any(r["fingerprint"] == f for r in found):
                continue  # the same secret in the arguments and the evidence: one row
            found.append(secrets.secret_row(m, f, ts=_ts(ts), host_id=host_id, exchange_id=exchange_id,
                                            flow_uid=flow_uid, direction="response", location=location,
                                            destination=None))
        return red

    args = clean(call.arguments[:MAX_ARGUMENTS] if call is not None else None, "gate.arguments")
    row = {
        "ts": _ts(ts), "host_id": host_id, "source": source, "action": verdict.action, "rule_id": verdict.rule,
        "rules": list(dict.fromkeys(h.rule for h in verdict.hits)) or None,
        "reason": verdict.reason if verdict.hits else None, "detail": clean(verdict.detail, "gate.detail") or None,
        "agent": agent, "router": router, "pid": pid, "flow_uid": flow_uid, "exchange_id": exchange_id,
        "api": api or (call.api if call is not None else None), "tool_name": call.name if call is not None else None,
        "call_id": call.call_id if call is not None else None, "arguments": args, "streamed": streamed,
        "held_ms": held_ms, "policy": policy, "session_id": session_id,
    }
    return row, found
