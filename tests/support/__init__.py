"""Test support shared by the decryption, analyzer and agent-coverage suites: loopback packet capture
(`capture`) and real clients with TLS key logging (`clients`). The routers themselves live in
analyzer.demo (zoo, pki, agent) because `routerwatch demo` ships them to users."""
