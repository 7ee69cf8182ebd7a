"""Entry point of the packaged (PyInstaller) Verso.

``multiprocessing.freeze_support()`` runs before anything else is imported: the engine
process is started with ``spawn``, which in a frozen app re-runs this executable with
``--multiprocessing-fork``; freeze_support() turns that run into the engine child straight
away, so the child never loads Qt (and, in a GPU build, no other native library gets in
before llama.cpp's).
"""

import multiprocessing
import sys

if __name__ == "__main__":
    multiprocessing.freeze_support()
    from app.main import main

    sys.exit(main())
