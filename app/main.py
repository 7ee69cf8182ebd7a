"""Entry point: ``python -m app`` or the ``verso-desktop`` script."""

from __future__ import annotations

import logging
import multiprocessing
import signal
import sys

from PySide6.QtCore import QCoreApplication, QTimer
from PySide6.QtGui import QIcon
from PySide6.QtWidgets import QApplication


def main(argv: list[str] | None = None) -> int:
    multiprocessing.freeze_support()
    from engine import safe_versions

    if found := safe_versions.problems():
        print(safe_versions.refusal(found), file=sys.stderr)
        return 1
    if "--self-test" in (sys.argv if argv is None else argv)[1:]:
        from app.selftest import run_self_test  # offscreen, temp data folder; see there

        return run_self_test()
    logging.basicConfig(level=logging.INFO if "--verbose" in (argv or sys.argv) else
                        logging.WARNING, format="verso %(levelname)s %(name)s: %(message)s")
    from app.platform_check import check

    if (problem := check()) is not None:
        print(problem, file=sys.stderr)
        return 1
    QCoreApplication.setApplicationName("Verso")
    QCoreApplication.setOrganizationName("Verso")
    app = QApplication.instance() or QApplication(argv if argv is not None else sys.argv)

    from app.theme import ICONS
    from app.window import MainWindow

    QApplication.setWindowIcon(QIcon(str(ICONS / "verso.svg")))
    window = MainWindow()
    window.show()
    signal.signal(signal.SIGINT, lambda *_: window.close())
    wake = QTimer()  # Python runs signal handlers only when Qt hands control back to it
    wake.timeout.connect(lambda: None)
    wake.start(250)
    code = app.exec()
    window.shutdown()
    return code


if __name__ == "__main__":
    sys.exit(main())
