"""The demo notebooks in notebooks/ run top to bottom, offline on CPU, on tiny random models.

Each notebook runs in its own Jupyter kernel (nbclient), started from this interpreter, in a fresh
temporary working directory, with TMPDIR pointing into the test's temporary folder, so nothing is
written into the repository. Any cell that raises fails the test.

The kernel sees exactly the test environment's packages, the ones a user has (Meta's sam2 reference
is kept off its path, see tests/meta_reference.py); the notebooks themselves hold no test code.
"""

import os
import shutil
import sys
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))

def test_notebooks_exist():
    assert len(NOTEBOOKS) >= 3, NOTEBOOKS


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_is_stored_clean(path):
    """No outputs or execution counts, the flag off, and one clearly marked real-weights cell."""
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    code = [cell for cell in nb.cells if cell.cell_type == "code"]
    assert 5 <= len(code) <= 10
    for cell in code:
        assert cell.outputs == [] and cell.execution_count is None, f"{path.name}: clear the outputs"
    assert "USE_REAL_WEIGHTS = False" in code[0].source
    assert sum("# Real weights:" in cell.source for cell in code) == 1


def _kernel_manager(tmp_path: Path):
    """A kernel manager whose only kernel, python3, is ipykernel on this very interpreter."""
    from ipykernel.kernelspec import write_kernel_spec
    from jupyter_client.kernelspec import KernelSpecManager
    from jupyter_client.manager import KernelManager

    kernels = tmp_path / "kernels"
    write_kernel_spec(kernels / "python3")
    specs = KernelSpecManager(kernel_dirs=[str(kernels)], ensure_native_kernel=False)
    assert specs.get_kernel_spec("python3").argv[0] == sys.executable
    return KernelManager(kernel_name="python3", kernel_spec_manager=specs)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs(path, tmp_path):
    nb = nbformat.read(path, as_version=4)
    cwd, tmp = tmp_path / "cwd", tmp_path / "tmp"
    cwd.mkdir()
    tmp.mkdir()
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT)] + [p for p in [env.get("PYTHONPATH")] if p])
    env["TMPDIR"] = str(tmp)  # the notebooks' tempfile.mkdtemp() folders, removed below
    env["HF_HUB_OFFLINE"] = "1"  # already set by conftest; the kernel must never download
    env.pop("MPLBACKEND", None)  # ipykernel's inline backend: figures become outputs, no GUI
    client = nbclient.NotebookClient(
        nb, km=_kernel_manager(tmp_path), timeout=300, startup_timeout=120, allow_errors=False
    )
    try:
        client.execute(cwd=str(cwd), env=env)  # raises CellExecutionError if any cell raises
    finally:
        shutil.rmtree(tmp, ignore_errors=True)  # the tiny checkpoints: ~150 MB per notebook
    assert list(cwd.iterdir()) == [], "a notebook wrote into its working directory"
