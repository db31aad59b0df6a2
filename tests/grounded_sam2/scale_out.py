"""Runs of ``grounded-sam2 label`` on one small input (tiny models, four images and one
unreadable file) that the scale-out tests compare with the single process's."""

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, Dict, List, Tuple

import cv2
import numpy as np

from grounded_sam2.tiny_models import make_tiny_models

ROOT = Path(__file__).resolve().parents[2]
CLI = [sys.executable, "-m", "grounded_sam2.cli"]


FORMATS = ("yolo", "coco")


class LabelRuns:
    """``label(output, *options)`` runs the command into ``root/output``; ``single(fmt)`` is the
    single-process run of the same configuration, made once per format. One CPU thread per
    process, so that two workers fit on two cores.

    The single-process runs of both formats start in the background as soon as the input is
    written, side by side (each uses one core), while the tests start their own runs; ``single``
    waits for its format's. ``close()`` ends any still running."""

    def __init__(self, root: Path) -> None:
        self.root = root
        florence, sam2 = make_tiny_models(root / "tiny")
        (root / "in").mkdir()
        for i in range(4):
            image = np.zeros((40 + 4 * i, 60, 3), np.uint8)
            image[10:30, 10 + i : 40 + i] = (50 * i, 200, 100)
            cv2.imwrite(str(root / "in" / f"{i}.png"), image)
        (root / "in" / "broken.jpg").write_text("not an image")
        self.common = [str(a) for a in ["--ontology", "example", "--florence", florence, "--sam2", sam2,
                                        "--no-progress", "--batch-size", "2", "--threads", "1"]]
        self.singles: Dict[str, Tuple[Path, subprocess.CompletedProcess]] = {}
        self.started: Dict[str, subprocess.Popen] = {}
        for fmt in FORMATS:
            with self._log(fmt, "out").open("w") as out, self._log(fmt, "err").open("w") as err:
                self.started[fmt] = self.label(f"single-{fmt}", "--format", fmt, "--device", "cpu", stdout=out,
                                               stderr=err, text=True)

    def _log(self, fmt: str, stream: str) -> Path:
        return self.root / f"single-{fmt}.{stream}"

    def label(self, output: str, *options: str, **popen):
        """The command's CompletedProcess, or with Popen arguments the running process."""
        args = [*CLI, "label", str(self.root / "in"), "-o", str(self.root / output), *self.common, *options]
        # this process's environment now (Ray's, once a test started it: RAY_AUTH_MODE)
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
        if popen:
            return subprocess.Popen(args, cwd=ROOT, env=env, **popen)
        return subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)

    def single(self, fmt: str) -> Tuple[Path, subprocess.CompletedProcess]:
        if fmt not in self.singles:
            process = self.started.pop(fmt)
            process.wait(timeout=600)
            run = subprocess.CompletedProcess(process.args, process.returncode, self._log(fmt, "out").read_text(),
                                              self._log(fmt, "err").read_text())
            assert run.returncode == 1, run.stderr  # the broken file is skipped
            self.singles[fmt] = self.root / f"single-{fmt}", run
        return self.singles[fmt]

    def close(self) -> None:
        """End the single-process runs no test waited for."""
        for process in self.started.values():
            if process.poll() is None:
                process.kill()
            process.wait()


def summary_lines(stdout: str) -> List[str]:
    """The summary a run printed, without the line naming its output folder and without Ray's
    messages (a driver prints what its cluster's raylets report, e.g. a killed worker)."""
    return [line for line in stdout.splitlines() if not line.startswith("dataset:") and "(raylet)" not in line]


def command_line(pid: int) -> bytes:
    """A process's command line, empty once it is gone."""
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
    except OSError:
        return b""


def processes(matching: Callable[[bytes], bool]) -> List[int]:
    """The processes of this machine whose command line matches."""
    return [int(e.name) for e in Path("/proc").iterdir() if e.name.isdigit() and matching(command_line(int(e.name)))]


def worker_pids(pid: int) -> List[int]:
    """The worker processes a command started (spawned interpreters, not the resource tracker)."""
    children = [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    return [c for c in children if b"spawn_main" in command_line(c) and b"resource_tracker" not in command_line(c)]


def wait_until_written(process: subprocess.Popen, output: Path, pattern: str) -> None:
    """Wait until the running ``process`` has written a file matching ``pattern`` under ``output``;
    fails when it ended first (nothing would be interrupted)."""
    deadline = time.time() + 300
    while not list(output.glob(pattern)) and time.time() < deadline and process.poll() is None:
        time.sleep(0.05)
    assert process.poll() is None, "the run ended before it could be interrupted"
