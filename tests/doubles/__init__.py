"""Test doubles: small stand-ins for servers that cannot run on this machine (no model can be served here)."""
