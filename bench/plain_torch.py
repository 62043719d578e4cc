"""A plain PyTorch CPU training loop of the same network (conv-relu-pool x2, flatten, dropout 0.5, linear 10).

Padding 1 on the 3x3 convolutions ('same', as dltrain), Adam 1e-3, batch 128, a fresh permutation per epoch,
batches gathered from the uint8 tensor and scaled per batch. PyTorch's default threads (one per core) and
default initialisation. Logs each epoch's wall and CPU time to a JSON file (``common.RunLog``). bench/run.py
starts it with OMP_WAIT_POLICY=PASSIVE (see TORCH_ENV there: OpenMP's busy-waiting on a shared machine).

    python bench/plain_torch.py --data DATA.npz --epochs 3 --out log.json
"""

from __future__ import annotations

import argparse
import platform
import time
from pathlib import Path

import torch
from common import EpochRecord, RunLog, cpu_seconds, load_npz
from torch import nn


def build_model() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(1, 32, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Dropout(0.5),
        nn.Linear(64 * 7 * 7, 10),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True, help="npz with x_train, y_train")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--device", default="cpu", help="cpu, or cuda (bench/gpu.sh)")
    parser.add_argument(
        "--amp", action="store_true", help="automatic mixed precision (float16 + loss scaling)"
    )
    args = parser.parse_args()

    torch.manual_seed(args.seed)
    device = torch.device(args.device)
    data = load_npz(args.data)
    x = torch.from_numpy(data["x_train"]).to(device)  # uint8 (N, 28, 28)
    y = torch.from_numpy(data["y_train"].astype("int64")).to(device)
    model = build_model().to(device)
    amp_dtype = torch.float16 if device.type == "cuda" else torch.bfloat16
    scaler = torch.amp.GradScaler(device.type, enabled=args.amp and device.type == "cuda")
    optimizer = torch.optim.Adam(model.parameters(), lr=args.lr)
    loss_fn = nn.CrossEntropyLoss()
    params = sum(p.numel() for p in model.parameters())
    versions = {"python": platform.python_version(), "torch": torch.__version__}
    log = RunLog("torch", params, len(y), args.batch_size, versions, cpu_seconds())
    for epoch in range(1, args.epochs + 1):
        t0, c0 = time.monotonic(), cpu_seconds()
        model.train()
        order = torch.randperm(len(y), device=device)
        loss_sum, correct = 0.0, 0
        for start in range(0, len(y), args.batch_size):
            idx = order[start : start + args.batch_size]
            xb = x[idx].unsqueeze(1).float().div_(255.0)
            yb = y[idx]
            optimizer.zero_grad(set_to_none=True)
            with torch.autocast(device.type, dtype=amp_dtype, enabled=args.amp):
                logits = model(xb)
                loss = loss_fn(logits, yb)
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
            loss_sum += loss.item() * len(yb)
            correct += int((logits.argmax(1) == yb).sum())
        record = EpochRecord(
            epoch, time.monotonic() - t0, cpu_seconds() - c0, loss_sum / len(y), correct / len(y)
        )
        log.epochs.append(record)
        print(f"epoch {epoch}: {record}", flush=True)
    log.write(args.out)


if __name__ == "__main__":
    main()
