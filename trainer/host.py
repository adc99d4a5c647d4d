"""Which host a run trained on, as far as its numbers are concerned.

The engine's outputs are the same bytes on every host; the trainer's are not. The same seed
trains to different weights on an Intel Xeon (AVX-512) and on an AMD EPYC (AVX2) of this
project's 2-core kind, and even AMD hosts have differed among themselves (the overfit test
reached AP50 0.67 on one, 0.81 on another). The CPU model string does not tell them apart
(a virtual machine may say only "AMD EPYC"), so :func:`host_record` also runs a *numerics
probe*: three SGD steps of the CPU preset's detector (MobileNetV2-FPN Faster R-CNN, 80
classes, random weights from a fixed seed) on two fixed synthetic images with six boxes each,
in one thread, and hashes the resulting weights (SHA-256 of their float32 bytes). The probe
goes through the kernels a run uses (convolutions, frozen batch norm, RoIAlign, the heads,
softmax over 81 columns, SGD). Its first version (3 classes, one image) gave one hash with
torch's AVX2 and AVX-512 kernels although 15 training iterations differed (epoch loss
5.294784 against 5.294469), presumably because rows that short never reach the vector loops.
The present probe, on one AMD EPYC host (AVX-512) with ``ATEN_CPU_CAPABILITY`` set to avx512,
avx2 and default: three probes, three different 15-iteration trainings. Different probes
prove different numbers; the same probe is evidence, not proof, of the same numbers.
``ltaug compare`` records the host of every run and its report says when a table mixes hosts.
"""
from __future__ import annotations

import hashlib
import platform
from pathlib import Path

from ltaug.io.jsonio import read_json, write_json_atomic

PROBE_STEPS = 3
PROBE_SEED = 20261206
PROBE_CLASSES = 80  # as many as COCO: softmax rows long enough for the SIMD paths a real run takes


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo (Linux), else :func:`platform.processor`."""
    try:
        for line in Path("/proc/cpuinfo").read_text(errors="replace").splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def numerics_probe() -> str:
    """SHA-256 (first 16 hex digits) of a tiny detector's weights after ``PROBE_STEPS`` SGD steps.

    Runs in one torch thread (a run's own setting in ``ltaug compare``) with the global RNG
    state saved and restored, so it changes nothing for the caller.
    """
    import torch

    from .model import PRESETS, build_model

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(PROBE_SEED)
            model = build_model(num_classes=PROBE_CLASSES, preset=PRESETS["cpu"])
            gen = torch.Generator().manual_seed(PROBE_SEED)
            images = [torch.rand(3, 240, 320, generator=gen), torch.rand(3, 300, 200, generator=gen)]
            targets = []
            for image in images:
                h, w = image.shape[1:]
                corner = torch.rand(6, 2, generator=gen) * torch.tensor([w * 0.6, h * 0.6])
                size = 12 + torch.rand(6, 2, generator=gen) * torch.tensor([w * 0.35, h * 0.35])
                targets.append({"boxes": torch.cat([corner, corner + size], 1),
                                "labels": torch.randint(1, PROBE_CLASSES + 1, (6,), generator=gen)})
            model.train()
            opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.01, momentum=0.9)
            for _ in range(PROBE_STEPS):
                losses = model(images, targets)
                opt.zero_grad()
                sum(losses.values()).backward()
                opt.step()
            digest = hashlib.sha256()
            for name, tensor in sorted(model.state_dict().items()):
                digest.update(name.encode())
                digest.update(tensor.detach().to(torch.float32).contiguous().numpy().tobytes())
    finally:
        torch.set_num_threads(threads)
    return digest.hexdigest()[:16]


def host_record() -> dict:
    """The host as the study's tables need it: CPU, torch's kernel set, torch version, numerics probe."""
    import torch

    return {"cpu": cpu_model(), "capability": torch.backends.cpu.get_cpu_capability(),
            "torch": torch.__version__, "probe": numerics_probe()}


def host_label(record: dict | None) -> str:
    """``AMD EPYC, AVX2, probe 1a2b3c4d`` (``unknown host`` for a run recorded without one)."""
    if not record:
        return "unknown host"
    return f"{record.get('cpu', '?')}, {record.get('capability', '?')}, probe {record.get('probe', '?')[:8]}"


def run_hosts(folder: str | Path) -> list[dict]:
    """The hosts that trained the run in ``folder`` (its ``host.json``), in order; [] if none was recorded."""
    path = Path(folder) / "host.json"
    return read_json(path) if path.is_file() else []


def record_run_host(folder: str | Path, record: dict) -> list[dict]:
    """Add ``record`` to the run's ``host.json`` unless the run's last host has the same probe;
    returns the run's hosts. More than one means the run was resumed on a host whose numbers
    differ from the one it started on."""
    hosts = run_hosts(folder)
    if not hosts or hosts[-1].get("probe") != record["probe"]:
        hosts = [*hosts, record]
        write_json_atomic(Path(folder) / "host.json", hosts, indent=True)
    return hosts


if __name__ == "__main__":  # python -m trainer.host: this host's record
    import json

    print(json.dumps(host_record(), indent=2))
