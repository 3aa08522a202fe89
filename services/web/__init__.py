"""The admin web page."""
