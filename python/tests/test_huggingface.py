"""Hugging Face: `Trainer(optimizers=(optimizer, scheduler))` fine-tunes a tiny BERT (random
weights from a config; nothing is downloaded) with recadam.RecAdam and the official GLUE
groups; a plain torch loop with transformers' linear schedule does the same."""

import os

import pytest
import torch

import recadam

transformers = pytest.importorskip("transformers")
os.environ.setdefault("HF_HUB_OFFLINE", "1")


def tiny_bert():
    torch.manual_seed(0)
    config = transformers.BertConfig(
        vocab_size=50, hidden_size=16, num_hidden_layers=2, num_attention_heads=2, intermediate_size=32,
        max_position_embeddings=32, num_labels=2,
    )
    return transformers.BertForSequenceClassification(config)


class Toy(torch.utils.data.Dataset):
    """Label 1 when token 7 occurs: learnable by a tiny model in a few dozen steps."""

    def __init__(self, n=64):
        gen = torch.Generator().manual_seed(1)
        self.ids = torch.randint(10, 50, (n, 12), generator=gen)
        self.labels = torch.randint(0, 2, (n,), generator=gen)
        self.ids[self.labels == 1, 3] = 7

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, i):
        return {"input_ids": self.ids[i], "attention_mask": torch.ones(12, dtype=torch.long), "labels": self.labels[i]}


def test_param_groups_are_the_official_four():
    model = tiny_bert()
    groups = recadam.param_groups(model, weight_decay=0.01)
    assert [(g["weight_decay"], g["anneal_w"]) for g in groups] == [(0.01, 1.0), (0.0, 1.0), (0.01, 0.0), (0.0, 0.0)]
    names = {id(p): n for n, p in model.named_parameters()}
    assert all(names[id(p)].startswith("bert.") for g in groups[:2] for p in g["params"])
    assert all(names[id(p)].startswith("classifier.") for g in groups[2:] for p in g["params"])
    assert all(("bias" in names[id(p)] or "LayerNorm.weight" in names[id(p)]) for p in groups[1]["params"])
    assert sum(len(g["params"]) for g in groups) == len(list(model.parameters()))


def test_trainer_fine_tunes_with_recadam(tmp_path):
    model = tiny_bert()
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    optimizer = recadam.RecAdam(recadam.param_groups(model, 0.01), lr=1e-3, pretrain_cof=100.0, anneal_k=0.2, anneal_t0=10, threads=2)
    scheduler = transformers.get_linear_schedule_with_warmup(optimizer, num_warmup_steps=3, num_training_steps=30)
    args = transformers.TrainingArguments(
        output_dir=str(tmp_path), max_steps=30, per_device_train_batch_size=16, logging_steps=5,
        save_steps=15, report_to=[], use_cpu=True, seed=0, disable_tqdm=True,
    )
    trainer = transformers.Trainer(model=model, args=args, train_dataset=Toy(), optimizers=(optimizer, scheduler))
    result = trainer.train()
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    assert result.global_step == 30 and len(losses) >= 4
    assert losses[-1] < losses[0], losses
    steps = {optimizer.state[p]["step"] for g in optimizer.param_groups for p in g["params"]}
    assert steps == {30}
    # The checkpoint Trainer wrote holds the optimizer in torch's format, and loads.
    saved = torch.load(tmp_path / "checkpoint-15" / "optimizer.pt", weights_only=False)
    fresh = recadam.RecAdam(recadam.param_groups(tiny_bert(), 0.01), lr=1e-3, pretrain_cof=100.0)
    fresh.load_state_dict(saved)
    assert {s["step"] for s in fresh.state.values()} == {15}
    # The encoder was pulled towards θ*, the head was not: the head moved further, relatively.
    moved = lambda n: ((model.state_dict()[n] - before[n]).norm() / (before[n].norm() + 1e-12)).item()
    assert moved("classifier.weight") > moved("bert.encoder.layer.0.attention.self.query.weight")
    d = optimizer.distance_to_pretrained()
    assert d["total"] > 0 and d["groups"][2] == 0.0


def test_plain_torch_loop_with_a_scheduler():
    model = tiny_bert()
    optimizer = recadam.RecAdam(recadam.param_groups(model, 0.01), lr=1e-3, pretrain_cof=100.0, anneal_k=0.2, anneal_t0=10)
    scheduler = transformers.get_linear_schedule_with_warmup(optimizer, num_warmup_steps=3, num_training_steps=40)
    loader = torch.utils.data.DataLoader(Toy(), batch_size=16, shuffle=True, generator=torch.Generator().manual_seed(0))
    losses, lrs = [], []
    for epoch in range(10):
        for batch in loader:
            loss = model(**batch).loss
            loss.backward()
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad()
            losses.append(loss.item())
            lrs.append(optimizer.param_groups[0]["lr"])
    assert len(losses) == 40
    assert sum(losses[-5:]) < sum(losses[:5])
    assert lrs[-1] == 0.0 and max(lrs) == pytest.approx(1e-3)
    assert 0.0 < optimizer.lambda_() < 1.0
