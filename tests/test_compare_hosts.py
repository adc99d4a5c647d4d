"""The host each ``ltaug compare`` run trained on: the numerics probe, host.json, the report's host line."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from conftest import DEMO, ROOT

torch = pytest.importorskip("torch")

from ltaug.trainer.compare_config import load_compare, run_dir  # noqa: E402
from ltaug.trainer.compare_report import METRICS, _host_paragraph, _hosts, _markdown  # noqa: E402
from ltaug.trainer.host import numerics_probe, record_run_host, run_hosts  # noqa: E402


def _probe_in_a_process(**env) -> dict:
    out = subprocess.run([sys.executable, "-m", "trainer.host"], cwd=ROOT, capture_output=True, text=True,
                         env={**os.environ, **env}, check=True).stdout
    return json.loads(out)


def test_the_probe_repeats_leaves_the_caller_alone_and_sees_another_kernel_set():
    torch.manual_seed(7)
    expected = torch.rand(3)
    threads = torch.get_num_threads()
    torch.manual_seed(7)
    first = numerics_probe()
    assert torch.equal(torch.rand(3), expected)  # the caller's random stream is untouched
    assert torch.get_num_threads() == threads
    here = _probe_in_a_process()
    assert here["probe"] == first and len(first) == 16  # a fresh process on the same host agrees
    plain = _probe_in_a_process(ATEN_CPU_CAPABILITY="default")
    assert plain["capability"] == "DEFAULT"
    if here["capability"] != "DEFAULT":  # torch's SIMD kernels off: other numbers, another probe
        assert plain["probe"] != here["probe"]
    if here["capability"] == "AVX512":  # AVX2 trains to other numbers too (a 3-class probe missed it)
        assert _probe_in_a_process(ATEN_CPU_CAPABILITY="avx2")["probe"] != here["probe"]


def test_a_run_records_each_new_host_once(tmp_path):
    a = {"cpu": "X", "capability": "AVX2", "torch": "2", "probe": "a" * 16}
    b = {**a, "probe": "b" * 16}
    assert run_hosts(tmp_path) == []
    assert record_run_host(tmp_path, a) == [a]
    assert record_run_host(tmp_path, a) == [a]  # resumed on the same host: nothing added
    assert record_run_host(tmp_path, b) == [a, b]
    assert run_hosts(tmp_path) == [a, b]


def _study(tmp_path, cells="  baseline: {}\n  seesaw: {loss: seesaw}\n"):
    path = tmp_path / "cmp.yaml"
    path.write_text(f"train: {DEMO}/annotations/train.json\nimages: {DEMO}/images/train\n"
                    f"val: {DEMO}/annotations/val.json\nval_images: {DEMO}/images/val\nout: out\nseeds: [0, 1]\n"
                    f"cells:\n{cells}")
    return load_compare(str(path))


def _rows(cmp, marks):
    one = (0.01, 0.002)
    return {c: {"cell": c, "setting": "s", "seeds": [0, 1], "hosts": marks[c], "train_minutes": (1.0, None),
                **{f"bbox {m}": one for m in METRICS}} for c in marks}


def test_the_report_names_the_one_host_or_marks_each_runs_host(tmp_path):
    cmp = _study(tmp_path)
    results = {c: {0: {}, 1: {}} for c in ("baseline", "seesaw")}
    here = {"cpu": "AMD EPYC", "capability": "AVX2", "torch": "2.14.1", "probe": "0123456789abcdef"}
    for c in results:
        for s in (0, 1):
            record_run_host(run_dir(cmp, c, s), here)
    records, marks = _hosts(cmp, results)
    assert marks == {"baseline": ["A", "A"], "seesaw": ["A", "A"]} and records["A"]["probe"] == here["probe"]
    text = _markdown(cmp, _rows(cmp, marks), {}, ["bbox"], "bins", records)
    assert f"every run trained on {here['cpu']}" in text and "hosts |" not in text

    other = {**here, "probe": "f" * 16, "cpu": "Other CPU"}
    record_run_host(run_dir(cmp, "seesaw", 1), other)  # resumed elsewhere
    (run_dir(cmp, "seesaw", 0) / "host.json").unlink()  # made before hosts were recorded
    records, marks = _hosts(cmp, results)
    assert marks == {"baseline": ["A", "A"], "seesaw": ["?", "A+B"]}
    text = _markdown(cmp, _rows(cmp, marks), {}, ["bbox"], "bins", records)
    assert "more than one host" in text and "B = Other CPU" in text and "? = not recorded" in text
    assert "| 1.0 | ? A+B |" in text and "| 1.0 | A A |" in text


def test_runs_without_host_records_say_so():
    assert _host_paragraph({}, {"baseline": ["?", "?"]}).startswith("Host: not recorded")


def _scheduled(monkeypatch, cmp, seconds: dict, fails=()):
    """run_compare's order of events with each run's process replaced by a sleep of ``seconds[cell]``."""
    import threading
    import time

    from ltaug.trainer import compare

    events, guard = [], threading.Lock()

    def spawn(cmp, cell, seed, data, *, lock, host, log):
        with lock:
            with guard:
                events.append(("start", cell, seed))
            time.sleep(seconds[cell])
            with guard:
                events.append(("end", cell, seed))
            return cell, seed, (cell, seed) not in fails, seconds[cell], False

    monkeypatch.setattr(compare, "_spawn", spawn)
    monkeypatch.setattr(compare, "host_record", lambda: {"probe": "0" * 16})
    monkeypatch.setattr(compare, "write_report", lambda cmp: {})
    lines = []
    summary = compare.run_compare(cmp, jobs=2, log=lines.append)
    return events, summary, lines


def _chain(tmp_path):
    return _study(tmp_path, "  slow: {loss: seesaw}\n  baseline: {}\n  tau: {from: baseline, tau: 1.0}\n")


def test_a_stage2_run_starts_once_its_own_source_run_is_done(tmp_path, monkeypatch):
    events, summary, _ = _scheduled(monkeypatch, _chain(tmp_path), {"slow": 0.6, "baseline": 0.05, "tau": 0.05})
    assert summary["failed"] == summary["elsewhere"] == []
    # seed-major; tau seed 0 does not wait for the slow cell, only for baseline seed 0
    assert events.index(("start", "tau", 0)) < events.index(("end", "slow", 0))
    assert events.index(("end", "baseline", 0)) < events.index(("start", "tau", 0))
    assert events.index(("start", "slow", 0)) < events.index(("start", "slow", 1))
    assert sorted(e[1:] for e in events if e[0] == "end") == [(c, s) for c in ("baseline", "slow", "tau")
                                                               for s in (0, 1)]


def test_a_stage2_run_whose_source_failed_is_skipped_and_named(tmp_path, monkeypatch):
    events, summary, lines = _scheduled(monkeypatch, _chain(tmp_path), {"slow": 0.01, "baseline": 0.01, "tau": 0.01},
                                        fails={("baseline", 1)})
    assert ("start", "tau", 1) not in events and ("end", "tau", 0) in events
    assert sorted(summary["failed"]) == ["baseline/seed1", "tau/seed1"]
    assert any("tau seed 1: skipped, its baseline run failed" in line for line in lines)


def test_a_run_locked_by_another_compare_is_left_to_it(tmp_path, monkeypatch):
    from ltaug.trainer.compare import _claim

    cmp = _chain(tmp_path)
    other = _claim(run_dir(cmp, "baseline", 1))  # as another ltaug compare on the folder holds it
    assert other is not None and _claim(run_dir(cmp, "baseline", 1)) is None
    fast = {"slow": 0.01, "baseline": 0.01, "tau": 0.01}
    events, summary, lines = _scheduled(monkeypatch, cmp, fast)
    assert ("start", "baseline", 1) not in events and ("start", "tau", 1) not in events
    assert ("end", "slow", 1) in events and ("end", "tau", 0) in events
    assert summary["failed"] == [] and sorted(summary["elsewhere"]) == ["baseline/seed1", "tau/seed1"]
    assert any("baseline seed 1: being run by another ltaug compare" in line for line in lines)
    other.close()  # that process has ended: the next command runs what is left
    events, summary, _ = _scheduled(monkeypatch, cmp, fast)
    assert ("end", "baseline", 1) in events and ("end", "tau", 1) in events and summary["elsewhere"] == []
