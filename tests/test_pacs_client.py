"""The PACS client's limits and logs (issue 31): a film larger than the upload limit is refused while it streams in,
before it is parsed (a local HTTP server that never stops sending, and a real Orthanc), and the long-running
commands log no study UID through dicomweb-client."""

from __future__ import annotations

import http.server
import os
import subprocess
import sys
import textwrap
import threading

import pytest
import requests

from medcore import config
from medcore.pacs.client import FilmTooLarge, PacsClient, PacsUnavailable
from medcore.pacs.demo import as_bytes, chest_study
from tests.synthetic import chest_like
from tests.test_pacs import PACS, needs_pacs, pacs  # noqa: F401 - the Orthanc fixture

LIMIT = 1 * 2**20
BOUNDARY = "medcore-test-boundary"
UIDS = ("1.2.826.0.1.3680043.8.498.11", "1.2.826.0.1.3680043.8.498.12", "1.2.826.0.1.3680043.8.498.13")


class WadoServer(http.server.ThreadingHTTPServer):
    """Answers every GET with one multipart/related DICOM part: `film` if given, else `total` bytes of filler sent
    in 64 KB chunks, with or without Content-Length; counts what it managed to send before the client hung up."""

    daemon_threads = True

    def __init__(self, film: bytes | None = None, total: int = 0, announce: bool = False) -> None:
        self.film, self.total, self.announce, self.sent, self.done = film, total, announce, 0, threading.Event()
        super().__init__(("127.0.0.1", 0), Handler)


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.0"  # no Content-Length needed: the body ends when the connection closes

    def log_message(self, *args) -> None:
        pass

    def do_GET(self) -> None:
        server: WadoServer = self.server
        head = f"--{BOUNDARY}\r\nContent-Type: application/dicom\r\n\r\n".encode()
        tail = f"\r\n--{BOUNDARY}--\r\n".encode()
        length = len(head) + (len(server.film) if server.film else server.total) + len(tail)
        self.send_response(200)
        self.send_header("Content-Type", f'multipart/related; type="application/dicom"; boundary={BOUNDARY}')
        if server.announce:
            self.send_header("Content-Length", str(length))
        self.end_headers()
        try:
            self.wfile.write(head)
            if server.film:
                self.wfile.write(server.film)
            else:
                chunk = bytes(2**16)
                while server.sent < server.total:
                    self.wfile.write(chunk)
                    server.sent += len(chunk)
            self.wfile.write(tail)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client stopped reading: what the limit is for
        finally:
            server.done.set()


def _serve(server: WadoServer) -> PacsClient:
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return PacsClient({"url": f"http://127.0.0.1:{server.server_address[1]}/dicom-web", "user": "medcore",
                       "password": "secret value", "ca_bundle": None})


@pytest.mark.parametrize("announce", [False, True], ids=["streamed", "announced"])
def test_a_film_larger_than_the_limit_stops_the_download_early(monkeypatch, announce):
    """A server that sends 96 MB (as a chunk stream without a length, or announcing it): refused after about the
    limit (1 MB here) plus what the sockets buffer, never read whole, and the message names neither server nor
    credentials. dicomweb-client's retrieve_instance read all 96 MB into memory before parsing it."""
    monkeypatch.setattr(config, "MAX_UPLOAD_BYTES", LIMIT)
    server = WadoServer(total=96 * 2**20, announce=announce)
    client = _serve(server)
    try:
        with pytest.raises(FilmTooLarge, match="larger than the 1 MB limit") as refused:
            client.instance(*UIDS)
        assert server.done.wait(30), "the server is still sending: the client kept reading"
        assert server.sent < 24 * 2**20, f"{server.sent / 2**20:.0f} MB were sent"
    finally:
        server.shutdown()
        server.server_close()
    assert not isinstance(refused.value, PacsUnavailable)  # the PACS works; this film is refused
    assert "127.0.0.1" not in str(refused.value) and "secret value" not in str(refused.value)
    assert ("announces" in str(refused.value)) == announce


def test_a_film_under_the_limit_is_fetched_and_parsed(xray_model):
    source = chest_study(chest_like(xray_model.artifact.quality_reference, 256, 256, seed=5), "Test^Small", "S-1",
                         "ACC-S1")
    server = WadoServer(film=as_bytes(source))
    client = _serve(server)
    try:
        fetched = client.instance(*UIDS)
    finally:
        server.shutdown()
        server.server_close()
    assert fetched.SOPInstanceUID == source.SOPInstanceUID and (fetched.pixel_array == source.pixel_array).all()


@needs_pacs
def test_orthanc_a_film_larger_than_the_limit_is_refused_without_reading_it(pacs, xray_model, monkeypatch):  # noqa: F811
    source = chest_study(chest_like(xray_model.artifact.quality_reference, 1024, 1024, seed=31), "Test^Large", "L-1",
                         "ACC-L1")
    pacs.store([source])
    size = len(as_bytes(source))
    read = []
    iter_content = requests.Response.iter_content

    def counted(self, *args, **kwargs):
        for chunk in iter_content(self, *args, **kwargs):
            read.append(len(chunk))
            yield chunk

    monkeypatch.setattr(requests.Response, "iter_content", counted)
    monkeypatch.setattr(config, "MAX_UPLOAD_BYTES", 256 * 2**10)
    assert size > 1.5 * 2**20
    with pytest.raises(FilmTooLarge, match="larger than the 0.25 MB limit"):
        pacs.instance(source.StudyInstanceUID, source.SeriesInstanceUID, source.SOPInstanceUID)
    assert sum(read) <= 256 * 2**10 + 2**20 < size  # at most the limit and one chunk; Orthanc announces the length
    monkeypatch.setattr(config, "MAX_UPLOAD_BYTES", 64 * 2**20)
    fetched = pacs.instance(source.StudyInstanceUID, source.SeriesInstanceUID, source.SOPInstanceUID)
    assert fetched.SOPInstanceUID == source.SOPInstanceUID


def test_the_watcher_logs_no_study_uid_through_dicomweb_client(tmp_path):
    """`medcore pacs watch` logs at INFO; dicomweb-client names study, series and instance UIDs at INFO. The real
    command's logging set-up, in its own process (pytest's own log handlers would hide what basicConfig does), with
    the watch loop replaced by one that logs as the library does, and queries Orthanc for real when it runs."""
    script = textwrap.dedent(f"""
        import logging, sys
        import medcore.pacs.watcher as watcher

        def watch(report=None):
            logging.getLogger("medcore").info("MedCore's own INFO line")
            logging.getLogger("dicomweb_client.web").info('search for series of study "{UIDS[0]}"')
            logging.getLogger("dicomweb_client").warning("a dicomweb-client warning")
            if {bool(PACS["url"])!r}:
                from medcore.pacs.client import PacsClient
                PacsClient().series("{UIDS[1]}")

        watcher.watch = watch
        from medcore.cli import main
        sys.exit(main(["pacs", "watch"]))
    """)
    env = {**os.environ, "MEDCORE_STORE_DIR": str(tmp_path / "store")}
    env.update({f"MEDCORE_PACS_{key.upper()}": value for key, value in PACS.items() if value})
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "MedCore's own INFO line" in done.stderr and "a dicomweb-client warning" in done.stderr
    assert UIDS[0] not in done.stderr and UIDS[1] not in done.stderr, done.stderr[-3000:]
