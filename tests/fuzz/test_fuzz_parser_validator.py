"""Corpus mails, mutated at random, through the parser and the validator for a set time.

Each mutated mail must end as parsed or as rejected with a reason, within a second (see
``fuzz_pipeline``). A mail that fails is saved in ``crashes/`` with a note of what failed
and how it was made; ``test_saved_mails.py`` replays it on every run from then on.

``MAILROOM_FUZZ_SECONDS`` sets the time (45 s by default; ``make fuzz`` runs longer), and
``MAILROOM_FUZZ_SEED`` the seed: a number, by default 0 so that ``make test`` tries the same
mails each time, or ``random``. The seed is printed, so a run can be repeated.
"""

from __future__ import annotations

import os
import secrets
import time
from collections import Counter

import pytest
from fuzz_mails import FuzzedMail, fuzzed_mails
from fuzz_pipeline import Outcome, outcome_of, save
from fuzz_watchdog import Watchdog
from hypothesis import HealthCheck, Phase, given, seed, settings

#: Mails per hypothesis run; runs follow each other, seeds counting up, until time is up.
ROUND = 25
#: A mail still running after this long is taken to hang (see ``fuzz_watchdog``).
HANG_SECONDS = 120
#: Shrinking a failing mail to a smaller one can take minutes, so only a long run does it.
SHRINK = os.environ.get("MAILROOM_FUZZ_SHRINK") == "1"


def fuzz_settings() -> settings:
    return settings(
        max_examples=ROUND,
        database=None,  # nothing is written into the checkout but a failing mail
        deadline=None,  # the one-second bound is checked per mail, so the mail is kept
        phases=[Phase.generate, *([Phase.shrink] if SHRINK else [])],
        suppress_health_check=list(HealthCheck),
        print_blob=False,
    )


def first_seed() -> int:
    chosen = os.environ.get("MAILROOM_FUZZ_SEED", "0")
    return secrets.randbits(32) if chosen == "random" else int(chosen)


def test_mutated_corpus_mails_end_parsed_or_rejected_within_a_second() -> None:
    seconds = float(os.environ.get("MAILROOM_FUZZ_SECONDS", "45"))
    start_seed, tally, failed = first_seed(), Counter[str](), list[tuple[FuzzedMail, Outcome]]()

    watchdog = Watchdog(HANG_SECONDS)

    @fuzz_settings()
    @given(mail=fuzzed_mails())
    def ends_well(mail: FuzzedMail) -> None:
        with watchdog.watching(mail):
            outcome = outcome_of(mail.raw)
        tally[outcome.kind] += 1
        if outcome.failed:
            failed.append((mail, outcome))
            raise AssertionError(f"{mail!r}: {outcome}")

    began, rounds = time.monotonic(), 0
    with watchdog.running():
        while time.monotonic() - began < seconds:
            try:
                seed(start_seed + rounds)(ends_well)()
            except Exception:
                if not failed:
                    raise  # the fuzz test's own fault, not a mail's
                mail, outcome = failed[-1]  # the last one tried: shrunk, if it shrank
                path = save(mail.raw, str(outcome), mail.how)
                pytest.fail(
                    f"{outcome}\n  mail made by {mail.how}\n  saved as {path}: fix what"
                    " fails, then commit the mail with the fix (test_saved_mails.py replays it)"
                )
            rounds += 1
    print(
        f"\nfuzz: seeds {start_seed}..{start_seed + rounds - 1}, {sum(tally.values())} mails "
        f"in {time.monotonic() - began:.0f} s: {dict(tally)}"
    )
