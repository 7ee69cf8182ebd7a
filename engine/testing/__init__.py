"""Test doubles that implement ``engine.api.Engine``."""
