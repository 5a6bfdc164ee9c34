"""Router-configuration inventory: which LLM endpoint each agent is configured to use, and where
that setting came from (a live process's environment, a user's or a project's config file).

`scan.run()` is the library entry point (`routerwatch inventory` is a thin wrapper); it writes
`agent_configs` rows and, for credentials found in configs, `secrets_seen` rows (direction
'config', fingerprints only).
"""
