"""The admin web page: sign-in, mailboxes and their settings, error folders, dead letters."""
