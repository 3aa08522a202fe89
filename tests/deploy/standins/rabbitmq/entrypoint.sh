#!/bin/sh
# The official image's contract: RABBITMQ_DEFAULT_USER / _PASS / _VHOST make the first
# user and vhost, data lives in /var/lib/rabbitmq, the management UI is on 15672, logs go
# to stdout, and the node runs as the rabbitmq user.
set -eu
{
    echo "listeners.tcp.default = 5672"
    echo "management.tcp.port = 15672"
    echo "loopback_users.guest = false"
    if [ -n "${RABBITMQ_DEFAULT_USER:-}" ]; then echo "default_user = $RABBITMQ_DEFAULT_USER"; fi
    if [ -n "${RABBITMQ_DEFAULT_PASS:-}" ]; then echo "default_pass = $RABBITMQ_DEFAULT_PASS"; fi
    if [ -n "${RABBITMQ_DEFAULT_VHOST:-}" ]; then echo "default_vhost = $RABBITMQ_DEFAULT_VHOST"; fi
} > /etc/rabbitmq/rabbitmq.conf
# An empty rabbitmq-env.conf: Debian's one would name a node of its own.
: > /etc/rabbitmq/rabbitmq-env.conf
chown -R rabbitmq:rabbitmq /var/lib/rabbitmq
export RABBITMQ_LOGS=- RABBITMQ_SASL_LOGS=-
exec setpriv --reuid=rabbitmq --regid=rabbitmq --init-groups /usr/lib/rabbitmq/bin/rabbitmq-server
