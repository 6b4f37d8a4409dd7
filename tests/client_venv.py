"""The third-party Livy clients' own virtualenv (sparkmagic 0.23, pylivy 0.8, requests-gssapi), under tests/.client-venvs.

Made once and reused while its stamp names the same clients. `scripts/setup.sh --tests` makes it in the
background while the project's own .venv installs (about 90 s of pip that the suite no longer waits for);
tests/test_session_clients.py makes it on first use where setup did not. Standard library only, so setup
can run it with the system Python: `python3.11 tests/client_venv.py`.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

VENV = Path(__file__).resolve().parent / ".client-venvs" / "livy-clients"
CLIENTS = ("sparkmagic==0.23.0", "livy==0.8.0", "requests-gssapi==1.4.0")  # pylivy signs in with requests-gssapi


def client_python() -> Path:
    """The clients' Python, after making their virtualenv if its stamp is missing."""
    python = VENV / "bin" / "python"
    stamp = VENV / ("installed-" + "-".join(CLIENTS))
    if not stamp.exists():
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(VENV)], check=True)
        done = subprocess.run(
            [str(python), "-m", "pip", "install", "-q", "--prefer-binary", *CLIENTS], capture_output=True, text=True, timeout=3600
        )
        if done.returncode != 0:
            raise RuntimeError(f"pip could not install {' '.join(CLIENTS)}:\n{done.stdout[-3000:]}{done.stderr[-3000:]}")
        stamp.touch()
    return python


if __name__ == "__main__":
    print(f"[setup] clients' virtualenv ready: {client_python()}")
