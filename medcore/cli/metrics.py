"""`medcore metrics serve --port P`: Prometheus metrics of the installation, read from its store at each scrape."""

from __future__ import annotations

import argparse
import signal
import threading

from medcore.cli.common import configure_logging, emit


def cmd_metrics_serve(args: argparse.Namespace) -> int:
    """Serve /metrics until stopped (SIGTERM or Ctrl-C); prints one JSON line with the URL once it listens."""
    from prometheus_client import CollectorRegistry

    from medcore import store
    from medcore.observability import drift_state
    from medcore.observability.exposition import serve
    from medcore.observability.store_collector import StoreCollector

    configure_logging()
    store.engine()  # a store that cannot be opened (or is newer than this code) is said now, not at each scrape
    registry = CollectorRegistry()
    registry.register(StoreCollector())
    list(drift_state.families())  # starts the drift checks now, in the background, for the first scrapes
    url = serve(args.port, args.address, registry)
    emit({"metrics": url, "store": store.describe()})
    stopped = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopped.set())
    try:
        stopped.wait()
    except KeyboardInterrupt:
        pass
    return 0


def port(text: str) -> int:
    value = int(text)
    if not 1 <= value <= 65535:
        raise argparse.ArgumentTypeError("a port is 1 to 65535")
    return value


ADDRESS_HELP = "the address to listen on (default 127.0.0.1; 0.0.0.0 for a Prometheus on another machine)"


def add_process_metrics(parser: argparse.ArgumentParser) -> None:
    """--metrics-port / --metrics-address for a long-running command (`worker`, `pacs watch`)."""
    parser.add_argument("--metrics-port", type=port, help="serve this process's Prometheus metrics on this port")
    parser.add_argument("--metrics-address", default="127.0.0.1", help=ADDRESS_HELP)


def start_process_metrics(args: argparse.Namespace) -> None:
    """Serve the process's own metrics (medcore.observability.instruments) when --metrics-port was given."""
    if args.metrics_port:
        import sys

        from medcore.observability import instruments  # noqa: F401 - its metrics, registered on import
        from medcore.observability.exposition import serve

        print(f"medcore: metrics on {serve(args.metrics_port, args.metrics_address)}", file=sys.stderr, flush=True)


def register(commands) -> None:
    metrics = commands.add_parser("metrics", help="Prometheus metrics read from the store").add_subparsers(
        dest="action", required=True)
    serve = metrics.add_parser("serve", help="serve /metrics: studies, notes, jobs, production versions, drift, "
                                             "the PACS watcher")
    serve.add_argument("--port", type=port, required=True, help="serve /metrics on this port")
    serve.add_argument("--address", default="127.0.0.1", help=ADDRESS_HELP)
    serve.set_defaults(func=cmd_metrics_serve)
