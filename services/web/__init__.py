"""The admin web page, and the store-backed logic behind it."""
