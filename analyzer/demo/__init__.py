"""The demo kit: a loopback router zoo (honest and malicious LLM API routers over real TLS), its PKI,
and a scripted agent on the real openai/anthropic SDKs. `routerwatch demo` and the tests build on it."""
