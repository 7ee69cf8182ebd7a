"""Panels shown in the main window's sidebar."""
