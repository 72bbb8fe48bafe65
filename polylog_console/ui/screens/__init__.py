"""Screens pushed over the console: help, confirmation, checkpoint detail."""
