"""Many browser sessions at once against real MedCore servers (this machine only, loopback).

Each clinician session signs in, uploads its own film and explains its own note; one admin signs in and
out meanwhile. Checks: no errors, and no cross-talk (each session sees only its own file name and its own
note). Reports median and 95th-percentile response times per action, and the server-side time per study (the
`server_ms` each study's audit row carries: analysis alone, without the browsers' queueing).

    python benchmarks/concurrency.py --sessions 20                  # one server, SQLite
    python benchmarks/concurrency.py --sessions 20 --servers 2      # two servers on one PostgreSQL store
                                                                    # (MEDCORE_TEST_POSTGRES_URL: .ci/postgres)

    python benchmarks/concurrency.py --sessions 1 --admin-rounds 1 --out benchmarks/results/concurrency_alone.json
    python benchmarks/concurrency.py --write-readme                 # the README table from the three files

tests/test_concurrency.py runs the same code with a few sessions in CI.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from readme_blocks import replace_block  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
CHROMIUM = "/usr/bin/chromium"
PASSWORD = "concurrency test secret"
ADMIN = ("chief", "concurrency admin secret")
# On 2 cores twenty browsers take most of the CPU: a step may wait minutes for its turn. A slow step is measured,
# not counted as an error; only a step that never comes (10 minutes) is.
WAIT_MS = 600_000
WORDS = ["fever", "cough", "chills", "headache", "rash", "itching", "nausea", "fatigue"]


@dataclass
class Outcome:
    timings: dict[str, list[float]] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    cross_talk: list[str] = field(default_factory=list)

    def time(self, action: str, seconds: float) -> None:
        self.timings.setdefault(action, []).append(seconds)


FINDING = re.compile(r"^(Most likely|One of|Uncertain): ")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def add_clinicians(env: dict, clinicians: int) -> None:
    subprocess.run([sys.executable, "-c", "import sys; from medcore import auth; "
                    f"[auth.add_user(f'dr.load{{i}}', {PASSWORD!r}, 'clinician', 'benchmark') for i in range({clinicians})]"],
                   env=env, check=True, cwd=ROOT, timeout=300)


def start_server(store: Path, clinicians: int, env: dict | None = None) -> tuple[subprocess.Popen, str]:
    """The app with its own store folder, an admin from the environment and (clinicians > 0) that many accounts."""
    env = {**(env or os.environ), "MEDCORE_STORE_DIR": str(store), "MEDCORE_ADMIN_USER": ADMIN[0],
           "MEDCORE_ADMIN_PASSWORD": ADMIN[1]}
    if clinicians:
        add_clinicians(env, clinicians)
    port = _free_port()
    server = subprocess.Popen([sys.executable, "-m", "streamlit", "run", "app.py", "--server.port", str(port),
                               "--server.address", "127.0.0.1", "--server.headless", "true"],
                              env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 120
    while time.time() < deadline:
        try:
            if urllib.request.urlopen(f"{url}/_stcore/health", timeout=2).status == 200:
                return server, url
        except OSError:
            time.sleep(0.5)
    server.kill()
    raise RuntimeError("the app did not start within 120 s")


async def _sign_in(page, url: str, name: str, password: str, outcome: Outcome) -> None:
    await page.goto(url)
    await page.get_by_role("textbox", name="User name").fill(name)
    await page.get_by_role("textbox", name="Password").fill(password)
    started = time.perf_counter()
    await page.get_by_role("button", name="Sign in").click()
    await page.get_by_text("Signed in as").wait_for(timeout=WAIT_MS)
    outcome.time("sign in", time.perf_counter() - started)


async def clinician(browser, url: str, index: int, sessions: int, film: bytes, outcome: Outcome) -> None:
    context = await browser.new_context(viewport={"width": 1300, "height": 1400})
    context.set_default_timeout(WAIT_MS)
    page = await context.new_page()
    try:
        await _sign_in(page, url, f"dr.load{index}", PASSWORD, outcome)
        await page.get_by_text("Operating threshold").wait_for(timeout=WAIT_MS)
        own = f"session{index:02d}.png"
        started = time.perf_counter()
        await page.locator("input[type=file]").set_input_files(timeout=WAIT_MS, files=[{"name": own, "mimeType": "image/png",
                                                                "buffer": film}])
        await page.get_by_text("1 studies:").wait_for(timeout=WAIT_MS)
        await page.get_by_text("Grad-CAM: regions").first.wait_for(timeout=WAIT_MS)
        outcome.time("X-ray study (upload to Grad-CAM)", time.perf_counter() - started)
        body = await page.inner_text("body")
        others = [f"session{i:02d}.png" for i in range(sessions) if i != index]
        if own not in body or any(name in body for name in others):
            outcome.cross_talk.append(f"session {index}: X-ray page shows another session's study")

        await page.get_by_role("link", name="Case notes").click()
        await page.get_by_text("Paste the note").wait_for(timeout=WAIT_MS)
        marker = f"zz{index:02d}marker"
        note = f"Patient reports {WORDS[index % len(WORDS)]} and {WORDS[(index + 3) % len(WORDS)]}, {marker}."
        await page.get_by_role("textbox", name="Paste the note").fill(note)
        started = time.perf_counter()
        await page.get_by_role("button", name="Analyse").click()
        await page.get_by_text(FINDING).wait_for(timeout=WAIT_MS)  # "Most likely: …" or "One of: …"
        await page.get_by_text(marker).first.wait_for(timeout=WAIT_MS)
        outcome.time("case note (analyse to SHAP)", time.perf_counter() - started)
        body = await page.inner_text("body")
        if any(f"zz{i:02d}marker" in body for i in range(sessions) if i != index):
            outcome.cross_talk.append(f"session {index}: Case notes page shows another session's note")
        if "incident" in body or "Traceback" in body:
            outcome.errors.append(f"session {index}: an error on the page")
    except Exception as exc:  # a timeout or a missing element: counted, the other sessions go on
        outcome.errors.append(f"session {index}: {type(exc).__name__}: {str(exc).splitlines()[0][:200]}")
        try:  # what the person would have seen, for the diagnosis (screenshots/ is not committed)
            shots = ROOT / "screenshots"
            shots.mkdir(exist_ok=True)
            await page.screenshot(path=str(shots / f"concurrency_failed_session{index:02d}.png"), full_page=True,
                                  timeout=30_000)
        except Exception:
            pass
    finally:
        await context.close()


async def admin(browser, url: str, rounds: int, outcome: Outcome) -> None:
    for _ in range(rounds):
        context = await browser.new_context()
        context.set_default_timeout(WAIT_MS)
        page = await context.new_page()
        try:
            await _sign_in(page, url, *ADMIN, outcome)
            started = time.perf_counter()
            await page.get_by_role("button", name="Sign out").click()
            await page.get_by_role("button", name="Sign in").wait_for(timeout=WAIT_MS)
            outcome.time("admin sign out", time.perf_counter() - started)
        except Exception as exc:
            outcome.errors.append(f"admin: {type(exc).__name__}: {str(exc).splitlines()[0][:200]}")
        finally:
            await context.close()


async def run(urls: list[str], sessions: int, admin_rounds: int) -> Outcome:
    """Session i on server i % len(urls) (a load balancer with sticky sessions); the admin on the first."""
    from playwright.async_api import async_playwright

    from medcore.imaging.model import load_artifact
    from medcore.tasks import get
    from tests.synthetic import chest_like, encode

    reference = load_artifact(get("xray").shipped_dir).quality_reference
    films = [encode(chest_like(reference, 600, 500, seed=100 + i), "PNG") for i in range(sessions)]
    outcome = Outcome()
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True,
            args=["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run"])
        await asyncio.gather(*[clinician(browser, urls[i % len(urls)], i, sessions, films[i], outcome)
                               for i in range(sessions)], admin(browser, urls[0], admin_rounds, outcome))
        await browser.close()
    return outcome


def summarise(outcome: Outcome, sessions: int, seconds: float, servers: int, engine: str,
              server_ms: list[float]) -> dict:
    def percentile(values: list[float], q: float) -> float:
        ordered = sorted(values)
        return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]

    return {"sessions": sessions, "servers": servers, "store": engine, "wall_s": round(seconds, 1),
            "errors": outcome.errors, "cross_talk": outcome.cross_talk, "cpu_threads": os.cpu_count(),
            "actions": {action: {"n": len(values), "p50_s": round(statistics.median(values), 2),
                                 "p95_s": round(percentile(values, 0.95), 2)}
                        for action, values in outcome.timings.items()},
            "server_ms_per_study": {"n": len(server_ms), "p50": round(statistics.median(server_ms), 1),
                                    "p95": round(percentile(server_ms, 0.95), 1)} if server_ms else None}


def _server_ms(env: dict) -> list[float]:
    """What each study cost on its server (its audit row), read from the store the servers shared."""
    code = ("import json; from medcore import audit; print(json.dumps([r['detail']['server_ms'] for r in "
            "audit.events('predict_xray', 0) if r['detail'].get('server_ms') is not None]))")
    done = subprocess.run([sys.executable, "-c", code], env=env, cwd=ROOT, capture_output=True, text=True, timeout=300)
    return json.loads(done.stdout.strip().splitlines()[-1]) if done.returncode == 0 else []


def measure(sessions: int, admin_rounds: int = 3, servers: int = 1, postgres_admin_url: str | None = None) -> dict:
    """One server on SQLite, or `servers` servers on one new PostgreSQL database (postgres_admin_url may create
    databases; MEDCORE_TEST_POSTGRES_URL from .ci/postgres)."""
    from contextlib import ExitStack

    with ExitStack() as stack:
        folder = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="medcore-load-")))
        env = {k: v for k, v in os.environ.items() if k not in ("MEDCORE_DATABASE_URL", "MEDCORE_JOB_QUEUE")}
        env["MEDCORE_STORE_DIR"] = str(folder / "server-0")
        if servers > 1:
            if not postgres_admin_url:
                raise SystemExit("--servers > 1 needs PostgreSQL: eval $(.ci/postgres start)")
            sys.path.insert(0, str(ROOT))
            from tests.conftest import new_postgres_database

            os.environ.setdefault("MEDCORE_TEST_POSTGRES_URL", postgres_admin_url)
            env["MEDCORE_DATABASE_URL"] = stack.enter_context(new_postgres_database())
            env["MEDCORE_SHARED_DIR"] = str(folder / "shared")
        add_clinicians(env, sessions)
        started_servers = [start_server(folder / f"server-{i}", 0, {**env, "MEDCORE_SERVER_NAME": f"server-{i}"})
                           for i in range(servers)]
        try:
            started = time.perf_counter()
            outcome = asyncio.run(run([url for _, url in started_servers], sessions, admin_rounds))
            seconds = time.perf_counter() - started
        finally:
            for server, _ in started_servers:
                server.terminate()
                server.wait(timeout=30)
        return summarise(outcome, sessions, seconds, servers, "PostgreSQL" if servers > 1 else "SQLite",
                         _server_ms(env))


RESULTS = ROOT / "benchmarks" / "results"
START, END = "<!-- concurrency:start -->", "<!-- concurrency:end -->"
ACTIONS = ("sign in", "admin sign out", "X-ray study (upload to Grad-CAM)", "case note (analyse to SHAP)")


def readme_block() -> str:
    """The README's table: one server on SQLite, two on PostgreSQL, and one session alone, from their files."""
    runs = [json.loads((RESULTS / name).read_text()) for name in
            ("concurrency.json", "concurrency_servers_2.json", "concurrency_alone.json")]
    one, two, alone = runs
    lines = [f"| action | 1 server, SQLite: n, median (95th pct.) s | {two['servers']} servers, PostgreSQL: "
             "n, median (95th pct.) s | one session alone: median s |", "|---|---|---|---|"]
    def cell(run: dict, key: str) -> str:  # the loaded runs with their counts and spread, the lone one its median
        action = run["actions"][key]
        return f"{action['p50_s']}" if run is alone else f"{action['n']}, {action['p50_s']} ({action['p95_s']})"

    for key in ACTIONS:
        lines.append(f"| {key} | " + " | ".join(cell(r, key) for r in runs if key in r["actions"]) + " |")
    studies = [r["server_ms_per_study"] for r in runs]
    lines.append("| server time per study (ms, from the audit rows) | " + " | ".join(
        f"{s['p50']} ({s['p95']})" if s else "–" for s in studies) + " |")

    def problems(run: dict) -> str:
        found = [*run["errors"], *run["cross_talk"]]
        return "no errors and no cross-talk" if not found else "; ".join(found)

    note = (f"{one['sessions']} sessions; one server: {problems(one)} (wall time {one['wall_s']} s); two servers: "
            f"{problems(two)} (wall time {two['wall_s']} s); {one['cpu_threads']} CPU threads shared by the servers "
            "and the browsers.")
    rerun_file = RESULTS / "concurrency_servers_2_rerun.json"
    if rerun_file.is_file():  # the same two-server run again, kept beside the first
        rerun = json.loads(rerun_file.read_text())
        study = rerun["actions"]["X-ray study (upload to Grad-CAM)"]
        note += (f" The same two-server run again: {problems(rerun)}, X-ray study median {study['p50_s']} s (95th pct. "
                 f"{study['p95_s']} s), server time per study {rerun['server_ms_per_study']['p50']} ms (wall time "
                 f"{rerun['wall_s']} s).")
    return f"{START}\n" + "\n".join(lines) + f"\n\n{note}\n{END}"


def write_readme() -> None:
    replace_block(readme_block())


def main() -> None:
    if "--write-readme" in sys.argv[1:]:
        write_readme()
        print(readme_block())
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=20)
    parser.add_argument("--admin-rounds", type=int, default=3)
    parser.add_argument("--servers", type=int, default=1, help="several servers share one PostgreSQL store")
    parser.add_argument("--out", default=None, help="default: benchmarks/results/concurrency[_servers_N].json")
    args = parser.parse_args()
    result = measure(args.sessions, args.admin_rounds, args.servers, os.environ.get("MEDCORE_TEST_POSTGRES_URL"))
    args.out = args.out or str(ROOT / "benchmarks" / "results" /
                               ("concurrency.json" if args.servers == 1 else f"concurrency_servers_{args.servers}.json"))
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    sys.exit(1 if result["errors"] or result["cross_talk"] else 0)


if __name__ == "__main__":
    main()
