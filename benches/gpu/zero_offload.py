"""A BERT fine-tune under DeepSpeed ZeRO-2 with the optimizer offloaded to the host CPU, with
three CPU optimizers in turn: recadam.RecAdam, DeepSpeedCPUAdam (AdamW, DeepSpeed's own) and the
official RecAdam algorithm (as RecAdam.py writes it, per tensor in torch). Prints tokens/s and the
optimizer step time (all of ``optimizer.step()`` DeepSpeed makes per step, one call per param
group) for each.

    pip install deepspeed transformers ./python
    python benches/gpu/zero_offload.py                # a GPU host: BERT-base, random init, bf16
    python benches/gpu/zero_offload.py --tiny         # anywhere: a tiny BERT on DeepSpeed's CPU accelerator

BERT-base is built from its config with random weights (nothing is downloaded); the optimizers
see the same data. ``--json`` prints one JSON object per optimizer. Not a test: CI runs
``--tiny`` so the script cannot rot.
"""
import argparse
import json
import math
import os
import pathlib
import socket
import sys
import time

import torch

if not torch.cuda.is_available():
    os.environ.setdefault("DS_ACCELERATOR", "cpu")
for key, value in (("MASTER_ADDR", "127.0.0.1"), ("RANK", "0"), ("LOCAL_RANK", "0"), ("WORLD_SIZE", "1")):
    os.environ.setdefault(key, value)
if "MASTER_PORT" not in os.environ:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        os.environ["MASTER_PORT"] = str(s.getsockname()[1])

import deepspeed  # noqa: E402
import transformers  # noqa: E402

import recadam  # noqa: E402

# The official algorithm, written once for the benchmarks.
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "python"))
from optimizer_step import official_step  # noqa: E402


class OfficialRecAdam(torch.optim.Optimizer):
    """The official RecAdam.py's update as a torch optimizer: ``official_step`` of
    benches/python/optimizer_step.py, per tensor in torch ops. θ* is each (flat) parameter's
    value at its first step, since DeepSpeed hands the optimizer flat partitions that no list of
    pretrained tensors matches."""

    def __init__(self, params, lr, anneal_k, anneal_t0, anneal_w=1.0, pretrain_cof=5000.0, weight_decay=0.0, eps=1e-6):
        defaults = dict(lr=lr, betas=(0.9, 0.999), eps=eps, weight_decay=weight_decay, anneal_k=anneal_k,
                        anneal_t0=anneal_t0, anneal_w=anneal_w, pretrain_cof=pretrain_cof)
        super().__init__(params, defaults)

    @torch.no_grad()
    def step(self, closure=None):
        for group in self.param_groups:
            if "pretrain_params" not in group:
                group["pretrain_params"] = [p.detach().clone() for p in group["params"]]
        official_step(self.param_groups, self.state)


def model_config(tiny):
    if tiny:
        return transformers.BertConfig(vocab_size=100, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                                       intermediate_size=64, max_position_embeddings=64, num_labels=2)
    return transformers.BertConfig(num_labels=2)  # BERT-base


def make_optimizer(name, model, args):
    hyper = dict(lr=args.lr, anneal_k=0.1, anneal_t0=250)
    groups = recadam.param_groups(model, 0.01)
    if name == "recadam":
        return recadam.RecAdam(groups, **hyper)
    if name == "official":
        return OfficialRecAdam([{k: v for k, v in g.items()} for g in groups], **hyper)
    from deepspeed.ops.adam import DeepSpeedCPUAdam

    return DeepSpeedCPUAdam([dict(params=g["params"], weight_decay=g["weight_decay"]) for g in groups], lr=args.lr, adamw_mode=True)


def run(name, args):
    torch.manual_seed(0)
    model = transformers.BertForSequenceClassification(model_config(args.tiny))
    optimizer = make_optimizer(name, model, args)
    # The optimizer's own time: DeepSpeed calls step() once per param group.
    timed = {"seconds": 0.0}
    inner_step = optimizer.step

    def step(*a, **k):
        start = time.perf_counter()
        out = inner_step(*a, **k)
        timed["seconds"] += time.perf_counter() - start
        return out

    optimizer.step = step
    config = {"train_micro_batch_size_per_gpu": args.batch, "gradient_accumulation_steps": 1}
    if torch.cuda.is_available():
        config["bf16"] = {"enabled": True}
    engine, _, _, _ = deepspeed.initialize(model=model, optimizer=optimizer, config=recadam.deepspeed_config(config))
    vocab = model.config.vocab_size
    gen = torch.Generator().manual_seed(1)
    data = [(torch.randint(5, vocab, (args.batch, args.seq), generator=gen), torch.randint(0, 2, (args.batch,), generator=gen))
            for _ in range(args.steps + args.warmup)]
    device = engine.device
    loss = None
    for i, (ids, labels) in enumerate(data):
        if i == args.warmup:
            if torch.cuda.is_available():
                torch.cuda.synchronize()
            start, timed["seconds"] = time.perf_counter(), 0.0
        loss = engine(input_ids=ids.to(device), labels=labels.to(device)).loss
        engine.backward(loss)
        engine.step()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    result = dict(optimizer=name, steps=args.steps, batch=args.batch, seq=args.seq,
                  params=sum(p.numel() for p in model.parameters()),
                  tokens_per_s=args.steps * args.batch * args.seq / seconds,
                  optimizer_ms_per_step=timed["seconds"] * 1e3 / args.steps,
                  step_ms=seconds * 1e3 / args.steps, final_loss=loss.item(),
                  device=torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu")
    if not math.isfinite(result["final_loss"]):
        raise SystemExit(f"{name}: the loss is not finite")
    del engine, optimizer, model
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    return result


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tiny", action="store_true", help="a tiny BERT on the CPU (what CI runs)")
    ap.add_argument("--steps", type=int, default=None, help="timed steps (default 20; 3 with --tiny)")
    ap.add_argument("--warmup", type=int, default=None, help="untimed steps first (default 3; 1 with --tiny)")
    ap.add_argument("--batch", type=int, default=None, help="sentences per step (default 16; 4 with --tiny)")
    ap.add_argument("--seq", type=int, default=None, help="tokens per sentence (default 128; 16 with --tiny)")
    ap.add_argument("--lr", type=float, default=2e-5)
    ap.add_argument("--optimizers", default="recadam,deepspeed_cpu_adam,official")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    for key, full, tiny in (("steps", 20, 3), ("warmup", 3, 1), ("batch", 16, 4), ("seq", 128, 16)):
        if getattr(args, key) is None:
            setattr(args, key, tiny if args.tiny else full)
    names = args.optimizers.split(",")
    for name in names:
        if name not in ("recadam", "deepspeed_cpu_adam", "official"):
            raise SystemExit(f"unknown optimizer {name!r}: expected recadam, deepspeed_cpu_adam or official")
    for name in names:
        r = run(name, args)
        if args.json:
            print(json.dumps(r), flush=True)
        else:
            print(f"{name:>20}: {r['tokens_per_s']:9.1f} tokens/s, step {r['step_ms']:8.1f} ms, "
                  f"optimizer {r['optimizer_ms_per_step']:8.2f} ms/step ({r['params']:,} parameters, {r['device']})", flush=True)


if __name__ == "__main__":
    main()
