"""A compiled MIME parser (fast-mail-parser, Rust) beside Mailroom's, over the shared corpus.

For each corpus mail, what each parser extracts (sender, recipients, subject, body text,
attachment names and sizes) is compared, and both are timed. Mailroom's parse is the
parser stage without its blob store (``parse_mime``, every attachment decoded). A body of
HTML only is rendered as text the same way for both, so that only the extraction differs.

``python -m bench.parser_compare`` prints the comparison alone, with examples of each
difference; ``make bench`` adds it to the figures. It is skipped, with a note, when
fast-mail-parser is not installed (``pip install -e '.[bench]'``).
"""

from __future__ import annotations

import importlib.util
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from bench.corpus_rate import BASELINE, CORPUS, corpus_files, rates, stdlib_parse
from bench.report import Figure, Results
from services.parser.html_text import html_to_text
from services.parser.mime import parse_mime
from services.runtime.errors import MailError

FIELDS = ("from", "to", "subject", "body text", "attachment names", "attachment sizes")
OUTCOMES = ("agree", "differ", "fast-mail-parser failed", "Mailroom rejected")
MISSING = (
    "fast-mail-parser is not installed, so it was not compared with Mailroom's parser"
    " (pip install -e '.[bench]')"
)
_EXAMPLES = 3  # differences kept per field, to show what they are

Extracted = dict[str, object]


@dataclass
class Comparison:
    """Per field, how many mails had each outcome, and a few examples of differences."""

    counts: dict[str, Counter[str]] = field(default_factory=lambda: {f: Counter() for f in FIELDS})
    examples: dict[str, list[str]] = field(default_factory=lambda: {f: [] for f in FIELDS})

    def add(self, name: str, ours: Extracted | str, theirs: Extracted | str) -> None:
        for key in FIELDS:
            if isinstance(theirs, str):
                self.counts[key]["fast-mail-parser failed"] += 1
            elif isinstance(ours, str):
                self.counts[key]["Mailroom rejected"] += 1
            elif ours[key] == theirs[key]:
                self.counts[key]["agree"] += 1
            else:
                self.counts[key]["differ"] += 1
                if len(self.examples[key]) < _EXAMPLES:
                    self.examples[key].append(
                        f"{name}: Mailroom {_short(ours[key])}, fast-mail-parser "
                        f"{_short(theirs[key])}"
                    )

    def rows(self) -> list[list[str]]:
        return [[key, *(str(self.counts[key][o]) for o in OUTCOMES)] for key in FIELDS]


def measure(results: Results) -> None:
    if importlib.util.find_spec("fast_mail_parser") is None:
        print(MISSING)
        results.notes.append(MISSING)
        return
    mails = [(str(p.relative_to(CORPUS)), p.read_bytes()) for p in corpus_files()]
    comparison = compare(mails)
    raws = [raw for _, raw in mails]
    theirs, ours, bare = rates(raws, [_fast_parse, _mailroom_parse, stdlib_parse])
    what = f"corpus ({len(mails)} mails): fast-mail-parser parse, every part decoded, mails/s"
    results.figures.append(Figure(what, BASELINE, "mails/s", theirs, bare))
    what = f"corpus ({len(mails)} mails): Mailroom parse (no blob store, no validation), mails/s"
    results.figures.append(Figure(what, BASELINE, "mails/s", ours, bare))
    for row in comparison.rows():
        results.notes.append(
            f"fast-mail-parser vs Mailroom, {row[0]}: "
            + ", ".join(f"{n} {o}" for o, n in zip(OUTCOMES, row[1:], strict=True))
        )
    results.details["parser_compare"] = {
        "counts": {k: dict(v) for k, v in comparison.counts.items()},
        "examples": comparison.examples,
    }


def compare(mails: Iterable[tuple[str, bytes]]) -> Comparison:
    comparison = Comparison()
    for name, raw in mails:
        comparison.add(name, _extracted(_mailroom, raw), _extracted(_fast, raw))
    return comparison


def _extracted(extract: Callable[[bytes], Extracted], raw: bytes) -> Extracted | str:
    """What ``extract`` finds, or why it failed."""
    try:
        return extract(raw)
    except MailError as exc:
        return str(exc)
    except Exception as exc:  # any failure of the parser under test is a failure
        return f"{type(exc).__name__}: {exc}"


def _mailroom(raw: bytes) -> Extracted:
    mime = parse_mime(raw)
    mail = mime.mail
    attachments = [(a.filename, len(a.data)) for a in mime.attachments]
    return _fields(
        mail.from_.email if mail.from_ else "",
        [a.email for a in mail.to],
        mail.subject,
        mime.body_text or "",
        attachments,
    )


def _fast(raw: bytes) -> Extracted:
    from fast_mail_parser import parse_email

    mail: Any = parse_email(raw)
    text = "\n".join(mail.text_plain)
    if not text.strip() and mail.text_html:
        text = "\n".join(html_to_text(html) for html in mail.text_html)
    return _fields(
        mail.from_.address if mail.from_ else "",
        [a.address for a in mail.to],
        mail.subject,
        text,
        [(a.filename, len(a.content)) for a in mail.attachments],
    )


def _fields(
    sender: str, to: list[str], subject: str, text: str, attachments: list[tuple[str, int]]
) -> Extracted:
    # Compared as a reader would: addresses in any case, text by its words.
    return {
        "from": sender.lower(),
        "to": [a.lower() for a in to],
        "subject": " ".join(subject.split()),
        "body text": " ".join(text.split()),
        "attachment names": sorted(name for name, _ in attachments),
        "attachment sizes": sorted(size for _, size in attachments),
    }


def _short(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 70 else text[:67] + "..."


def _fast_parse(raw: bytes) -> None:
    from fast_mail_parser import ParseError, parse_email

    try:
        parse_email(raw)
    except ParseError:
        pass  # a refusal costs its parse


def _mailroom_parse(raw: bytes) -> None:
    try:
        for _ in parse_mime(raw).attachments:
            pass
    except MailError:
        pass


def main() -> None:
    """Print the comparison, with examples of each difference."""
    from rich.console import Console
    from rich.table import Table

    results = Results({})
    measure(results)
    if "parser_compare" not in results.details:
        return
    comparison = results.details["parser_compare"]
    table = Table(title="fast-mail-parser beside Mailroom's parser, per corpus mail")
    for column in ("field", *OUTCOMES):
        table.add_column(column, justify="left" if column == "field" else "right")
    for key in FIELDS:
        table.add_row(key, *(str(comparison["counts"][key].get(o, 0)) for o in OUTCOMES))
    console = Console(width=120)
    console.print(table)
    for f in results.figures:
        console.print(f"{f.what}: {f.mailroom:,.0f} (stdlib: {f.baseline:,.0f}, {f.ratio:.2f}x)")
    for key in FIELDS:
        for example in comparison["examples"][key]:
            console.print(f"  {key}: {example}", highlight=False)


if __name__ == "__main__":
    main()
