"""The README's code blocks run as a newcomer would paste them: the Python blocks in
order, in one process, then every command line of the ``sh`` blocks that runs
guestslots, in the same directory (so ``disk.img`` is the first program's).  The
install lines (apt-get, venv, pip) and ``./tools/demo`` / ``./tools/test`` are
what made the environment this test runs in (``./tools/test`` runs ``tools/setup``
and then this test), so they are not run again here."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.integration,
              pytest.mark.single_pass("the README's examples use the default backend")]

README = Path(__file__).resolve().parents[2] / "README.md"
INSTALLS = ("sudo apt-get", "python3 -m venv", ".venv/bin/pip", "./tools/")


def blocks(language: str) -> list[str]:
    return re.findall(rf"^```{language}\n(.*?)^```$", README.read_text(), re.S | re.M)


def command_lines() -> list[str]:
    """The command lines of the sh blocks (continuations joined), installs left out."""
    lines = []
    for block in blocks("sh"):
        for line in block.replace("\\\n", " ").splitlines():
            if line.strip() and not line.startswith(INSTALLS):
                lines.append(line.strip())
    return lines


def test_the_readme_has_a_first_program_and_front_end_examples() -> None:
    assert blocks("python") and any(line.startswith("guestslots ") for line in command_lines())
    assert all(line.startswith(("guestslots ", "guestslots-fish ")) for line in command_lines())


def test_the_readmes_code_blocks_run(tmp_path: Path) -> None:
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}:{os.environ['PATH']}")
    program = "\n\n".join(blocks("python"))
    done = subprocess.run([sys.executable, "-c", program], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout == "{'/dev/sdb1': 'ext4'}\nhello, slots\n"
    said = {}
    for line in command_lines():
        ran = subprocess.run(["bash", "-c", line], cwd=tmp_path, env=env,
                             capture_output=True, text=True, timeout=300, check=False)
        assert ran.returncode == 0, (line, ran.stderr)
        said[line.split()[1]] = ran.stdout
    assert said["--ro"] == "hello, slots\n"              # guestslots-fish --ro ... cat /hello
    assert "hello" in said["ls"].split()
    assert re.fullmatch(r"[0-9a-f]{64}\n", said["call"])  # checksum sha256 /hello
    assert (tmp_path / "report.json").stat().st_size > 0  # guestslots inspect > report.json
