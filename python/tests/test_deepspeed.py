"""DeepSpeed ZeRO-Offload (ZeRO stage 1 and 2, optimizer offloaded to the CPU) with
recadam.RecAdam as its client optimizer, for real, on DeepSpeed's CPU accelerator (gloo, one
process): 20 steps of a tiny BERT through ``deepspeed.initialize`` against the same 20 steps
through recadam.RecAdam in a plain torch loop, a DeepSpeed checkpoint saved at step 10 and
resumed, and benches/gpu/zero_offload.py end to end with ``--tiny``."""

import math
import os
import socket

import pytest
import torch

import recadam

transformers = pytest.importorskip("transformers")
os.environ.setdefault("HF_HUB_OFFLINE", "1")


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return str(s.getsockname()[1])


# One process as its own world; set before DeepSpeed picks its accelerator.
os.environ.setdefault("DS_ACCELERATOR", "cpu")
for key, value in (("MASTER_ADDR", "127.0.0.1"), ("RANK", "0"), ("LOCAL_RANK", "0"), ("WORLD_SIZE", "1")):
    os.environ.setdefault(key, value)
os.environ.setdefault("MASTER_PORT", _free_port())
if os.environ.get("RECADAM_REQUIRE_DEEPSPEED"):
    import deepspeed  # python/test.sh installs it: a failed import fails the run
else:
    deepspeed = pytest.importorskip("deepspeed")

STEPS, BATCH = 20, 8
HYPER = dict(lr=2e-4, anneal_k=0.5, anneal_t0=8, threads=1)


def tiny_bert():
    torch.manual_seed(0)
    config = transformers.BertConfig(
        vocab_size=50, hidden_size=16, num_hidden_layers=2, num_attention_heads=2, intermediate_size=32,
        max_position_embeddings=32, num_labels=2,
        # No dropout: the two loops must see the same forward passes.
        hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0,
    )
    return transformers.BertForSequenceClassification(config)


def batches():
    gen = torch.Generator().manual_seed(3)
    ids = torch.randint(10, 50, (STEPS, BATCH, 12), generator=gen)
    labels = (ids == 17).any(-1).long()
    return list(zip(ids, labels))


def reference(steps):
    """The plain torch loop: recadam.RecAdam over the model's own parameters."""
    model = tiny_bert()
    opt = recadam.RecAdam(recadam.param_groups(model, 0.01), **HYPER)
    for ids, labels in batches()[:steps]:
        model(input_ids=ids, labels=labels).loss.backward()
        opt.step()
        opt.zero_grad()
    return model


def engine(stage=2):
    model = tiny_bert()
    opt = recadam.RecAdam(recadam.param_groups(model, 0.01), **HYPER)
    config = recadam.deepspeed_config({"train_micro_batch_size_per_gpu": BATCH, "gradient_accumulation_steps": 1}, stage=stage)
    eng, _, _, _ = deepspeed.initialize(model=model, optimizer=opt, config=config)
    return eng, opt


def train(eng, data):
    for ids, labels in data:
        loss = eng(input_ids=ids, labels=labels).loss
        eng.backward(loss)
        eng.step()


def assert_same(model, ref):
    # Same bits expected: the update is elementwise, so a flat partition per group gets what
    # each of its tensors would, and with one process DeepSpeed averages each gradient over a
    # world of 1. A tolerance would hide a wrong group, step count or θ*.
    for (name, p), (_, q) in zip(model.named_parameters(), ref.named_parameters()):
        assert torch.equal(p.detach(), q.detach()), f"{name}: max difference {(p - q).abs().max().item():.3g}"


@pytest.mark.parametrize("stage", [1, 2])
def test_zero_offload_matches_a_plain_loop(stage):
    eng, opt = engine(stage)
    inner = eng.optimizer.optimizer
    assert inner is opt
    # DeepSpeed flattened each group into one host partition.
    assert all(len(g["params"]) == 1 for g in inner.param_groups)
    start = {i: g["params"][0].detach().clone() for i, g in enumerate(inner.param_groups)}
    train(eng, batches())
    assert_same(eng.module, reference(STEPS))
    assert eng.module.bert.embeddings.word_embeddings.weight.abs().sum() > 0
    for i, g in enumerate(inner.param_groups):
        state = inner.state[g["params"][0]]
        assert state["step"] == STEPS
        if g["anneal_w"] > 0:
            # θ* is the partition at its first step: the pretrained weights.
            assert torch.equal(state["pretrain_param"], start[i])
        else:
            assert "pretrain_param" not in state  # the head: no pull, no copy
        assert not torch.equal(g["params"][0], start[i])


def test_zero2_offload_checkpoint_resumes_with_the_same_bits(tmp_path):
    eng, _ = engine()
    train(eng, batches()[:10])
    eng.save_checkpoint(str(tmp_path), tag="ten")
    del eng
    resumed, opt = engine()
    resumed.load_checkpoint(str(tmp_path), tag="ten")
    assert all(opt.state[g["params"][0]]["step"] == 10 for g in opt.param_groups)
    train(resumed, batches()[10:])
    assert_same(resumed.module, reference(STEPS))


def test_deepspeed_config_refuses_what_would_not_run_recadam():
    config = recadam.deepspeed_config({"train_micro_batch_size_per_gpu": 4})
    assert config["zero_optimization"] == {"stage": 2, "offload_optimizer": {"device": "cpu", "pin_memory": True}}
    assert config["zero_force_ds_cpu_optimizer"] is False and config["zero_allow_untested_optimizer"] is True
    with pytest.raises(ValueError, match="names an optimizer"):
        recadam.deepspeed_config({"optimizer": {"type": "AdamW"}})
    with pytest.raises(ValueError, match="nvme"):
        recadam.deepspeed_config({"zero_optimization": {"offload_optimizer": {"device": "nvme"}}})
    with pytest.raises(ValueError, match="stage 3"):
        recadam.deepspeed_config(stage=3)
    with pytest.raises(ValueError, match="zero_force_ds_cpu_optimizer"):
        recadam.deepspeed_config({"zero_force_ds_cpu_optimizer": True})


def test_a_repartitioned_group_is_a_typed_error():
    # DeepSpeed re-partitioning (another world size) hands the optimizer a flat tensor of
    # another length than its state: refused, naming what differs, nothing changed.
    p = torch.zeros(6, requires_grad=True)
    opt = recadam.RecAdam([p], lr=1e-4, threads=1)
    p.grad = torch.ones(6)
    opt.step()
    q = torch.zeros(4, requires_grad=True)
    q.grad = torch.ones(4)
    opt.state[q] = opt.state.pop(p)
    opt.param_groups[0]["params"] = [q]
    with pytest.raises(TypeError, match="exp_avg"):
        opt.step()
    assert torch.equal(q, torch.zeros(4))


def test_the_gpu_benchmark_runs_end_to_end_on_the_cpu():
    # benches/gpu/zero_offload.py --tiny, so that the script a GPU user runs cannot rot.
    # DeepSpeedCPUAdam is left out here: its JIT build alone takes minutes of CI.
    import json
    import subprocess
    import sys

    from conftest import ROOT

    out = subprocess.run(
        [sys.executable, str(ROOT / "benches/gpu/zero_offload.py"), "--tiny", "--json", "--optimizers", "recadam,official"],
        capture_output=True, text=True, timeout=600, env={**os.environ, "MASTER_PORT": _free_port()},
    )
    assert out.returncode == 0, out.stderr[-3000:]
    rows = [json.loads(line) for line in out.stdout.splitlines() if line.startswith("{")]
    assert [r["optimizer"] for r in rows] == ["recadam", "official"]
    for r in rows:
        assert r["tokens_per_s"] > 0 and r["optimizer_ms_per_step"] > 0 and math.isfinite(r["final_loss"])
