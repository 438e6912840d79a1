"""The thesis-style training of one text (the baseline of P2), shared by bench_training.py (CPU)
and bench_gpu.py (a GPU): a Hugging Face ``Trainer`` started anew for the text, batch size 1, the
project's optimizer settings and schedule, a checkpoint (model and optimizer) saved after every
epoch as the Trainer does by default, then the final parameters written as one .npy file per
tensor, as the thesis's appendix A.2 describes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from paramdelta import train


def thesis_optim(settings: train.Settings) -> str:
    """The Trainer's name for the optimizer the project's settings ask for."""
    if settings.optimizer == "sgd":
        return "sgd"
    return "adamw_torch_fused" if settings.fused else "adamw_torch"


def thesis_text(
    model_dir, text: str, n_epochs: int, settings: train.Settings, max_length: int, output: Path, *, cpu: bool = True
) -> None:
    """One text the thesis's way: a Trainer started anew, a checkpoint per epoch, then .npy files.
    `cpu`: train on the CPU, else on the accelerator the Trainer finds (a GPU)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer, Trainer, TrainingArguments
    from transformers.trainer_callback import PrinterCallback, ProgressCallback

    tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
    model = AutoModelForCausalLM.from_pretrained(str(model_dir), dtype=torch.float32)
    chunks = train.chunk(tokenizer(text)["input_ids"], max_length)
    dataset = [{"input_ids": piece[0], "labels": piece[0]} for piece in chunks]
    arguments = TrainingArguments(
        output_dir=str(output / "checkpoints"),
        per_device_train_batch_size=1,
        num_train_epochs=n_epochs,
        learning_rate=settings.lr,
        weight_decay=settings.weight_decay,
        adam_beta1=settings.betas[0],
        adam_beta2=settings.betas[1],
        adam_epsilon=settings.eps,
        max_grad_norm=settings.grad_clip,
        lr_scheduler_type="cosine" if settings.schedule == "cosine" else "constant",
        warmup_steps=0,
        optim=thesis_optim(settings),
        save_strategy="epoch",
        report_to=[],
        use_cpu=cpu,
        seed=settings.seed,
        bf16=settings.precision == "bf16",
        dataloader_pin_memory=False,
        disable_tqdm=True,
    )
    trainer = Trainer(model=model, args=arguments, train_dataset=dataset)
    trainer.remove_callback(PrinterCallback)
    trainer.remove_callback(ProgressCallback)
    trainer.train()
    final = output / "final"
    final.mkdir(parents=True)
    for name, tensor in model.state_dict().items():
        np.save(final / f"{name}.npy", tensor.detach().to("cpu", torch.float32).numpy())
