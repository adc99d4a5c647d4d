"""The README's Python blocks run as shown (from a copy of the checkout's examples/, so the
outputs they write land in a temporary folder)."""
from __future__ import annotations

import os
import re
import runpy

from conftest import ROOT


def python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", (ROOT / "README.md").read_text(encoding="utf-8"), re.S)


def test_readme_python_blocks_run(tmp_path, monkeypatch, capsys):
    blocks = python_blocks()
    assert blocks, "the README has no Python block"
    os.symlink(ROOT / "examples", tmp_path / "examples")
    monkeypatch.chdir(tmp_path)
    for i, code in enumerate(blocks):
        script = tmp_path / f"block{i}.py"
        script.write_text(code)
        runpy.run_path(str(script), run_name="__main__")
    printed = capsys.readouterr().out
    assert "objects for copy-paste to add" in printed and "open out/python/augmented/report.html" in printed
    assert (tmp_path / "out" / "python" / "augmented" / "annotations.json").is_file()


def test_the_readme_policy_table_is_the_codes():
    from ltaug.io.read import policy_table

    text = (ROOT / "README.md").read_text()
    block = text.split("<!-- policy-table -->\n", 1)[1].split("<!-- /policy-table -->", 1)[0]
    assert block.strip() == policy_table(markdown=True), "regenerate the README's policy table"
