"""Enrichment: Python work that SQL does badly (shell parsing, typosquat distance, header and stream
checks), written to tables (`tool_call_indicators`, `tool_call_hosts`, `package_installs`,
`exchange_classes`, `flow_classes`, `stream_anomalies`) that the SQL rules query."""
