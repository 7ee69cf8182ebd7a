"""Verso engine: GGUF models through llama.cpp, with no Qt anywhere below this package."""

__version__ = "0.1.0"
