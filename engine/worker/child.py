"""First module the engine process runs.

Two things must happen before llama.cpp's libraries load:

- OpenMP worker threads spin only briefly at barriers (``engine.system.configure_openmp``).
- llama_cpp is imported before any other C extension: on some systems (seen with a CUDA
  build linked against a newer libstdc++) loading another extension first (PyYAML,
  MarkupSafe) made model loading segfault in the tokenizer.
"""

from engine.system import configure_openmp

configure_openmp()

import llama_cpp  # noqa: E402, F401  (must be the first extension loaded)

from engine.worker.process import serve  # noqa: E402

__all__ = ["serve"]
