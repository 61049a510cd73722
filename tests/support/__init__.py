"""Helpers shared by the Python system tests (importable as `support` from any file under tests/).

- `support.net`: free loopback ports, HTTP calls and waiting for an endpoint (standard library only).
- `support.docker`: Docker engine / compose detection, builds with clean-up, health waits.
- `support.project`: the repository root and the variables of scripts/env.sh.
- `support.onnx_graphs`: small hand-built ONNX graphs (refused and accepted shapes) for the card builder.
"""
