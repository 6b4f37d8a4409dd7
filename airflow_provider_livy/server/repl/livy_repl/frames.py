"""Which code is the REPL's own: its frames are left out of tracebacks, and a cancel never raises in them."""

from __future__ import annotations

import os

# As the code objects name their files: from the zip's bytecode, `driver.py/livy_repl/<module>.py`
# (the server compiled it); compiled from source, the path the module was imported by, as given
# (inside the zip, relative when YARN's application master runs the zip by a relative name).
PACKAGE_DIR = os.path.dirname((lambda: None).__code__.co_filename) + os.sep


def is_own(filename: str) -> bool:
    """Whether a code object's file is a module of this package."""
    return filename.startswith(PACKAGE_DIR)
