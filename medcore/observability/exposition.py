"""The `/metrics` HTTP endpoint of a MedCore process, on a port of the operator's choice."""

from __future__ import annotations

from prometheus_client import REGISTRY, CollectorRegistry, start_http_server


def serve(port: int, address: str = "127.0.0.1", registry: CollectorRegistry = REGISTRY) -> str:
    """Serve `registry` on address:port in a daemon thread; its URL. Loopback by default: open it to the
    Prometheus server deliberately (--address), metrics say how the service is used."""
    start_http_server(port, addr=address, registry=registry)
    host = f"[{address}]" if ":" in address else address
    return f"http://{host}:{port}/metrics"
