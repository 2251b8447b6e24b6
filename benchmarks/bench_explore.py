"""What the Explore page costs: the shipped model's features for a split, each 2-D layout, the
k-NN accuracies, one face's occlusion map, the what-if update, one face layer by layer, and
the training-dynamics recording per epoch.

    FER2013_DIR=... .venv/bin/python benchmarks/bench_explore.py [--model default] [--split PublicTest]

Without FER2013 (no FER2013_DIR) it runs on the demo set. Prints seconds per step (one run on this
machine: compare the ratios, not the absolute figures, across machines).
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def timed(label: str, fn, *args, **kwargs):
    t0 = time.perf_counter()
    out = fn(*args, **kwargs)
    print(f"{label:<52} {time.perf_counter() - t0:8.2f} s", flush=True)
    return out


def main() -> None:
    from fer_core.data.loading import load_dataset
    from fer_core.device import quiet_tensorflow
    from fer_core.inference import explain, explore
    from fer_core.inference.forward import predict_proba
    from fer_core.inference.engine import load_engine
    from fer_core.inference.loader import resolve_model
    from fer_core.training.dynamics import SAMPLE

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="default")
    ap.add_argument("--split", default="PublicTest")
    args = ap.parse_args()
    quiet_tensorflow()
    ref = resolve_model(args.model)
    model = load_engine(ref)
    source = os.environ.get("FER2013_DIR") or "demo"
    part = load_dataset(source).subset(args.split)
    print(f"model {ref.name}, {source} {args.split}: {len(part)} faces; {platform.machine()}, "
          f"{os.cpu_count()} CPU cores")
    timed("warm-up (first forward pass, 64 faces)", explore.features, model, part.images[:64])
    feats = timed(f"features of {len(part)} faces", explore.features, model, part.images)
    print(f"{'':<52} ({feats.shape[1]} features per face)")
    pca = timed("PCA layout", explore.layout, feats, "pca")
    tsne = timed("t-SNE layout", explore.layout, feats, "tsne")
    labels = part.labels.astype(int)
    full = timed("10-NN accuracy, all features", explore.knn_accuracy, feats, labels)
    print(f"{'':<52} = {full:.1%}; on the PCA map {explore.knn_accuracy(pca, labels):.1%}, on the t-SNE map "
          f"{explore.knn_accuracy(tsne, labels):.1%}")
    timed("the whole map as the page makes it (PCA)", explore.embed, model, part.images, part.labels, args.split, "pca")
    timed("the whole map as the page makes it (t-SNE)", explore.embed, model, part.images, part.labels, args.split,
          "tsne")
    face = part.images[0]
    timed("occlusion map of one face (100 covered copies)", explain.occlusion, model, face)
    timed("what-if: the face and its 9 edits, one batch", explore.what_if, model, face)
    timed("one face layer by layer", explore.layers, model, face)
    timed("everything the page shows of one face", explore.face_views, model, face)
    sample = part.images[:SAMPLE] if len(part) >= SAMPLE else part.images
    timed(f"dynamics recording per epoch ({len(sample)} faces)", predict_proba, model, sample)


if __name__ == "__main__":
    main()
