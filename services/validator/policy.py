"""Value objects the validator works from, built once from a help desk's settings."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from contracts.extensions import normalise_extension
from contracts.settings import AttachmentSettings, NotificationSettings
from services.runtime.addresses import NO_ADDRESSES, AddressSet

__all__ = ["AttachmentPolicy", "StripNotices", "normalise_extension"]

_BYTES_PER_MB = 1024 * 1024


def _extensions(items: Iterable[str]) -> frozenset[str]:
    return frozenset(e for e in map(normalise_extension, items) if e)


@dataclass(frozen=True)
class AttachmentPolicy:
    """What a help desk accepts as an attachment.

    ``allowed_extensions`` empty means every extension not in ``restricted_extensions`` is
    accepted; non-empty means only those (and a file without an extension is refused).
    """

    max_size_bytes: int
    restricted_extensions: frozenset[str]
    allowed_extensions: frozenset[str]

    @classmethod
    def from_settings(cls, s: AttachmentSettings) -> AttachmentPolicy:
        """Lower-case the extensions, drop leading dots, and turn the MB limit into bytes."""
        return cls(
            max_size_bytes=int(s.max_size_mb * _BYTES_PER_MB),
            restricted_extensions=_extensions(s.restricted_extensions),
            allowed_extensions=_extensions(s.allowed_extensions),
        )


@dataclass(frozen=True)
class StripNotices:
    """Whether people are told about stripped attachments, and who.

    ``own_addresses`` are the help desk's own mailbox addresses: a sender notice to one of
    them would come back as a new mail, so it is never made.
    """

    enabled: bool
    support_reps: tuple[str, ...]
    own_addresses: AddressSet = NO_ADDRESSES

    @classmethod
    def from_settings(
        cls, s: NotificationSettings, own_addresses: Iterable[str] = ()
    ) -> StripNotices:
        """Take the help desk's ``attachment_stripped`` switch, its reps and own addresses."""
        return cls(
            enabled=s.attachment_stripped,
            support_reps=tuple(s.support_reps),
            own_addresses=AddressSet.of(own_addresses),
        )
