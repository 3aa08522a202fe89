"""Every mail the fuzz test ever failed on, kept in ``crashes/`` once its bug was fixed,
must now end as parsed or rejected with a reason, within a second."""

from __future__ import annotations

from pathlib import Path

import pytest
from fuzz_pipeline import CRASHES, outcome_of

SAVED = sorted(CRASHES.glob("*.eml"))


@pytest.mark.parametrize("path", SAVED, ids=[p.stem for p in SAVED])
def test_saved_mail_ends_parsed_or_rejected_within_a_second(path: Path) -> None:
    what_failed = path.with_suffix(".txt").read_text()

    outcome = outcome_of(path.read_bytes())

    assert not outcome.failed, f"{outcome}\n  it failed before as: {what_failed}"
