"""Calibrate the demo in one process: build a controlled target, train on every candidate,
and print the AUROC of the loss and of each parameter-change selection.

    python benchmarks/calibrate_demo.py --hidden 64 --layers 2 --budget 10 --lr 1e-4
"""

import argparse
import time

import pandas as pd
import torch

from paramdelta import corpus, data, deltas, features, metrics, models, target, train


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--arch", default="gpt-neox")
    parser.add_argument("--hidden", type=int, default=64)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--documents", type=int, default=1200)
    parser.add_argument("--candidates", type=int, default=200)
    parser.add_argument("--base-epochs", type=int, default=2)
    parser.add_argument("--target-epochs", type=int, default=3)
    parser.add_argument("--target-lr", type=float, default=1e-3)
    parser.add_argument("--budget", default="10")
    parser.add_argument("--lr", type=float, default=3e-5)
    parser.add_argument("--optimizer", default="adamw")
    parser.add_argument("--patience", type=int, default=5)
    parser.add_argument("--max-epochs", type=int, default=30)
    args = parser.parse_args()
    torch.set_num_threads(1)
    started = time.perf_counter()

    documents = corpus.generate_corpus(args.documents, 7)
    table, background = data.controlled_split(documents, args.candidates, 0.5, 0)
    tokenizer = target.train_tokenizer(background, 1024)
    config = models.tiny_config(
        args.arch,
        len(tokenizer),
        hidden_size=args.hidden,
        num_layers=args.layers,
        num_heads=4,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    model = models.build_model(config, 0)
    target.pretrain(
        model, tokenizer, background, epochs=args.base_epochs, lr=1e-3, batch_size=4, seed=0, max_length=256
    )
    members = table.loc[table.label == 1, "text"].tolist()
    target.pretrain(
        model, tokenizer, members, epochs=args.target_epochs, lr=args.target_lr, batch_size=4, seed=1, max_length=256
    )
    built = time.perf_counter() - started

    settings = train.Settings(lr=args.lr, optimizer=args.optimizer, patience=args.patience, max_epochs=args.max_epochs)
    engine = train.TorchEngine(model, settings, torch.device("cpu"))
    layers = models.model_layers(model)
    frame = deltas.layer_frame(layers)
    ks = [1, 5, 20]
    rows, first_losses, epochs = [], {}, []
    for text_id, text, label in table.itertuples(index=False):
        run = train.train_text(engine, text_id, train.chunk(tokenizer(text)["input_ids"], 256), args.budget, settings)
        first_losses[text_id] = run.losses[0]
        epochs.append(run.epochs_run)
        stats = deltas.layer_stats(layers, engine.base, run.after, ks)
        rows.append(deltas.table_rows(frame, stats, ks, text_id=text_id, label=label))
    trained = time.perf_counter() - started - built
    delta_table = pd.concat(rows, ignore_index=True)
    scores = features.score_table(delta_table, features.SELECTIONS, ks)
    summary = metrics.summarise(scores, ["selection", "k"], n_boot=200)
    labels = table.set_index("text_id")["label"]
    loss_auroc = metrics.auroc(labels, -pd.Series(first_losses)[labels.index])
    print(
        f"{vars(args)}\nbuild {built:.0f} s, per-text training {trained:.0f} s "
        f"({trained / len(table) * 1000:.0f} ms a text, mean epochs {sum(epochs) / len(epochs):.1f}); loss AUROC {loss_auroc:.2f}"
    )
    print(summary[["selection", "k", "auroc", "auroc_lo", "auroc_hi"]].round(2).to_string(index=False))


if __name__ == "__main__":
    main()
