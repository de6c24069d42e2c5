"""Data-parallel training: two gloo ranks under torchrun follow one process with the same global batch.

``test_two_ranks_follow_one_process`` launches this very file with ``python -m torch.distributed.run``
(torchrun) on two CPU processes; run as a script, it is the worker (bottom of the file). The worker goes through
the real entry point, ``diffusion-edu pretrain``, with a tiny recipe registered for the test, and each rank
also saves what ``train`` returned to it, so the test can compare the ranks with each other and with one process.
"""
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import diffusion_edu as de
from diffusion_edu import pretrained
from diffusion_edu.train import rank_and_world_size

MLP = dict(hidden=64, depth=3, num_classes=2)
RUN = dict(steps=30, batch_size=64, lr=2e-3, objective="v", p_uncond=0.2, warmup=5, ema_decay=0.9, seed=0)
# The network's inputs match exactly (the same draws, sliced). What differs is the order of float32 sums: each
# rank's matrix products see 32 rows instead of 64, and DDP adds two half-batch gradients. That is a few ulps
# (~1e-7 relative) a step, which Adam's division by √v can grow over 30 steps. Measured here: 6e-8 on the
# weights (|w| ≤ 3.2), 1.2e-7 on the losses; the tolerance leaves two orders of magnitude for other CPUs and
# BLAS libraries. A real mistake in the draws (a rank's own batches, or batch 32 or 128 in place of 64) moves
# the weights by 3e-2 and the losses by 0.4.
TOLERANCE = dict(rtol=1e-4, atol=1e-5)


def tiny_run(batch_size: int = RUN["batch_size"], inputs: list | None = None) -> de.TrainResult:
    """A small conditional run (v-objective, label dropout) exercising every draw; ``inputs`` gets each (x_t, t, y)."""
    x0 = de.toy2d("moons", 512, seed=0)
    labels = (x0[:, 1] > 0.25).long()  # two made-up classes, to exercise the label drops
    torch.manual_seed(0)
    model = de.MLPDenoiser(**MLP)
    if inputs is not None:
        model.register_forward_pre_hook(lambda module, args: inputs.append([a.clone() for a in args]))
    return de.train(model, x0, de.linear(100), labels=labels, progress=False,
                    **pretrained.training_args(dict(RUN, batch_size=batch_size)))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_ranks_follow_one_process(tmp_path):
    """Two ranks with a global batch of 64 (32 each) ≈ one process with 64: losses, weights, EMA; rank 0 writes."""
    env = dict(os.environ, OMP_NUM_THREADS="1")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-addr", "127.0.0.1",
           "--master-port", str(free_port()), __file__, str(tmp_path)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)  # minutes on a loaded CPU
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1)]
    assert [r["rank_and_world_size"] for r in ranks] == [[0, 2], [1, 2]]
    assert all("multiple of 2, got 63" in r["odd_batch_error"] for r in ranks)

    # DDP keeps the ranks identical: the same averaged gradients, the same all-reduced losses
    assert ranks[0]["losses"] == ranks[1]["losses"]
    for key in ("model", "ema"):
        for a, b in zip(ranks[0][key].values(), ranks[1][key].values()):
            assert torch.equal(a, b)

    inputs = []
    one = tiny_run(inputs=inputs)
    for step, (x_t, t, y) in enumerate(inputs):  # each rank saw its own half of one process's batch, no more
        for i, whole in enumerate((x_t, t, y)):
            assert torch.equal(torch.cat([ranks[0]["inputs"][step][i], ranks[1]["inputs"][step][i]]), whole)
    torch.testing.assert_close(torch.tensor(ranks[0]["losses"]), torch.tensor(one.losses), **TOLERANCE)
    for key, net in (("model", one.model), ("ema", one.ema)):
        for (name, a), b in zip(ranks[0][key].items(), net.state_dict().values()):
            torch.testing.assert_close(a, b, **TOLERANCE, msg=f"{key}.{name}")
    torch.manual_seed(0)
    init = de.MLPDenoiser(**MLP).state_dict()
    moved = max((a - b).abs().max() for a, b in zip(one.model.state_dict().values(), init.values()))
    assert moved > 100 * TOLERANCE["atol"]  # it trained: the comparison is not between two copies of the start

    # rank 0 alone wrote the checkpoint and the manifest, and printed; rank 1's --out was never made
    assert sorted(p.name for p in (tmp_path / "weights-rank0").iterdir()) == ["manifest.json", "tiny.pt"]
    assert not (tmp_path / "weights-rank1").exists()
    assert proc.stdout.count("tiny: tiny.pt in") == 1
    ckpt = pretrained.load("tiny", tmp_path / "weights-rank0")
    for a, b in zip(ckpt.model.state_dict().values(), ranks[0]["ema"].values()):
        assert torch.equal(a, b)
    assert json.loads((tmp_path / "weights-rank0" / "manifest.json").read_text())["tiny"]["training"] == RUN


def old_diffusion_loss(model, x0, schedule, objective, y, p_uncond, generator):
    """A frozen copy of diffusion_loss before data parallelism (checks left out)."""
    B = x0.shape[0]
    t = torch.randint(0, schedule.T, (B,), generator=generator)
    noise = torch.randn(x0.shape, generator=generator, dtype=x0.dtype)
    x_t, eps = de.q_sample(x0, t, schedule, noise=noise)
    if y is not None and p_uncond > 0:
        drop = torch.rand(B, generator=generator) < p_uncond
        y = torch.where(drop, torch.full_like(y, model.num_classes), y)
    target = {"eps": eps, "x0": x0, "v": de.v_target(x0, eps, t, schedule)}[objective]
    return ((model(x_t, t, y) - target) ** 2).mean()


def old_train(model, data, schedule, steps, batch_size, lr, objective, labels, p_uncond, ema_decay, warmup, seed):
    """A frozen copy of train's loop before data parallelism (CPU, no callback, no timing)."""
    import math

    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    warm = max(warmup, 1)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda n: min(1.0, (n + 1) / warm) * 0.5 * (1 + math.cos(math.pi * n / steps)))
    ema = de.EMA(model, ema_decay)
    losses = []
    for _ in range(steps):
        idx = torch.randint(0, len(data), (min(batch_size, len(data)),), generator=generator)
        loss = old_diffusion_loss(model, data[idx], schedule, objective, labels[idx], p_uncond, generator)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        ema.update(model)
        losses.append(loss.item())
    return losses, model, ema.model


def test_one_process_is_bit_identical_to_the_loop_before_data_parallelism():
    """Without a process group ``train`` makes exactly the old draws and steps: shipped checkpoints still reproduce."""
    x0 = de.toy2d("moons", 512, seed=0)
    labels = (x0[:, 1] > 0.25).long()
    torch.manual_seed(0)
    old_losses, old_model, old_ema = old_train(de.MLPDenoiser(**MLP), x0, de.linear(100), labels=labels, **RUN)
    new = tiny_run()
    assert rank_and_world_size() == (0, 1)
    assert new.losses == old_losses
    for net, old in ((new.model, old_model), (new.ema, old_ema)):
        for a, b in zip(net.state_dict().values(), old.state_dict().values()):
            assert torch.equal(a, b)


def test_amp_is_refused_on_the_cpu():
    with pytest.raises(ValueError, match="amp=True .* needs a model on CUDA"):
        de.train(de.MLPDenoiser(), de.toy2d("moons", 64), de.linear(10), steps=1, amp=True, progress=False)


# ------------------------------------------------------------------------------------- the torchrun worker

def _tiny_recipe(name: str, device: torch.device | str = "cpu"):
    """A recipe for the test: the tiny run, with what ``train`` returned on this rank saved for the test."""
    rank, world = rank_and_world_size()
    try:
        tiny_run(batch_size=63)
        odd_batch_error = ""
    except ValueError as err:  # 63 rows cannot be split over two ranks
        odd_batch_error = str(err)
    inputs = []
    result = tiny_run(inputs=inputs)
    torch.save(dict(rank_and_world_size=[rank, world], odd_batch_error=odd_batch_error, inputs=inputs,
                    losses=result.losses, model=result.model.state_dict(), ema=result.ema.state_dict()),
               OUT / f"rank{rank}.pt")
    return result.ema, dict(kind="mlp", config=MLP, schedule="linear", objective=RUN["objective"], training=RUN,
                            train_seconds=round(result.seconds, 1))


if __name__ == "__main__":  # one rank under torchrun: the real command line, --out per rank to see who writes
    from diffusion_edu.course import cli

    OUT = Path(sys.argv[1])
    pretrained.RECIPES["tiny"] = _tiny_recipe
    sys.exit(cli.main(["pretrain", "tiny", "--out", str(OUT / f"weights-rank{os.environ['RANK']}")]))
