"""Compare search settings for a generator on training faces: how the settings a generator file recommends
(`pulse train export --search-default`) were chosen, without tuning on the held-out evaluation faces.

Takes N faces spread over the source prefixes of one training shard, makes their LR versions with `pulse eval`'s
own code (``evaluate.make_face``), and for each setting prints the share within eps, mean LR-PSNR, LPIPS to the
real face, dlib's distance to the real face and same-person share, and the share dlib detects as a face (x8, 1
sample, seed i for face i). ``--seeds K`` repeats each setting K times with other seeds (face i's seed shifted by
N each time) and prints the totals: detection and same-person differences of a few faces are seed noise until
they hold over seeds. A setting is FIELD=VALUE[,FIELD=VALUE]
over SearchOptions fields; "reference" is SearchOptions() (PULSE's settings plus pulse's eps margin); fields
not given keep those values.

    python benchmarks/search_settings.py reference "loss=100*L2+0.02*GEOCROSS,trainable_noise_layers=7"
        [--generator pulse-faces-128] [--shard ../shared/data/faces128/train-03.zip] [--n 128] [--seeds 3]

With ``--encoder FILE``, a setting with ``init=encoder`` starts each search from that encoder's latent (the encoder's
own time included in s / face): how an encoder's recommended settings (`pulse train-encoder export
--search-default`) are chosen.
"""

from __future__ import annotations

import argparse
import io
import statistics
import time
import zipfile
from pathlib import Path

import torch
from PIL import Image

from pulse.evaluation.evaluate import Face, make_face
from pulse.evaluation.metrics import SAME_PERSON_DISTANCE, detect_face, distance_to, face_embedding, lpips
from pulse.imageio import pil_to_tensor
from pulse.models.encoder import load_encoder
from pulse.search import SearchOptions, parse_search_defaults, search
from pulse.weights.registry import DEFAULT_GENERATOR
from pulse.weights.resolve import open_generator

SHARD = Path(__file__).resolve().parents[2] / "shared" / "data" / "faces128" / "train-03.zip"
BATCH = 8


def spread_faces(shard: Path, n: int, resolution: int, scale: int) -> list[Face]:
    """n faces taken in turn from each source prefix (aaf_, celeba_, ...), every 37th name of each."""
    with zipfile.ZipFile(shard) as z:
        by_source: dict[str, list[str]] = {}
        for name in sorted(z.namelist()):
            by_source.setdefault(name.split("_")[0], []).append(name)
        picked, i = [], 0
        while len(picked) < n and any(i * 37 < len(v) for v in by_source.values()):
            picked += [names[i * 37] for _, names in sorted(by_source.items()) if i * 37 < len(names)]
            i += 1
        return [make_face(name, pil_to_tensor(Image.open(io.BytesIO(z.read(name))).convert("RGB")), resolution, scale)
                for name in picked[:n]]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("settings", nargs="+", help='"reference" or FIELD=VALUE[,FIELD=VALUE...]')
    parser.add_argument("--generator", default=DEFAULT_GENERATOR)
    parser.add_argument("--shard", type=Path, default=SHARD)
    parser.add_argument("--n", type=int, default=128)
    parser.add_argument("--scale", type=int, default=8)
    parser.add_argument("--encoder", type=Path, help="an encoder file, for settings with init=encoder")
    parser.add_argument("--seeds", type=int, default=1, help="repetitions of each setting, with other seeds")
    args = parser.parse_args()
    model = open_generator(args.generator)
    faces = spread_faces(args.shard, args.n, model.generator.resolution, args.scale)
    hr, lr = torch.stack([f.hr for f in faces]), torch.stack([f.lr for f in faces])
    sources = [f.name.split("_")[0] for f in faces]
    print(f"{args.generator}: {len(faces)} faces of {args.shard.name}, {lr.shape[-1]} -> "
          f"{model.generator.resolution} px, 1 sample each, {args.seeds} seed(s) a face")
    # face k of the results is face k % N of the shard, over every seed
    truth_hr = list(hr) * args.seeds
    truth_embeddings = [face_embedding(h) for h in hr] * args.seeds
    every_source = sources * args.seeds
    print("| setting | within eps | LR-PSNR (dB) | LPIPS | dlib distance | same person | detected as face "
          "| within eps by source | s / face |")
    print("|---|---:|---:|---:|---:|---:|---:|---|---:|")
    encoder = load_encoder(args.encoder) if args.encoder else None
    for setting in args.settings:
        items = [] if setting == "reference" else setting.split(",")
        init = "encoder" if "init=encoder" in items else "random"
        if init == "encoder" and encoder is None:
            raise SystemExit(f"{setting}: init=encoder needs --encoder FILE")
        options = SearchOptions(**parse_search_defaults(i for i in items if not i.startswith("init=")), init=init)
        started, results = time.perf_counter(), []
        for repetition in range(args.seeds):
            for i in range(0, len(faces), BATCH):
                batch = lr[i : i + BATCH]
                start = encoder.encode(batch) if init == "encoder" else None
                seeds = [repetition * len(faces) + j for j in range(i, min(i + BATCH, len(faces)))]
                results += search(model, batch, seeds, options, start=start)
        seconds = (time.perf_counter() - started) / len(results)
        distances = [distance_to(r.image, e) for r, e in zip(results, truth_embeddings)]
        ok = sum(r.success for r in results)
        by_source = " ".join(f"{s} {sum(r.success for r, t in zip(results, every_source) if t == s)}/"
                             f"{every_source.count(s)}" for s in sorted(set(sources)))
        print(f"| {setting} | {ok}/{len(results)} ({100 * ok / len(results):.0f} %) | "
              f"{statistics.mean(r.lr_psnr for r in results):.2f} | "
              f"{statistics.mean(lpips(r.image, h) for r, h in zip(results, truth_hr)):.3f} | "
              f"{statistics.mean(distances):.3f} | "
              f"{sum(d < SAME_PERSON_DISTANCE for d in distances)}/{len(results)} | "
              f"{sum(detect_face(r.image) for r in results)}/{len(results)} | {by_source} | {seconds:.2f} |",
              flush=True)


if __name__ == "__main__":
    main()
