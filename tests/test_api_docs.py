"""The API reference builds: pdoc renders every module of ltaug from its docstrings and type hints
without a single warning (a broken cross-reference, an annotation it cannot resolve, a module
that fails to import), as ``scripts/docs.sh`` does, from the module list of that script."""
from __future__ import annotations

import importlib
import pkgutil
import re
import warnings

import pytest
from conftest import ROOT

pytestmark = pytest.mark.slow  # pdoc imports and renders every module: seconds

pdoc = pytest.importorskip("pdoc")  # the dev extra


def docs_modules() -> list[str]:
    """The modules scripts/docs.sh gives pdoc."""
    match = re.search(r'^MODULES="([^"]+)"$', (ROOT / "scripts" / "docs.sh").read_text(), re.MULTILINE)
    assert match, "scripts/docs.sh: no MODULES=\"...\" line"
    return match.group(1).split()


def ltaug_modules() -> list[str]:
    import ltaug

    return ["ltaug", *(m.name for m in pkgutil.walk_packages(ltaug.__path__, "ltaug."))]


@pytest.fixture(scope="module")
def api_docs(tmp_path_factory):
    """The reference built into a temporary folder, and the warnings pdoc gave."""
    out = tmp_path_factory.mktemp("api")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("NO_ALBUMENTATIONS_UPDATE", "1")  # albumentations' import-time version check (network)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            for name in docs_modules():  # imported first: an import error fails here, not as a pdoc warning
                importlib.import_module(name)
            caught.clear()
            pdoc.pdoc(*docs_modules(), output_directory=out)
    return out, [f"{w.category.__name__}: {w.message}" for w in caught]


def test_pdoc_builds_the_reference_without_warnings(api_docs):
    _, caught = api_docs
    assert not caught, "pdoc warned:\n" + "\n".join(caught)


def test_every_module_has_a_page_and_the_index_names_the_package(api_docs):
    out, _ = api_docs
    index = out / "index.html"
    assert index.is_file()
    assert "ltaug.html" in index.read_text()  # the index redirects to (or lists) the package page
    missing = [m for m in ltaug_modules() if not (out / (m.replace(".", "/") + ".html")).is_file()]
    assert not missing, f"no API page for {missing}: add them to MODULES in scripts/docs.sh"


def test_the_ops_page_documents_paste_and_its_parameters(api_docs):
    from ltaug.ops import Paste

    out, _ = api_docs
    page = (out / "ltaug" / "ops.html").read_text()
    assert 'id="Paste"' in page
    assert "copy-paste" in page or "Paste objects cut out of the dataset" in page  # the class docstring
    for name in Paste.parameters:
        assert f'id="Paste.{name}"' in page, f"Paste.{name} is not documented"
    assert "a pasted box may cover at most F of any box already there" in page  # a parameter's help


def test_signatures_carry_the_type_hints(api_docs):
    out, _ = api_docs
    engine = (out / "ltaug" / "run" / "engine.html").read_text()
    signature = engine[engine.index('id="run_pipeline"'):][:6000]
    for hint in ("Dataset", "progress", "bool", "dict"):
        assert hint in signature, f"run_pipeline's signature lacks {hint!r}"
    assert 'id="load_dataset"' in (out / "ltaug" / "io" / "read.html").read_text()
