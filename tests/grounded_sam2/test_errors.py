"""One root for every error the package raises for its users, and what the command line does
with errors: messages for those, its own message for out-of-memory, tracebacks for bugs."""

import pytest
import torch

import segmenter
from grounded_sam2 import cli
from grounded_sam2.datasets.reading import DatasetReadError
from grounded_sam2.datasets.writer import DatasetError
from grounded_sam2.errors import GroundedSAM2Error, InputNotFoundError, SettingsError, is_out_of_memory
from grounded_sam2.grounding import GroundingModelError
from grounded_sam2.ontology import OntologyError


@pytest.mark.parametrize("error, builtin", [
    (segmenter.CheckpointError, RuntimeError),
    (segmenter.ConfigError, ValueError),
    (segmenter.ImageError, ValueError),
    (segmenter.VideoError, ValueError),
    (segmenter.DeviceError, RuntimeError),
    (SettingsError, ValueError),
    (OntologyError, ValueError),
    (GroundingModelError, RuntimeError),
    (DatasetError, RuntimeError),
    (DatasetReadError, ValueError),
    (InputNotFoundError, FileNotFoundError),
])
def test_every_error_has_the_one_root_and_its_old_base(error, builtin):
    assert issubclass(error, GroundedSAM2Error) and issubclass(error, builtin)
    assert segmenter.GroundedSAM2Error is GroundedSAM2Error


@pytest.mark.parametrize("device, message", [("cuda:3", "CUDA is not available"), ("gpu", "unknown device 'gpu'")])
def test_unusable_devices_are_package_errors(device, message):
    with pytest.raises(segmenter.DeviceError, match=message):
        segmenter.device.resolve_device(device)


@pytest.mark.parametrize("error, expected", [
    (torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"), True),
    (RuntimeError("MPS backend out of memory (MPS allocated: 1 GB)"), True),
    (RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried to allocate 10 bytes"), True),
    (MemoryError(), True),
    (RuntimeError("mat1 and mat2 shapes cannot be multiplied"), False),
    (ValueError("out of memory"), False),
])
def test_out_of_memory_is_recognised(error, expected):
    assert is_out_of_memory(error) is expected


LABEL = ["label", "in", "-o", "out", "--ontology", "example", "--batch-size", "3"]


@pytest.mark.parametrize("raised, code, message", [
    (OntologyError("the ontology is empty"), 2, "error: the ontology is empty"),
    (torch.cuda.OutOfMemoryError("CUDA out of memory."), 2, "Lower --batch-size (now 3)"),
    (KeyboardInterrupt(), 130, "run the same command again to resume"),
])
def test_cli_turns_package_errors_into_messages(monkeypatch, capsys, raised, code, message):
    def fail(args):
        raise raised

    monkeypatch.setattr(cli, "_label", fail)
    assert cli.main(LABEL) == code
    assert message in capsys.readouterr().err


def test_out_of_memory_without_a_batch_size_names_the_defaults(monkeypatch, capsys):
    def fail(args):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory.")

    monkeypatch.setattr(cli, "_label", fail)
    assert cli.main(LABEL[:-2]) == 2
    assert ("Lower --batch-size (default: the dataset's when resuming, else 1 on a CPU, 4 on a GPU, 8 on a CUDA "
            "GPU with 40 GiB or more)") in capsys.readouterr().err


@pytest.mark.parametrize("bug", [ZeroDivisionError("a bug"), RuntimeError("a torch bug"), ValueError("another bug")])
def test_cli_lets_bugs_show_their_traceback(monkeypatch, bug):
    def fail(args):
        raise bug

    monkeypatch.setattr(cli, "_label", fail)
    with pytest.raises(type(bug), match="bug"):
        cli.main(LABEL)
