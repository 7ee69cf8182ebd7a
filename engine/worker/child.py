"""First module the engine process runs.

Two things must happen before llama.cpp's libraries load:

- OpenMP worker threads sleep instead of spinning between graph nodes. With spinning (the
  default) any other busy process on the machine makes llama.cpp's threads fight for the
  cores: measured here on 2 cores with one other busy process, 0.4 tok/s spinning against
  42.7 tok/s sleeping. A user can still choose by setting OMP_WAIT_POLICY themselves.
- llama_cpp is imported before any other C extension: on some systems (seen with a CUDA
  build linked against a newer libstdc++) loading another extension first (PyYAML,
  MarkupSafe) made model loading segfault in the tokenizer.
"""

import os

os.environ.setdefault("OMP_WAIT_POLICY", "passive")

import llama_cpp  # noqa: F401  (must be the first extension loaded)

from engine.worker.process import serve

__all__ = ["serve"]
