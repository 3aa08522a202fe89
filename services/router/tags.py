"""The request tag in subjects: ``[Request ##123##]``.

Mailroom puts the tag in the subject of every mail it sends about a request; a mail whose
subject carries it joins that request. The doubled ``#`` keeps the tag apart from ticket
numbers of other systems (``[Request #123]``, ``#123``) that a customer may quote. The tag
is found anywhere in the subject, so it is recognised behind any number of reply and forward
prefixes (``Re:``, ``RE:``, ``Fwd:``, ``FW:``, ``AW:``, ``WG:``, ``SV:``, ``VS:``, ``Antw:``,
in any case) and behind a gateway's ``[EXTERNAL]``. The older ``[Request #123]`` form is
still read, so replies to mail sent before the change keep threading.
"""

from __future__ import annotations

import re

# At most 9 digits: a longer number names no request and would not fit the id column.
_TAG = re.compile(r"\[\s*request\s*(?:##\s*(\d{1,9})\s*##|#\s*(\d{1,9}))\s*\]", re.IGNORECASE)


def subject_tag(request_id: int) -> str:
    """The tag of request ``request_id``, e.g. ``[Request ##12##]``."""
    return f"[Request ##{request_id}##]"


def tagged_request_ids(subject: str) -> list[int]:
    """The request ids tagged in ``subject``, first tag first, each once."""
    found = (int(m.group(1) or m.group(2)) for m in _TAG.finditer(subject))
    return list(dict.fromkeys(found))
