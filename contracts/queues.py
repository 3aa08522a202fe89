"""Every queue and exchange name, in one place."""

EXCHANGE = "mailroom"

MAIL_FETCHED = "mail.fetched"
MAIL_PARSED = "mail.parsed"
MAIL_VALIDATED = "mail.validated"
NOTIFY = "notify"
MAIL_DEAD = "mail.dead"

#: Work queues, in pipeline order. Each is dead-lettered into MAIL_DEAD.
WORK_QUEUES = (MAIL_FETCHED, MAIL_PARSED, MAIL_VALIDATED, NOTIFY)

#: A message delivered this many times without an ack (its worker died each time) is
#: dead-lettered by the broker instead of looping.
DELIVERY_LIMIT = 5

#: At most this many unacknowledged messages per consumer.
PREFETCH = 10
