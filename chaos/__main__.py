"""``make chaos``: the full chaos run; exits 1 unless every count is 0 and every fault hit."""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from rich.console import Console

from chaos.report import render
from chaos.scenario import Scenario, run


def main(argv: list[str] | None = None) -> int:
    args = _arguments(argv)
    scenario = Scenario(
        mails=args.mails,
        mailboxes=args.mailboxes,
        per_stage=args.per_stage,
        pollers=args.pollers,
        seed=args.seed,
    )
    progress = Console(stderr=True)
    with tempfile.TemporaryDirectory(prefix="mailroom-chaos-") as tmp:
        report = run(scenario, Path(tmp), progress.log)
    render(report, Console() if sys.stdout.isatty() else Console(width=120))
    return 0 if report.passed else 1


def _arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m chaos", description=__doc__)
    parser.add_argument("--mails", type=int, default=3000, help="mails over all mailboxes")
    parser.add_argument("--mailboxes", type=int, default=2, help="IMAPS mailboxes")
    parser.add_argument("--per-stage", type=int, default=2, help="workers per stage")
    parser.add_argument("--pollers", type=int, default=2)
    parser.add_argument("--seed", type=int, default=1, help="which worker is killed when")
    return parser.parse_args(argv)


if __name__ == "__main__":
    sys.exit(main())
