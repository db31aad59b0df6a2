"""--ray: Ray Data actors writing one dataset, equal to the single process's to the byte, also
when an actor is killed and when the driver is killed and the command run again. One local Ray
instance (2 CPUs) serves the module; each run is a driver process connecting to it."""

import logging
import os
import signal
import subprocess
import sys

import pytest

from grounded_sam2.cli import main
from grounded_sam2.cluster import GROUPS_PER_CALL, groups_per_call
from grounded_sam2.errors import MissingDependencyError

from dataset_files import normalized_dataset
from scale_out import ROOT, processes, summary_lines, wait_until_written

ray = pytest.importorskip("ray", reason="the Ray runner's tests need ray[data] (tests/run.sh installs it)")


@pytest.fixture(scope="module")
def cluster():
    """The address of a Ray instance started here; its workers import this checkout."""
    path = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = os.pathsep.join([str(ROOT), path or ""])
    ray.init(num_cpus=2, include_dashboard=False, logging_level=logging.ERROR)
    yield ray.get_runtime_context().gcs_address
    ray.shutdown()
    if path is None:
        os.environ.pop("PYTHONPATH")
    else:
        os.environ["PYTHONPATH"] = path


@pytest.mark.parametrize("groups, actors, expected", [(100, 2, GROUPS_PER_CALL), (3, 2, 1), (3, 1, 3), (1, 4, 1)])
def test_an_actor_call_takes_several_groups_unless_that_leaves_actors_idle(groups, actors, expected):
    assert groups_per_call(groups, actors) == expected


def test_a_ray_actor_writes_the_single_process_dataset(label_runs, cluster):
    """One actor: its one call labels the three groups, overlapped (the tests below use two
    actors, a group per call). YOLO here; the tests below compare COCO datasets. (The references
    are made meanwhile: each test asks for its own once its runs are done.)"""
    run = label_runs.label("ray-yolo", "--format", "yolo", "--ray", cluster, "--workers", "1")
    assert run.returncode == 1, run.stderr
    reference, reference_run = label_runs.single("yolo")
    assert summary_lines(run.stdout) == summary_lines(reference_run.stdout)
    assert normalized_dataset(label_runs.root / "ray-yolo") == normalized_dataset(reference)


def start_and_wait_for_a_label(label_runs, output, *options):
    """The command running into ``output``, once it has written its first COCO record."""
    process = label_runs.label(output.name, "--format", "coco", *options, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    wait_until_written(process, output, ".work/*.json")
    return process


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="finds the actors through /proc")
def test_a_killed_actor_is_started_again_and_the_dataset_is_the_same(label_runs, cluster):
    output = label_runs.root / "ray-killed-actor"
    process = start_and_wait_for_a_label(label_runs, output, "--ray", cluster, "--workers", "2")
    actors = processes(lambda command: b"_RayGroupLabeler" in command)
    assert actors, "no labeling actor found"
    os.kill(actors[0], signal.SIGKILL)
    stdout, stderr = process.communicate(timeout=600)
    assert process.returncode == 1, stderr
    reference, reference_run = label_runs.single("coco")
    assert summary_lines(stdout) == summary_lines(reference_run.stdout)
    assert normalized_dataset(output) == normalized_dataset(reference)


def test_a_killed_driver_resumes_to_the_same_dataset(label_runs, cluster):
    output = label_runs.root / "ray-killed-driver"
    options = ("--ray", cluster, "--workers", "2")
    process = start_and_wait_for_a_label(label_runs, output, *options)
    process.send_signal(signal.SIGKILL)
    process.communicate(timeout=60)
    resumed = label_runs.label(output.name, "--format", "coco", *options)
    assert resumed.returncode == 1, resumed.stderr
    assert "already done" in resumed.stdout and " 0 already done" not in resumed.stdout
    reference, _ = label_runs.single("coco")
    assert normalized_dataset(output) == normalized_dataset(reference)


def test_without_ray_the_option_says_how_to_install_it(label_runs, monkeypatch, tmp_path, capsys):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray raises ImportError
    assert main(["label", str(label_runs.root / "in"), "-o", str(tmp_path / "out"), *label_runs.common,
                 "--ray"]) == 2
    error = capsys.readouterr().err
    assert "pip install 'grounded-sam2[ray]'" in error and not (tmp_path / "out").exists()
    with pytest.raises(MissingDependencyError):
        from grounded_sam2.cluster import import_ray

        import_ray()
