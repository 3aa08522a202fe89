"""Which contract travels on which queue."""

from __future__ import annotations

from contracts import queues
from contracts.base import Envelope
from contracts.dead import DeadLetter
from contracts.mail import MailFetched, MailParsed, MailValidated
from contracts.notify import Notify

CONTRACT_OF_QUEUE: dict[str, type[Envelope]] = {
    queues.MAIL_FETCHED: MailFetched,
    queues.MAIL_PARSED: MailParsed,
    queues.MAIL_VALIDATED: MailValidated,
    queues.NOTIFY: Notify,
    queues.MAIL_DEAD: DeadLetter,
}

QUEUE_OF_CONTRACT: dict[type[Envelope], str] = {v: k for k, v in CONTRACT_OF_QUEUE.items()}


def queue_for(message: Envelope) -> str:
    """The queue a message is published to."""
    return QUEUE_OF_CONTRACT[type(message)]
