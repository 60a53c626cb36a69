"""The README's outputs that are cheap to recompute are what the code prints."""
from __future__ import annotations

import ast
import re
from pathlib import Path

from dpc import Genome, zoo_cell

README = (Path(__file__).resolve().parents[1] / "README.md").read_text()


def _commented(call: str) -> str:
    m = re.search(rf"^{re.escape(call)}\s+# (.+?)(?:\s{{2,}}|$)", README, re.MULTILINE)
    assert m, f"README has no line `{call}  # ...`"
    return m.group(1)


def test_genome_example_outputs():
    g = Genome.parse(re.search(r'g = Genome.parse\("([^"]+)"\)', README).group(1))
    assert g == zoo_cell("top1_cityscapes")
    assert ast.literal_eval(_commented("g.to_vector()")) == g.to_vector()
    params = _commented("g.to_params()")
    assert params.startswith('{"b0_input": -1, "b0_op": "sep3x3_1x6"') and g.to_params()["b0_op"] == "sep3x3_1x6"
    assert g.to_json()[:40] in _commented("g.to_json()")
