"""The store's tables (SQLAlchemy Core). Migrations in ``migrations/`` create and evolve them."""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    false,
)

metadata = MetaData()

blobs = Table(
    "blobs",
    metadata,
    Column("sha256", String(64), primary_key=True),
    Column("size", BigInteger, nullable=False),
    Column("data", LargeBinary, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
)

helpdesks = Table(
    "helpdesks",
    metadata,
    Column("id", String(100), primary_key=True),
    Column("settings", JSON, nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)

#: One row (id 1): raised in the same transaction as every write that changes the settings
#: in ``helpdesks`` or ``mailboxes`` (not their poll state), so readers that hold settings
#: in memory know when to read them again.
settings_version = Table(
    "settings_version",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("version", Integer, nullable=False),
)

mailboxes = Table(
    "mailboxes",
    metadata,
    Column("name", String(100), primary_key=True),
    Column("helpdesk_id", String(100), nullable=False),
    Column("protocol", String(20), nullable=False),
    Column("settings", JSON, nullable=False),
    Column("enabled", Boolean, nullable=False, default=True),
    Column("last_polled_at", DateTime(timezone=True)),
    Column("last_error", Text),
    Column("consecutive_failures", Integer, nullable=False, default=0),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    #: Mails now in the mailbox's error folder (or dead-lettered, for POP).
    Column("error_count", Integer, nullable=False, server_default="0"),
    #: Why fetching is paused (error folder full, settings edited); None when not paused.
    Column("paused_reason", Text),
    #: When admins were last alerted that the mailbox cannot be reached; None once recovered.
    Column("alerted_at", DateTime(timezone=True)),
    #: The end of the last poll round that succeeded; None before the first.
    Column("last_success_at", DateTime(timezone=True)),
    #: Fetching is paused because the error folder reached its ``stop_after``.
    Column("paused_by_errors", Boolean, nullable=False, server_default=false()),
)

fetched_mails = Table(
    "fetched_mails",
    metadata,
    Column("mail_id", String(64), primary_key=True),
    Column("helpdesk_id", String(100), nullable=False),
    Column("mailbox", String(100), nullable=False),
    Column("ref", Text, nullable=False),
    Column("raw_sha256", String(64), nullable=False),
    Column("size", BigInteger, nullable=False),
    Column("fetched_at", DateTime(timezone=True), nullable=False),
    Column("handed_off_at", DateTime(timezone=True)),
    Column("publish_count", Integer, nullable=False, default=1),
)

mail_outcomes = Table(
    "mail_outcomes",
    metadata,
    Column("mail_id", String(64), primary_key=True),
    Column("helpdesk_id", String(100), nullable=False),
    Column("mailbox", String(100), nullable=False),
    Column("outcome", String(30), nullable=False),
    Column("request_id", Integer),
    Column("detail", Text),
    Column("at", DateTime(timezone=True), nullable=False),
)

requests = Table(
    "requests",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("helpdesk_id", String(100), nullable=False, index=True),
    Column("subject", Text, nullable=False),
    Column("status", String(20), nullable=False),
    Column("requester_name", Text, nullable=False),
    Column("requester_email", Text, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)

request_mails = Table(
    "request_mails",
    metadata,
    Column("mail_id", String(64), primary_key=True),
    Column("request_id", Integer, ForeignKey("requests.id"), nullable=False, index=True),
    Column("helpdesk_id", String(100), nullable=False),
    Column("message_id", Text, nullable=False),
    Column("data", JSON, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    UniqueConstraint("helpdesk_id", "message_id", name="uq_request_mails_message_id"),
)

dead_letters = Table(
    "dead_letters",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("mail_id", String(64), nullable=False, unique=True),
    Column("helpdesk_id", String(100)),
    Column("mailbox", String(100)),
    Column("ref", Text),
    Column("stage", String(30), nullable=False),
    Column("error_class", String(200), nullable=False),
    Column("error", Text, nullable=False),
    Column("attempts", Integer, nullable=False),
    Column("log_blob", String(64)),
    Column("at", DateTime(timezone=True), nullable=False),
    Column("moved_to_error_folder_at", DateTime(timezone=True)),
    Column("move_error", Text),
    Column("queue", String(50)),
    # The failed message (encrypted), for entries replayed as they were: notifications.
    Column("payload_blob", String(64)),
    # An id is never handed out twice (SQLite would reuse the highest after a delete).
    sqlite_autoincrement=True,
)

notifications = Table(
    "notifications",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("key", String(300), nullable=False, unique=True),
    Column("mail_id", String(64), nullable=False, index=True),
    Column("helpdesk_id", String(100), nullable=False),
    Column("topic", String(50), nullable=False),
    Column("channel", String(10), nullable=False),
    Column("recipients", JSON, nullable=False),
    Column("subject", Text, nullable=False),
    Column("body", Text, nullable=False),
    Column("in_reply_to", Text),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("sent_at", DateTime(timezone=True)),
    Column("error", Text),
    # The Message-ID an email goes out with: fixed before the first attempt, so a retry is
    # the same mail, and replies or bounces to it can be traced back to its request.
    Column("message_id", String(300), index=True),
    Column("attempts", Integer, nullable=False, server_default="0"),
    Column("next_attempt_at", DateTime(timezone=True), index=True),
    Column("suppressed_reason", Text),
)

source_cursors = Table(
    "source_cursors",
    metadata,
    Column("mailbox", String(100), primary_key=True),
    Column("validity", String(100), nullable=False),
    Column("first_connected_at", DateTime(timezone=True), nullable=False),
    #: IMAP: every UID up to this one is taken (or gone), for this ``validity``.
    Column("watermark", BigInteger, nullable=False, server_default="0"),
    #: IMAP: the folder's HIGHESTMODSEQ when everything in it was taken (CONDSTORE).
    Column("modseq", BigInteger),
    #: Grows whenever a taken ref is let go: an older read may not raise the watermark.
    Column("generation", Integer, nullable=False, server_default="0"),
)

taken_refs = Table(
    "taken_refs",
    metadata,
    Column("mailbox", String(100), primary_key=True),
    Column("ref", String(300), primary_key=True),
    Column("message_id", Text),
    Column("reason", String(30), nullable=False),
    Column("at", DateTime(timezone=True), nullable=False),
    Index("ix_taken_refs_message_id", "mailbox", "message_id"),
)

mailbox_leases = Table(
    "mailbox_leases",
    metadata,
    Column("mailbox", String(100), primary_key=True),
    Column("holder", String(200), nullable=False),
    Column("expires_at", DateTime(timezone=True), nullable=False),
)

delivery_starts = Table(
    "delivery_starts",
    metadata,
    #: The queue and a hash of the message body: one row per message, like the broker's count.
    Column("key", String(120), primary_key=True),
    #: Handlings of this message that began after a redelivery and have not ended.
    Column("starts", Integer, nullable=False),
    Column("last_at", DateTime(timezone=True), nullable=False),
)

oauth_tokens = Table(
    "oauth_tokens",
    metadata,
    #: A removed mailbox takes its tokens with it.
    Column(
        "mailbox",
        String(100),
        ForeignKey("mailboxes.name", ondelete="CASCADE"),
        primary_key=True,
    ),
    #: Both tokens sealed with the SecretBox (``enc:`` + Fernet), never in clear.
    Column("refresh_token", Text, nullable=False),
    Column("access_token", Text),
    Column("access_expires_at", DateTime(timezone=True)),
    #: When the refresh token was issued: at consent, or when a refresh rotated it.
    Column("refresh_issued_at", DateTime(timezone=True), nullable=False),
    #: The last refresh that succeeded; None before the first.
    Column("refresh_used_at", DateTime(timezone=True)),
    #: The account that consented (from the id token), as the server spelled it.
    Column("account", String(320)),
    Column("last_failure", Text),
    Column("last_failure_at", DateTime(timezone=True)),
    #: The lapse date admins were warned about, so each date is warned about once.
    Column("lapse_warned_for", DateTime(timezone=True)),
)

#: Admins of the web page. The name is kept lowercased: names compare without case.
admin_users = Table(
    "admin_users",
    metadata,
    Column("username", String(100), primary_key=True),
    #: argon2 in its PHC string form: the parameters and the salt travel with the hash.
    Column("password_hash", Text, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("password_changed_at", DateTime(timezone=True), nullable=False),
)

admin_sessions = Table(
    "admin_sessions",
    metadata,
    #: The SHA-256 of the session token: the token itself is only in the browser's cookie.
    Column("token_sha256", String(64), primary_key=True),
    #: A removed admin takes their sessions along.
    Column(
        "username",
        String(100),
        ForeignKey("admin_users.username", ondelete="CASCADE"),
        nullable=False,
        index=True,
    ),
    Column("csrf", String(100), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("last_seen_at", DateTime(timezone=True), nullable=False),
    #: The end of the session's lifetime, however often it is used.
    Column("expires_at", DateTime(timezone=True), nullable=False),
)

#: One row per failed login, within the limiter's window; older ones are deleted.
admin_login_failures = Table(
    "admin_login_failures",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    #: The SHA-256 of what is counted (a user name, a client address), not the text:
    #: a password typed into the name field must not be kept.
    Column("key", String(64), nullable=False),
    Column("at", DateTime(timezone=True), nullable=False),
    Index("ix_admin_login_failures_key_at", "key", "at"),
)

admin_audit = Table(
    "admin_audit",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("at", DateTime(timezone=True), nullable=False, index=True),
    Column("admin", String(100), nullable=False),
    Column("action", String(100), nullable=False),
    Column("target", Text, nullable=False),
    #: The names of the fields changed, never their values.
    Column("fields", JSON, nullable=False),
)
