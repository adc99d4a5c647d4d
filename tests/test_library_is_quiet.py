"""The library never prints or exits: only the ``ltaug`` command does. Progress bars appear only
when asked for (``progress=True``); messages go through :mod:`logging`."""
from __future__ import annotations

import ast
import os
import re
import runpy

from conftest import ROOT


def python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", (ROOT / "README.md").read_text(encoding="utf-8"), re.S)


def test_the_readme_pipeline_writes_nothing_to_stdout_or_stderr(tmp_path, monkeypatch, capfd):
    """The README's Python blocks (the albumentations transforms; load, stats, plan, bank, run with
    2 worker processes, report; progress=False), with their own print calls taken out: nothing
    reaches file descriptors 1 and 2, from this process or from the workers."""
    os.symlink(ROOT / "examples", tmp_path / "examples")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("NO_ALBUMENTATIONS_UPDATE", "1")  # albumentations' import-time version check (network)
    shown = []
    for i, code in enumerate(python_blocks()):
        script = tmp_path / f"block{i}.py"
        script.write_text(code)
        runpy.run_path(str(script), init_globals={"print": lambda *args, **kw: shown.append(args)},
                       run_name="__main__")
    assert any("objects for copy-paste to add" in args for args in shown), "the README block did not run through"
    assert (tmp_path / "out" / "python" / "augmented" / "report.html").is_file()
    out, err = capfd.readouterr()
    assert out == "" and err == "", f"the library wrote:\nstdout: {out!r}\nstderr: {err!r}"


def _called_name(node: ast.Call) -> str:
    f = node.func
    if isinstance(f, ast.Name):
        return f.id
    if isinstance(f, ast.Attribute) and isinstance(f.value, ast.Name):
        return f"{f.value.id}.{f.attr}"
    return ""


# A pool worker whose parent died before it could ask the kernel to follow it ends itself: it
# is not the caller's process, and nothing else would end it.
ALLOWED = {("ltaug/pool.py", "os._exit(...)")}


def test_no_print_or_exit_in_the_library():
    """No ``print``, ``exit``, ``sys.exit``, ``os._exit`` call and no ``sys.stdout`` / ``sys.stderr``
    in ltaug/ (the pool's workers and the Ray backend included), but for :data:`ALLOWED`."""
    found = []
    for path in sorted((ROOT / "ltaug").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            what = ""
            if isinstance(node, ast.Call) and _called_name(node) in ("print", "pprint", "exit", "quit", "sys.exit",
                                                                     "os._exit", "os.abort"):
                what = _called_name(node) + "(...)"
            elif isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "sys" \
                    and node.attr in ("stdout", "stderr", "__stdout__", "__stderr__"):
                what = f"sys.{node.attr}"
            if what and (str(path.relative_to(ROOT)), what) not in ALLOWED:
                found.append(f"{path.relative_to(ROOT)}:{node.lineno}: {what}")
    assert not found, "the library must not print or exit (return values, raise, or log):\n" + "\n".join(found)
