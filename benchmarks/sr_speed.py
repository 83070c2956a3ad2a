"""Feed-forward (srresnet, srgan) speed: faces/s for one network pass at several batch sizes, 16 -> 128 px by default.

Uses the registry's SR model for the scale when installed (or --model FILE), else a random network of the
default size: speed does not depend on the weights. Prints a markdown table; run it once per device.

    python benchmarks/sr_speed.py [--device cpu|cuda] [--model FILE] [--scale 8] [--batches 1,16,64,256] [--seconds 3]
"""

from __future__ import annotations

import argparse
import time

import torch

from pulse.devices import select_device
from pulse.errors import PulseError
from pulse.models.srresnet import LoadedSRModel, SRResNet, SRResNetConfig
from pulse.weights.resolve import open_sr_model


def model_for(spec: str | None, scale: int, device) -> tuple[LoadedSRModel, str]:
    try:
        model = open_sr_model(spec, scale, device, method=None)
        return model, model.source
    except PulseError:
        if spec:
            raise
        return LoadedSRModel(SRResNet(SRResNetConfig(scale=scale)).eval(), {}, "random").to(device), "random"


def faces_per_second(model: LoadedSRModel, batch: int, lr_size: int, device, seconds: float) -> float:
    """Timed for at least ``seconds``, after one warm-up pass."""
    lr = torch.rand(batch, 3, lr_size, lr_size, device=device)
    model.super_resolve(lr)
    done, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        model.super_resolve(lr).cpu()
        done += batch
    return done / (time.perf_counter() - started)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--model", default=None, help="SR model file or registry name [default: the scale's]")
    parser.add_argument("--scale", type=int, default=8)
    parser.add_argument("--lr-size", type=int, default=16)
    parser.add_argument("--batches", default="1,16,64,256")
    parser.add_argument("--seconds", type=float, default=3.0, help="time each batch size at least this long")
    args = parser.parse_args()
    device = select_device(args.device)
    model, name = model_for(args.model, args.scale, device)
    params = sum(p.numel() for p in model.model.parameters()) / 1e6
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    print(f"SR model: {name}, {params:.2f} M parameters, x{args.scale} ({args.lr_size} -> "
          f"{args.lr_size * args.scale} px); device: {where}\n")
    print("| batch | faces/s | ms per face |\n|---:|---:|---:|")
    for batch in (int(b) for b in args.batches.split(",")):
        rate = faces_per_second(model, batch, args.lr_size, device, args.seconds)
        print(f"| {batch} | {rate:.0f} | {1000 / rate:.2f} |", flush=True)


if __name__ == "__main__":
    main()
