"""Proof of liberation: rebuild a stream's state from its topic and compare it with the source."""
