"""README's Python snippets cannot drift: each is followed by an offline twin (in a <details>
block) that is the snippet itself, with only its model names replaced by tiny random models and
its inputs made up first; every twin runs here, as written."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()

# what a twin may change in its snippet: the models only
OFFLINE_NAMES = {
    'GroundedSAM2(ontology=CaptionOntology({"dog": "dog"}))':
        'GroundedSAM2(ontology=CaptionOntology({"dog": "dog"}), florence=florence, sam2=sam2)',
    'sam2="checkpoints/sam2.1_hiera_large.pt"': "sam2=sam2, florence=florence",
    '"sam2.1_hiera_l.yaml", "checkpoints/sam2.1_hiera_large.pt"': '"sam2.1_hiera_t.yaml", checkpoint',
}


def snippets():
    """(snippet, its offline twin) pairs, in README order."""
    blocks = [(m.start(), m.group(1)) for m in re.finditer(r"```python\n(.*?)```", README, re.S)]
    def in_details(start: int) -> bool:
        return README.rfind("<details>", 0, start) > README.rfind("</details>", 0, start)

    twins = [(start, code) for start, code in blocks if in_details(start)]
    real = [(start, code) for start, code in blocks if (start, code) not in twins]
    assert len(real) == len(twins), "every README Python snippet needs an offline twin right after it"
    return [(code, twin) for (_, code), (_, twin) in zip(real, twins)]


SNIPPETS = snippets()


def offline(code: str) -> str:
    for real, tiny in OFFLINE_NAMES.items():
        code = code.replace(real, tiny)
    return code


@pytest.mark.parametrize("index", range(len(SNIPPETS)), ids=lambda i: SNIPPETS[i][0].splitlines()[0][:40])
def test_each_snippet_has_its_offline_twin_which_runs(index, tmp_path):
    code, twin = SNIPPETS[index]
    assert offline(code) in twin, "the twin must hold the snippet itself, only its model names changed"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT)}
    run = subprocess.run([sys.executable, "-c", twin], cwd=tmp_path, env=env, capture_output=True, text=True,
                         timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
