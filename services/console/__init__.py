"""mlbus console: the web page where people see the platform and make their decisions — a service of its own.

`python -m services.console [--port 8080] [--host H]` runs it; `mlbus up` starts it as the `console` service and
`mlbus console` runs it in the foreground. It reads the topics as the broker principal `console` (a reader of what
the screens show) and publishes the acts people sign in their browser (their private key never reaches it) as
that principal. Beyond 127.0.0.1 it serves HTTPS with a certificate from the local CA. Reference: docs/console.md.
Like every service it imports only services.bus and services.domain."""
