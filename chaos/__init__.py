"""Chaos run: the scaled pipeline under worker kills and broker and database outages.

``make chaos`` runs the full form (``python -m chaos``); ``tests/e2e/test_chaos.py`` runs a
shorter one in ``make test``. Both end with an audit of every mail against the mailboxes.
"""
