"""A Dask worker plugin for the tests: workers that do not work where the host does."""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path
from typing import Any

from distributed.diagnostics.plugin import WorkerPlugin


class MoveWorkers(WorkerPlugin):
    """Each worker works in `<root>/<its name>` (its cwd and its temporary files), so a relative
    path the host hands over names a place the host cannot see."""

    def __init__(self, root: str) -> None:
        self.root = root

    def setup(self, worker: Any) -> None:
        home = Path(self.root) / re.sub(r"[^A-Za-z0-9_.-]+", "_", str(worker.name))
        home.mkdir(parents=True, exist_ok=True)
        os.chdir(home)
        tempfile.tempdir = str(home)
