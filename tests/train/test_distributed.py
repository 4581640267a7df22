"""DDP on 2 CPU processes (gloo), distilling: the gradients, the adapters' included, are one process's
on the same global batch, and the ranks' parameters stay equal while ``loop.train`` runs.

"The same global batch" as DDP splits it: the head's losses are normalised per process (by the objects
of the process's own batch), so DDP's gradient is the mean of the per-process batch gradients, which
one process gets by accumulating the two halves (``optim.accumulate``); that is the reference here.
"""

from __future__ import annotations

import socket

import pytest
import torch
import torch.multiprocessing as mp
from ddp_worker import build, val_batch, worker

from distillbev.train.checkpoint import read_checkpoint
from distillbev.train.loop import Trainable, teacher_outputs


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def ddp_run(smoke_world, tmp_path_factory):
    """The two processes' gradients and trained parameters (``ddp_worker.worker``)."""
    out = tmp_path_factory.mktemp("ddp")
    mp.spawn(worker, args=(2, _free_port(), str(smoke_world.dataroot), str(out)), nprocs=2, join=True)
    return out


def test_gradients_match_one_process_on_the_global_batch(ddp_run, smoke_world):
    cfg, student, teacher, distill = build(smoke_world.dataroot)
    trainee = Trainable(student, distill).train()
    for index in (0, 1):  # rank r saw val sample r
        batch = val_batch(cfg, index)
        losses = trainee(batch, teacher_outputs(teacher, student.head, batch), step=0)
        (sum(losses.values()) / 2).backward()
    ref = {n: p.grad for n, p in trainee.named_parameters() if p.grad is not None}
    adapters = [n for n in ref if n.startswith("distill.adapters.")]
    assert adapters and all(ref[n].abs().sum() > 0 for n in adapters)
    assert any(n.startswith("model.depth_net.") for n in ref)
    for rank in (0, 1):
        got = torch.load(ddp_run / f"grads_rank{rank}.pt")
        assert sorted(got) == sorted(ref)
        for n, g in ref.items():
            torch.testing.assert_close(got[n], g, rtol=1e-4, atol=1e-6, msg=lambda m, n=n: f"{n}: {m}")


def test_ranks_parameters_stay_equal_while_training(ddp_run, smoke_world):
    ranks = [torch.load(ddp_run / f"params_rank{r}.pt") for r in (0, 1)]
    assert sorted(ranks[0]) == sorted(ranks[1])
    assert any(n.startswith("distill.adapters.") for n in ranks[0])
    assert [n for n, p in ranks[0].items() if not torch.equal(p, ranks[1][n])] == []
    # Training moved them (the adapters too), and rank 0 wrote the checkpoint of 2 epochs x 2 steps.
    _, student, _, distill = build(smoke_world.dataroot)
    init = {f"model.{n}": p for n, p in student.named_parameters()}
    init |= {f"distill.{n}": p for n, p in distill.named_parameters()}
    moved = [n for n, p in init.items() if not torch.equal(p, ranks[0][n])]
    assert any(n.startswith("distill.adapters.") for n in moved) and any(
        n.startswith("model.") for n in moved
    )
    assert read_checkpoint(ddp_run / "run0" / "checkpoint.pt")["step"] == 4
    assert not (ddp_run / "run1" / "checkpoint.pt").exists()
