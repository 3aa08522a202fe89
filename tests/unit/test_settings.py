"""The settings file: a good file is read, a wrong one is refused naming the field and the fix."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from contracts.settings import (
    SettingsError,
    load_environment,
    load_settings_file,
    parse_settings,
)

DEMO = Path(__file__).resolve().parents[2] / "demo" / "settings.yaml"
BOX = "helpdesks[0].mailboxes[0]"


def settings_with(*mailboxes: str) -> str:
    """A one-help-desk settings text holding these mailboxes (flow-style YAML mappings)."""
    head = "helpdesks:\n  - id: default\n    mailboxes:\n"
    return head + "".join(f"      - {m}\n" for m in mailboxes)


def refusal(text: str, env: dict[str, str] | None = None) -> str:
    with pytest.raises(SettingsError) as caught:
        parse_settings(text, env=env or {})
    return str(caught.value)


def test_the_demo_settings_file_is_valid():
    settings = load_settings_file(DEMO, env={})

    [desk] = settings.helpdesks
    [box] = desk.mailboxes
    assert desk.id == "default"
    assert box.protocol == "maildir"
    assert box.path == "../var/demo/Maildir"
    assert box.error_folder.name == "Errors"


def test_a_full_imaps_mailbox_with_its_defaults_is_read():
    settings = parse_settings(
        settings_with("{name: support, protocol: imaps, host: mail.example.com}"), env={}
    )

    [box] = settings.helpdesks[0].mailboxes
    assert box.auth == "basic"
    assert box.tls.verify is True
    assert box.new_requests.enabled is True
    assert box.error_folder.stop_after == 50


def test_an_unknown_field_is_named_with_its_path():
    message = refusal(settings_with("{name: a, protocol: maildir, path: /m, prot: imap}"))

    assert f"{BOX}.prot" in message
    assert "unknown field" in message
    assert "spelling" in message


def test_a_port_out_of_range_is_refused_with_the_allowed_maximum():
    message = refusal(settings_with("{name: a, protocol: imaps, host: h, port: 70000}"))

    assert f"{BOX}.port" in message
    assert "65535" in message


def test_an_unknown_protocol_is_refused_listing_the_known_ones():
    message = refusal(settings_with("{name: a, protocol: smtp, host: h}"))

    assert f"{BOX}.protocol" in message
    for protocol in ("pop", "pops", "imap", "imaps", "ews", "graph", "maildir"):
        assert f"'{protocol}'" in message


@pytest.mark.parametrize("protocol", ["pop", "pops"])
def test_oauth_on_pop_is_refused_saying_to_use_basic_auth(protocol):
    message = refusal(
        settings_with(
            f"{{name: a, protocol: {protocol}, host: h, auth: oauth, client_id: c, token_url: t}}"
        )
    )

    assert BOX in message
    assert f"auth oauth is not available for protocol {protocol}" in message
    assert "use auth basic" in message


@pytest.mark.parametrize("protocol", ["imap", "imaps"])
def test_idle_is_off_unless_asked_for_and_taken_on_imap(protocol):
    off, on = (
        parse_settings(
            settings_with(
                f"{{name: a, protocol: {protocol}, host: h}}",
                f"{{name: b, protocol: {protocol}, host: h2, idle: true}}",
            ),
            env={},
        )
        .helpdesks[0]
        .mailboxes
    )

    assert (off.idle, on.idle) == (False, True)


@pytest.mark.parametrize(
    "mailbox",
    [
        "{name: a, protocol: pop, host: h, idle: true}",
        "{name: a, protocol: pops, host: h, idle: true}",
        "{name: a, protocol: maildir, path: /m, idle: true}",
        "{name: a, protocol: ews, connect_url: 'https://h/EWS/Exchange.asmx', auth: oauth, "
        "client_id: c, username: u, token_url: 'https://login.microsoftonline.com/t/oauth2/"
        "v2.0/token', idle: true}",
        "{name: a, protocol: graph, auth: oauth, client_id: c, username: u, "
        "token_url: 'https://login.microsoftonline.com/t/oauth2/v2.0/token', idle: true}",
    ],
)
def test_idle_on_a_protocol_without_it_is_refused_saying_to_remove_it(mailbox):
    message = refusal(settings_with(mailbox))

    assert BOX in message
    assert "`idle` (push delivery by IMAP IDLE) applies to protocol imap and imaps only" in message
    assert "remove `idle`" in message


def test_graph_with_basic_auth_is_refused_saying_to_set_oauth():
    message = refusal(settings_with("{name: g, protocol: graph, auth: basic, username: u}"))

    assert BOX in message
    assert "graph" in message
    assert "auth: oauth" in message


def test_graph_without_any_auth_is_refused_too():
    message = refusal(settings_with("{name: g, protocol: graph, username: u}"))

    assert "auth: oauth" in message


def test_a_maildir_without_path_is_refused_saying_what_path_is():
    message = refusal(settings_with("{name: local, protocol: maildir}"))

    assert BOX in message
    assert "`path`" in message
    assert "cur/" in message


def test_the_same_mailbox_name_twice_is_refused():
    text = textwrap.dedent(
        """
        helpdesks:
          - id: one
            mailboxes: [{name: support, protocol: maildir, path: /a}]
          - id: two
            mailboxes: [{name: support, protocol: maildir, path: /b}]
        """
    )

    message = refusal(text)

    assert "mailbox name 'support'" in message
    assert "unique" in message


def test_every_problem_of_a_file_is_listed():
    message = refusal(
        settings_with(
            "{name: a, protocol: maildir, path: /m, prot: x}",
            "{name: b, protocol: imaps, host: h, port: 0}",
        )
    )

    assert "helpdesks[0].mailboxes[0].prot" in message
    assert "helpdesks[0].mailboxes[1].port" in message


def test_a_variable_that_is_not_set_is_named():
    text = settings_with("{name: a, protocol: imaps, host: h, password: '${SUPPORT_PASSWORD}'}")

    message = refusal(text, env={"OTHER": "x"})

    assert "SUPPORT_PASSWORD" in message
    assert "not set" in message


def test_a_variable_that_is_set_gives_its_value_as_written():
    text = settings_with(
        "{name: a, protocol: imaps, host: '${MAIL_HOST}', port: '${MAIL_PORT}', "
        "password: '${SUPPORT_PASSWORD}'}"
    )
    env = {"MAIL_HOST": "mail.example.com", "MAIL_PORT": "1993", "SUPPORT_PASSWORD": "s3: #cr}t"}

    [box] = parse_settings(text, env=env).helpdesks[0].mailboxes

    assert box.host == "mail.example.com"
    assert box.port == 1993
    assert box.password == "s3: #cr}t"


def test_variables_come_from_the_process_environment_by_default(monkeypatch):
    monkeypatch.setenv("MAILROOM_TEST_PASSWORD", "from-env")
    text = settings_with(
        "{name: a, protocol: imaps, host: h, password: '${MAILROOM_TEST_PASSWORD}'}"
    )

    [box] = parse_settings(text).helpdesks[0].mailboxes

    assert box.password == "from-env"


def test_a_variable_in_a_comment_is_not_needed():
    text = settings_with("{name: a, protocol: maildir, path: /m}  # password: ${NOT_NEEDED}")

    [box] = parse_settings(text, env={}).helpdesks[0].mailboxes

    assert box.name == "a"


def test_text_that_is_not_yaml_is_refused_as_such():
    message = refusal("helpdesks: [ {id: default, mailboxes: [\n")

    assert message.startswith("not valid YAML")


@pytest.mark.parametrize("text", ["", "   \n", "# only a comment\n", "- just\n- a list\n"])
def test_an_empty_file_or_one_without_a_mapping_is_refused_saying_what_it_needs(text):
    message = refusal(text)

    assert "helpdesks:" in message


def test_a_file_without_any_help_desk_is_refused():
    message = refusal("helpdesks: []\n")

    assert "helpdesks" in message


def test_a_settings_file_that_cannot_be_read_names_the_file(tmp_path):
    missing = tmp_path / "nowhere.yaml"

    with pytest.raises(SettingsError, match="nowhere.yaml"):
        load_settings_file(missing, env={})


def desk_with(fields: str) -> str:
    """A one-help-desk settings text with these extra help-desk fields (YAML lines)."""
    return "helpdesks:\n  - id: default\n" + textwrap.indent(textwrap.dedent(fields), "    ")


def test_outgoing_mail_defaults_retry_for_a_day_and_limit_ten_mails_an_hour():
    settings = parse_settings(desk_with("outgoing: {host: smtp.example.com}\n"), env={})

    desk = settings.helpdesks[0]
    assert desk.outgoing is not None
    retry = desk.outgoing.retry
    assert (retry.first_delay_seconds, retry.max_delay_minutes) == (30, 30)
    assert retry.give_up_after_hours == 24
    assert desk.outgoing.tls.verify is True
    limit = desk.notifications.rate_limit
    assert (limit.per_address, limit.per_minutes) == (10, 60)


def test_outgoing_tls_and_a_shortened_retry_schedule_are_read():
    text = desk_with(
        """\
        outgoing:
          host: smtp.example.com
          port: 465
          security: ssl
          tls: {verify: true, ca_file: /etc/ssl/private-ca.pem}
          retry: {first_delay_seconds: 0.5, max_delay_minutes: 0.05, max_attempts: 4}
        notifications: {rate_limit: {per_address: 3, per_minutes: 10}}
        """
    )

    desk = parse_settings(text, env={}).helpdesks[0]

    assert desk.outgoing is not None
    assert desk.outgoing.tls.ca_file == "/etc/ssl/private-ca.pem"
    assert desk.outgoing.retry.first_delay_seconds == 0.5
    assert desk.outgoing.retry.max_attempts == 4
    assert desk.notifications.rate_limit.per_address == 3


def test_a_retry_cap_below_the_first_delay_is_refused_saying_which_to_change():
    text = desk_with(
        "outgoing: {host: h, retry: {first_delay_seconds: 120, max_delay_minutes: 1}}\n"
    )

    message = refusal(text)

    assert "helpdesks[0].outgoing.retry" in message
    assert "raise max_delay_minutes or lower first_delay_seconds" in message


def test_tls_settings_on_an_unencrypted_outgoing_server_are_refused():
    message = refusal(desk_with("outgoing: {host: h, tls: {ca_file: /ca.pem}}\n"))

    assert "helpdesks[0].outgoing" in message
    assert "`tls` applies to security starttls or ssl" in message


@pytest.mark.parametrize(
    ("rule", "field"),
    [("{per_address: 0}", "per_address"), ("{per_minutes: 0}", "per_minutes")],
)
def test_a_rate_limit_of_zero_is_refused_naming_the_field(rule, field):
    message = refusal(desk_with(f"notifications: {{rate_limit: {rule}}}\n"))

    assert f"helpdesks[0].notifications.rate_limit.{field}" in message
    assert "greater than" in message


def test_an_unknown_rate_limit_field_is_refused():
    message = refusal(desk_with("notifications: {rate_limit: {per_adress: 5}}\n"))

    assert "helpdesks[0].notifications.rate_limit.per_adress: unknown field" in message


# --- folder names -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "fix"),
    [
        ("/../../../escape/x", "`/`"),
        ("../x", "`/`"),
        ("Errors/Failed", "Errors.Failed"),
        ("", "empty"),
        (".Errors", "dot"),
        ("Errors.", "dot"),
        ("Errors..Failed", "dot"),
        ("Err\\tors", "control"),
        ("x" * 201, "200"),
    ],
)
def test_a_maildir_error_folder_that_is_not_a_maildir_plus_plus_name_is_refused(name, fix):
    message = refusal(
        settings_with(f'{{name: a, protocol: maildir, path: /m, error_folder: {{name: "{name}"}}}}')
    )

    assert f"{BOX}.error_folder.name" in message
    assert fix in message


@pytest.mark.parametrize("name", ["Errors", "Errors.Failed", "Fehler-Ablage", "Ärger 2024"])
def test_a_maildir_error_folder_may_be_any_maildir_plus_plus_name(name):
    text = settings_with(
        f"{{name: a, protocol: maildir, path: /m, error_folder: {{name: {name}}}}}"
    )

    [box] = parse_settings(text, env={}).helpdesks[0].mailboxes

    assert box.error_folder.name == name


@pytest.mark.parametrize(
    ("name", "fix"),
    [
        ("", "empty"),
        ("Err\\rors", "control"),
        ("Errors*", "`*`"),
        ("Err%", "`%`"),
        (" Errors", "space"),
        ("x" * 201, "200"),
        ("inbox", "`folder`"),
    ],
)
def test_an_imap_error_folder_name_that_cannot_work_is_refused(name, fix):
    message = refusal(
        settings_with(f'{{name: a, protocol: imaps, host: h, error_folder: {{name: "{name}"}}}}')
    )

    assert f"{BOX}.error_folder.name" in message
    assert fix in message


@pytest.mark.parametrize("name", ["Errors/Failed", "INBOX.Errors", "Fehler/Ärger"])
def test_an_imap_error_folder_may_use_the_hierarchy_separator(name):
    text = settings_with(f"{{name: a, protocol: imaps, host: h, error_folder: {{name: {name}}}}}")

    [box] = parse_settings(text, env={}).helpdesks[0].mailboxes

    assert box.error_folder.name == name


def test_an_imap_folder_with_a_wildcard_is_refused():
    message = refusal(settings_with("{name: a, protocol: imaps, host: h, folder: 'Support*'}"))

    assert f"{BOX}.folder" in message
    assert "`*`" in message


@pytest.mark.parametrize(
    ("fields", "field"),
    [("error_folder: {name: Failed}", "error_folder.name"), ("folder: Archive", "folder")],
)
def test_a_folder_on_a_pop_mailbox_is_refused_saying_pop_has_none(fields, field):
    message = refusal(settings_with(f"{{name: a, protocol: pop, host: h, {fields}}}"))

    assert f"{BOX}.{field}" in message
    assert "POP has no folders" in message


def test_a_pop_mailbox_may_switch_its_error_folder_off():
    text = settings_with("{name: a, protocol: pop, host: h, error_folder: {enabled: false}}")

    [box] = parse_settings(text, env={}).helpdesks[0].mailboxes

    assert box.error_folder.enabled is False


# --- attachment extensions --------------------------------------------------------------------


def test_extensions_written_as_file_names_or_patterns_are_normalised():
    text = desk_with(
        """\
        attachments:
          restricted_extensions: [".EXE", "EXE", "*.exe", " Vbs ", "*.JS"]
          allowed_extensions: ["*.txt", ".PDF"]
        """
    )

    attachments = parse_settings(text, env={}).helpdesks[0].attachments

    assert attachments.restricted_extensions == ["exe", "exe", "exe", "vbs", "js"]
    assert attachments.allowed_extensions == ["txt", "pdf"]


@pytest.mark.parametrize(
    ("extension", "fix"),
    [
        ("P S1", "space"),
        ("*.t*t", "wildcard"),
        ("*", "wildcard"),
        ("a/b", "`/`"),
        ("", "empty"),
        ("*.", "empty"),
        ("tar.gz", "gz"),
    ],
)
def test_an_extension_that_cannot_match_a_file_name_is_refused_with_the_fix(extension, fix):
    text = desk_with(f'attachments: {{restricted_extensions: [exe, "{extension}"]}}\n')

    message = refusal(text)

    assert "helpdesks[0].attachments.restricted_extensions[1]" in message
    assert fix in message


def test_allowed_extensions_are_checked_the_same_way():
    message = refusal(desk_with('attachments: {allowed_extensions: ["*.do c"]}\n'))

    assert "helpdesks[0].attachments.allowed_extensions[0]" in message


# --- mailboxes read twice -----------------------------------------------------------------------


def two_desks(first: str, second: str) -> str:
    return textwrap.dedent(
        f"""
        helpdesks:
          - id: sales
            mailboxes: [{first}]
          - id: support
            mailboxes: [{second}]
        """
    )


@pytest.mark.parametrize(
    ("first", "second"),
    [
        (
            "{name: a, protocol: maildir, path: /srv/mail}",
            "{name: b, protocol: maildir, path: /srv/mail/}",
        ),
        (
            "{name: a, protocol: maildir, path: /srv/mail}",
            "{name: b, protocol: maildir, path: '/srv/x/../mail'}",
        ),
        (
            "{name: a, protocol: imaps, host: Mail.Example.com, username: help}",
            "{name: b, protocol: imaps, host: mail.example.com, port: 993, username: help, "
            "folder: INBOX}",
        ),
        (
            "{name: a, protocol: imap, host: h, username: help, folder: Support}",
            "{name: b, protocol: imap, host: h, port: 143, username: help, folder: Support}",
        ),
        (
            "{name: a, protocol: pop, host: h, username: help}",
            "{name: b, protocol: pop, host: h, username: help}",
        ),
    ],
)
def test_two_help_desks_reading_one_mailbox_are_refused_naming_both(first, second):
    message = refusal(two_desks(first, second))

    assert "help desk 'sales' mailbox 'a'" in message
    assert "help desk 'support' mailbox 'b'" in message
    assert "two requests" in message


def test_a_relative_maildir_path_is_compared_after_resolving(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "real").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "real")

    message = refusal(
        two_desks(
            "{name: a, protocol: maildir, path: real}",
            f"{{name: b, protocol: maildir, path: '{tmp_path / 'link'}'}}",
        )
    )

    assert "mailbox 'a'" in message
    assert "mailbox 'b'" in message


def test_a_mailbox_that_reads_another_ones_error_folder_is_refused():
    message = refusal(
        two_desks(
            "{name: a, protocol: maildir, path: /srv/mail}",
            "{name: b, protocol: maildir, path: /srv/mail/.Errors}",
        )
    )

    assert "error folder" in message
    assert "mailbox 'b'" in message


@pytest.mark.parametrize(
    "second",
    [
        "{name: b, protocol: imaps, host: h, username: other}",
        "{name: b, protocol: imaps, host: h, username: help, folder: Sales}",
        "{name: b, protocol: imaps, host: h, port: 1993, username: help}",
        "{name: b, protocol: imaps, host: other.example.com, username: help}",
    ],
)
def test_different_accounts_folders_or_servers_are_different_mailboxes(second):
    text = two_desks("{name: a, protocol: imaps, host: h, username: help}", second)

    assert len(parse_settings(text, env={}).helpdesks) == 2


# --- credentials and variables ------------------------------------------------------------------


@pytest.mark.parametrize("field", ["username", "password"])
def test_a_line_break_in_a_credential_is_refused_without_showing_it(field):
    text = settings_with(f'{{name: a, protocol: imaps, host: h, {field}: "top\\r\\nsecret"}}')

    message = refusal(text)

    assert f"{BOX}.{field}" in message
    assert "control character" in message
    assert "secret" not in message.replace(f"{BOX}", "")


def test_a_variable_written_without_braces_is_refused_with_the_fix():
    text = settings_with("{name: a, protocol: imaps, host: $MAIL_HOST}")

    message = refusal(text, env={"MAIL_HOST": "mail.example.com"})

    assert f"{BOX}.host" in message
    assert "${MAIL_HOST}" in message


def test_a_dollar_in_a_password_is_refused_without_echoing_the_password():
    text = settings_with("{name: a, protocol: imaps, host: h, password: 'Pa$sw0rd'}")

    message = refusal(text)

    assert f"{BOX}.password" in message
    assert "${NAME}" in message and "$$" in message
    assert "sw0rd" not in message


def test_a_doubled_dollar_is_a_literal_dollar():
    text = settings_with("{name: a, protocol: imaps, host: h, password: 'Pa$$sw0rd$'}")

    [box] = parse_settings(text, env={}).helpdesks[0].mailboxes

    assert box.password == "Pa$sw0rd$"


def test_a_value_from_the_environment_is_taken_as_it_is():
    text = settings_with("{name: a, protocol: imaps, host: h, password: '${PW}'}")

    [box] = parse_settings(text, env={"PW": "a$b${C}"}).helpdesks[0].mailboxes

    assert box.password == "a$b${C}"


def test_an_empty_variable_is_refused_naming_it_but_not_its_value():
    text = settings_with("{name: a, protocol: imaps, host: '${HOST}', password: '${PW}'}")

    message = refusal(text, env={"HOST": "mail.example.com", "PW": ""})

    assert "PW" in message
    assert "empty" in message
    assert "mail.example.com" not in message


@pytest.mark.parametrize("written", ["${PW", "${}", "${1PW}", "${P W}"])
def test_a_malformed_variable_is_refused(written):
    message = refusal(
        settings_with(f"{{name: a, protocol: imaps, host: h, password: '{written}'}}")
    )

    assert f"{BOX}.password" in message
    assert "${NAME}" in message


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("MAILROOM_DATABASE_URL", "bogus://ann:S3CRET-PW@db.example/mailroom"),
        ("MAILROOM_DATABASE_URL", "postgresql://ann:S3CRET-PW@[::1/mailroom"),
        ("MAILROOM_DATABASE_URL", "postgresql://ann:S3CRET-PW@db.example:port/mailroom"),
        ("MAILROOM_DATABASE_URL", "ann S3CRET-PW db.example"),
        ("MAILROOM_BROKER_URL", "bogus://ann:S3CRET-PW@mq.example//"),
        ("MAILROOM_BROKER_URL", "amqp://ann:S3CRET-PW@[::1//"),
        ("MAILROOM_HEALTH_PORT", "70000"),
        ("MAILROOM_MAX_ATTEMPTS", "S3CRET-PW"),
        ("MAILROOM_VAR_DIR", ""),
    ],
)
def test_an_environment_variable_that_cannot_work_is_named_without_its_value(
    monkeypatch, variable, value
):
    monkeypatch.setenv(variable, value)

    with pytest.raises(SettingsError) as caught:
        load_environment()

    message = str(caught.value)
    assert message.startswith(f"{variable}: ")
    assert "S3CRET" not in message and "input_value" not in message


def test_names_that_differ_only_in_case_are_refused_as_the_same():
    text = textwrap.dedent(
        """
        helpdesks:
          - id: Sales
            mailboxes: [{name: Support, protocol: maildir, path: /a}]
          - id: sales
            mailboxes: [{name: support, protocol: maildir, path: /b}]
        """
    )

    message = refusal(text)

    assert "help desk id 'sales' is already used at helpdesks[0].id (as 'Sales'" in message


@pytest.mark.parametrize("field", ["id", "mailbox"])
def test_a_name_too_long_for_a_log_line_or_file_name_is_refused(field):
    long = "x" * 65
    desk, box = (long, "m") if field == "id" else ("d", long)
    box_fields = f"{{name: {box}, protocol: maildir, path: /m}}"
    text = f"helpdesks:\n  - id: {desk}\n    mailboxes: [{box_fields}]\n"

    assert "at most 64 characters" in refusal(text)


@pytest.mark.parametrize(
    ("fields", "where"),
    [
        ("outgoing: {host: h, retry: {first_delay_seconds: 1e308}}", "first_delay_seconds"),
        ("outgoing: {host: h, retry: {give_up_after_hours: 1e308}}", "give_up_after_hours"),
        ("outgoing: {host: h, retry: {max_attempts: 99999999999999999999}}", "max_attempts"),
        ("notifications: {rate_limit: {per_minutes: 1e308}}", "per_minutes"),
        (
            "mailboxes: [{name: m, protocol: maildir, path: /m, fetch_every_minutes: 1e308}]",
            "fetch_every_minutes",
        ),
        ("mailboxes: [{name: m, protocol: maildir, path: /m, max_mail_mb: 1e308}]", "max_mail_mb"),
        ("attachments: {max_size_mb: 1e308}", "max_size_mb"),
    ],
)
def test_a_duration_size_or_count_past_any_use_is_refused_naming_the_field(fields, where):
    # 1e308 minutes is no date: each mail that used it would fail instead
    message = refusal(desk_with(fields + "\n"))

    assert f".{where}: Input should be less than or equal to" in message
