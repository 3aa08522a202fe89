"""Baseline: parse every mail of a folder with nothing but the standard library.

Run as ``python -m bench.stdlib_parse FOLDER``; prints how many mails it parsed. It is a
process of its own so that its time and peak memory are taken as Mailroom's are.
"""

from __future__ import annotations

import sys
from email import policy
from email.parser import BytesParser
from pathlib import Path


def parse_all(folder: Path) -> int:
    """Parse each file as a mail, walk every part and decode its payload; returns the count."""
    parser = BytesParser(policy=policy.default)
    count = 0
    for path in sorted(folder.iterdir()):
        for part in parser.parsebytes(path.read_bytes()).walk():
            part.get_payload(decode=True)
        count += 1
    return count


if __name__ == "__main__":
    print(parse_all(Path(sys.argv[1])))
