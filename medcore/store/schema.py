"""Every table MedCore keeps, declared once for SQLite and PostgreSQL alike (SQLAlchemy Core).

Times are epoch seconds (floats); JSON travels as text. Constraints and indexes are named, so that migrations can
refer to them on both engines. The migrations in medcore/store/migrations create exactly these tables; a test
checks that a migrated database matches this declaration.
"""

from __future__ import annotations

from sqlalchemy import (
    Boolean,
    CheckConstraint,
    Column,
    Float,
    Index,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
    false,
)

metadata = MetaData(naming_convention={
    "ix": "ix_%(table_name)s_%(column_0_N_name)s", "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s", "pk": "pk_%(table_name)s"})

# The model registry: one row per immutable version folder; one production pointer per task; every change of it.
versions = Table(
    "versions", metadata,
    Column("task", String(64), nullable=False),
    Column("version", String(128), nullable=False),
    Column("folder", Text, nullable=False),  # relative to the models folder's parent (the shared folder)
    Column("created_at", Float, nullable=False),
    Column("created_by", String(128), nullable=False),
    Column("origin", String(64), nullable=False),
    Column("manifest", Text, nullable=False),  # JSON: file name -> SHA-256
    Column("summary", Text, nullable=False),  # JSON: metrics, options, data, labels, threshold
    Column("discarded_at", Float),
    PrimaryKeyConstraint("task", "version"),
)
production = Table(
    "production", metadata,
    Column("task", String(64), primary_key=True),
    Column("version", String(128), nullable=False),
)
promotions = Table(
    "promotions", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("task", String(64), nullable=False),
    Column("version", String(128), nullable=False),
    Column("previous", String(128)),
    Column("at", Float, nullable=False),
    Column("actor", String(128), nullable=False),
    Column("action", String(64), nullable=False),
    Index(None, "task", "id"),
)

# Accounts and the sign-in throttle (shared by every app server).
users = Table(
    "users", metadata,
    Column("name", String(64), primary_key=True),
    Column("role", String(16), nullable=False),
    Column("password_hash", String(128), nullable=False),
    Column("created_at", Float, nullable=False),
    Column("created_by", String(128), nullable=False),
    Column("disabled_at", Float),
    CheckConstraint("role IN ('clinician', 'admin')", name="role"),
)
sign_in_failures = Table(
    "sign_in_failures", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("client", String(256), nullable=False),
    Column("name", String(256), nullable=False),
    Column("at", Float, nullable=False),
    Index(None, "name", "at"),
    Index(None, "client", "at"),
)
known_clients = Table(  # addresses from which a name signed in lately: exempt from the name-wide delay
    "known_clients", metadata,
    Column("name", String(64), nullable=False),
    Column("client", String(256), nullable=False),
    Column("last_success_at", Float, nullable=False),
    PrimaryKeyConstraint("name", "client"),
)

# Hospital accounts (single sign-on): keyed by the provider's issuer and subject, never by e-mail; the role is the one
# the groups claim gave at the latest sign-in, so an open session's admin actions see a demotion at once.
sso_accounts = Table(
    "sso_accounts", metadata,
    Column("issuer", String(512), nullable=False),
    Column("subject", String(255), nullable=False),
    Column("name", String(64), nullable=False),  # MedCore's name for the account (audit rows): "sso:<subject>"
    Column("display_name", String(256), nullable=False),
    Column("role", String(16)),  # None: in no MedCore group at the latest sign-in
    Column("first_sign_in_at", Float, nullable=False),
    Column("last_sign_in_at", Float, nullable=False),
    Column("disabled_at", Float),
    PrimaryKeyConstraint("issuer", "subject"),
    CheckConstraint("role IN ('clinician', 'admin')", name="sso_role"),
)

# Training jobs: state, the worker holding the job's lease, and progress events.
jobs = Table(
    "jobs", metadata,
    Column("id", String(64), primary_key=True),
    Column("task", String(64), nullable=False),
    Column("data_path", Text, nullable=False),
    Column("data_label", Text, nullable=False),
    Column("options", Text, nullable=False),
    Column("status", String(16), nullable=False),
    Column("created_by", String(128), nullable=False),
    Column("created_at", Float, nullable=False),
    Column("started_at", Float),
    Column("finished_at", Float),
    Column("pid", Integer),
    Column("cancel_requested", Boolean, nullable=False, default=False),
    Column("candidate_version", String(128)),
    Column("error", Text),
    Column("host", String(256)),  # the machine whose process runs the job
    Column("lease_expires_at", Float),  # renewed by the running job; a job whose lease ran out has died
    Column("owns_upload", Boolean, nullable=False, default=False, server_default=false()),  # delete it when done
    Index(None, "status"),
)
job_events = Table(
    "job_events", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("job_id", String(64), nullable=False),
    Column("at", Float, nullable=False),
    Column("event", Text, nullable=False),
    Index(None, "job_id", "id"),
)

# The audit log: append-only (a trigger refuses UPDATE and DELETE on both engines, and TRUNCATE on PostgreSQL).
audit = Table(
    "audit", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("at", Float, nullable=False),
    Column("user", String(128), nullable=False),
    Column("action", String(128), nullable=False),
    Column("model_version", String(128)),
    Column("outcome", String(128), nullable=False),
    Column("detail", Text, nullable=False, default="{}"),
    Column("server", String(256)),  # which app server, worker or command line wrote the row
    Index(None, "action", "at"),
)

# The lockbox's film log (training.lockbox): every film scored in a part of an external sample, by a digest of its
# decoded pixels, so that a film scored in a reporting part is refused there again (unless forced) whatever folder,
# name or file it arrives in. Append-only like the audit log (triggers on both engines): a refusal cannot be undone
# by deleting its reason.
lockbox_films = Table(
    "lockbox_films", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("film", String(64), nullable=False),  # SHA-256 of the decoded pixels (shape and float32 values)
    Column("model_version", String(128), nullable=False),
    Column("part", String(16), nullable=False),  # choosing or reporting
    Column("at", Float, nullable=False),
    Column("command", Text, nullable=False),
    Column("forced", Boolean, nullable=False),
    Column("actor", String(128), nullable=False),
    Column("server", String(256)),
    Index(None, "film", "part"),
)

# The PACS: studies MedCore claimed or analysed (by a digest of the Study Instance UID and the model version: one
# analysis each, whichever watcher or page gets there first), the watcher's cursor and last poll, and confirmed
# findings (by a keyed digest of the film, its UIDs sealed; never names or pixels).
pacs_studies = Table(
    "pacs_studies", metadata,
    Column("study_key", String(64), nullable=False),
    Column("model_version", String(128), nullable=False),
    Column("status", String(16), nullable=False),  # claimed, done, refused, failed
    Column("outcome", String(64)),
    Column("probability", Float),
    Column("attempts", Integer, nullable=False),
    Column("last_error", Text),
    Column("claimed_by", String(256)),
    Column("claimed_at", Float),
    Column("finished_at", Float),
    Column("seen_at", Float),  # when MedCore first saw the study in the PACS
    # reports in the study that say they are MedCore's but carry no valid signature of this installation: a copy
    # or a forgery, shown as "result from another source" and never taken as MedCore's own result
    Column("unverified_reports", Integer, nullable=False, default=0, server_default="0"),
    PrimaryKeyConstraint("study_key", "model_version"),
)
pacs_state = Table(
    "pacs_state", metadata,
    Column("key", String(64), primary_key=True),
    Column("value", Text, nullable=False),
)
pacs_feedback = Table(  # every confirmation, kept: a later one for the same film supersedes, never erases
    "pacs_feedback", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("film_key", String(64), nullable=False),  # keyed digest (medcore.keyed) of the film's SOP Instance UID
    Column("sealed_uids", Text, nullable=False),  # study, series and SOP UIDs, encrypted: to fetch the film again
    Column("label", String(32), nullable=False),
    Column("model_version", String(128)),
    Column("probability", Float),
    Column("decision", String(32)),
    Column("actor", String(128), nullable=False),
    Column("at", Float, nullable=False),
    Column("supersedes", Integer),  # the id of the confirmation of the same film that this one replaces
    Index(None, "film_key", "id"),
)

# Who listed or opened which patient's studies, by keyed digests of the patient id and accession number (never in
# clear): what a privacy officer asks. Append-only, like the audit log.
access_log = Table(
    "access_log", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("at", Float, nullable=False),
    Column("user", String(128), nullable=False),
    Column("action", String(32), nullable=False),  # "listed" (on a worklist page) or "opened"
    Column("patient_key", String(64), nullable=False),
    Column("accession_key", String(64), nullable=False),
    Column("server", String(256)),
    Index(None, "patient_key", "at"),
    Index(None, "accession_key"),
)

# Settings an administrator changes on the admin page (each change is also an audit row).
settings = Table(
    "settings", metadata,
    Column("key", String(64), primary_key=True),
    Column("value", Text, nullable=False),
    Column("changed_at", Float, nullable=False),
    Column("changed_by", String(128), nullable=False),
)
