"""Stores behind the port of engine/store.py: files (the default) and memory."""
