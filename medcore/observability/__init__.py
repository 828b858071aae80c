"""Prometheus metrics (prometheus_client): what an operator's Prometheus and Grafana watch instead of the pages.

- store_collector: read from the store at scrape time (`medcore metrics serve`): studies and notes by outcome from
  the audit log, job states and queue depth, production versions, the drift checks, the PACS watcher's last poll.
  One server reading the shared store sees every app server, worker and watcher at once.
- instruments: counted inside the long-running processes (`medcore pacs watch`, `medcore worker`): latencies,
  PACS errors, polls, jobs run; each process serves its own (`--metrics-port`).
- exposition: the HTTP endpoint.

Label values come from small fixed sets (reason codes, statuses, task names, model versions), never from ids of
patients, studies or users.
"""
