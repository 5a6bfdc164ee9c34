"""The policy gate's shared core: what a policy says (policy.py), which rules a tool call trips (screen.py),
the judge both enforcement points use (judge.py), decisions as store rows (record.py), the agent hook
(hook.py, install.py, outbox.py) and the dry run over stored exchanges (dryrun.py). The proxy's
rewriting of responses lives in collector.proxy.gate.
"""
