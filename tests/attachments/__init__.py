"""Small real files of the kinds mail carries, built on demand by ``samples``."""
