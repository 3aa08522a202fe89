"""Every queue and exchange name, in one place."""

EXCHANGE = "mailroom"

MAIL_FETCHED = "mail.fetched"
MAIL_PARSED = "mail.parsed"
MAIL_VALIDATED = "mail.validated"
NOTIFY = "notify"
MAIL_DEAD = "mail.dead"

#: Work queues, in pipeline order. Each is dead-lettered into MAIL_DEAD.
WORK_QUEUES = (MAIL_FETCHED, MAIL_PARSED, MAIL_VALIDATED, NOTIFY)

#: A mail whose handling a worker began this many times without finishing it (the worker
#: died each time) is set aside as a dead letter instead of stopping the stage again.
#: Mailroom counts these itself: an outage, a broker restart or a message handed back
#: unstarted by a stopping worker counts against no mail.
DELIVERY_LIMIT = 5

#: The broker's own limit on deliveries without an ack, a backstop far above
#: DELIVERY_LIMIT: the broker counts every return, outages and restarts included.
BROKER_DELIVERY_LIMIT = 50

#: At most this many unacknowledged messages per consumer.
PREFETCH = 10
