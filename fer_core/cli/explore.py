"""``explore embed|layers|dynamics``: inside the network, as the Explore page shows it."""

from __future__ import annotations

import argparse

from fer_core.cli.output import add_json_option, emit
from fer_core.config import load_settings
from fer_core.data.loading import load_dataset
from fer_core.errors import ConfigError, FerError
from fer_core.inference import explore
from fer_core.inference.engine import load_engine
from fer_core.inference.loader import resolve_model, speed_model
from fer_core.inference.photo import analyse
from fer_core.runs import rundir
from fer_core.training.dynamics import read_dynamics


def embed(args: argparse.Namespace) -> int:
    ref = resolve_model(args.model or speed_model())
    ds = load_dataset(args.data or load_settings().active_source(), merge=ref.merge)
    part = ds.subset(args.split)
    if len(part) < 3:
        raise ConfigError(f"{ds.source}: the {args.split} split has {len(part)} face(s); a map needs at least 3.",
                          field="split")
    result = explore.embed(load_engine(ref), part.images, part.labels, args.split, args.method, args.sample)
    doc = {"model": ref.name, **result.to_json(ref.classes)}
    emit(args, doc, f"model: {ref.name}  data: {ds.source}  split: {args.split}  faces: {len(result.index)}  "
                    f"layout: {args.method}\n10-NN accuracy of the classes: {result.knn_full:.1%} in the model's "
                    f"features, {result.knn_2d:.1%} on the 2-D map")
    return 0


def layers(args: argparse.Namespace) -> int:
    ref = resolve_model(args.model or speed_model())
    model = load_engine(ref)
    (res,) = analyse([(args.image, args.image)], model, ref.classes, detect="never" if args.no_detect else "auto")
    if res.error:
        raise FerError(res.error)
    if not res.faces:
        raise FerError(f"{args.image}: no face found (try --no-detect if the image is a face crop).")
    doc = explore.layers(model, res.faces[0].crop)

    def text() -> None:
        print(f"model: {ref.name} ({doc['model']})  face 1 of {len(res.faces)}: {res.faces[0].label}")
        for layer in doc["layers"]:
            top = ", ".join(f"#{c['channel']} {c['mean']:.3f}" for c in layer["top_channels"][:3])
            print(f"  {layer['name']:<22} {'x'.join(map(str, layer['shape'])):>12}  most active: {top}")
        print(f"  first convolution: {len(doc['first_filters'])} filters; scores -> probabilities: " + ", ".join(
            f"{c} {p:.0%}" for c, p in zip(ref.classes, doc["probabilities"])))

    emit(args, doc, text)
    return 0


def dynamics(args: argparse.Namespace) -> int:
    if not rundir.is_run(args.run):
        raise ConfigError(f"{args.run}: not a run directory (no config.json).", field="run")
    found = read_dynamics(args.run)
    if found is None:
        raise FerError(f"{args.run}: no training dynamics recorded (runs trained before FER Studio recorded them "
                       "have none; train or resume it to record them).")
    classes = rundir.read_classes(args.run)
    doc = found.cartography(tuple(classes) if classes else None)
    r = doc["regions"]
    emit(args, doc, f"{args.run}: {len(doc['faces'])} Training faces followed over {doc['epochs']} epoch(s): "
                    f"{r['easy']} easy to learn, {r['ambiguous']} ambiguous, {r['hard']} hard to learn")
    return 0


def add_commands(sub) -> None:
    group = sub.add_parser("explore", help="inside the network: embedding map, layers of one face, how each "
                           "training face was learned").add_subparsers(dest="explore_command", required=True)
    em = group.add_parser("embed", help="a split's faces laid out in 2-D by the model's features, with the "
                          "10-NN accuracy of the classes")
    em.add_argument("--model", help="a .keras file, a run directory or name, 'default' or 'fast' "
                                     "(default: the shipped fast model when there is one, else the app's model)")
    em.add_argument("--data", help="data source (default: the app's active data set)")
    em.add_argument("--split", default="PublicTest", help="Training, PublicTest or PrivateTest (default PublicTest)")
    em.add_argument("--method", default="pca", choices=explore.METHODS, help="layout: pca (at once) or tsne")
    em.add_argument("--sample", type=int, help="a fixed random sample of this many faces (default: all)")
    add_json_option(em)
    em.set_defaults(func=embed)

    ly = group.add_parser("layers", help="one face through the network: each block's most active channels, the "
                          "first layer's filters, scores and probabilities")
    ly.add_argument("image", help="a photo (its first face) or a face crop")
    ly.add_argument("--model", help="a .keras file, a run directory or name, 'default' or 'fast' "
                                     "(default: the shipped fast model when there is one, else the app's model)")
    ly.add_argument("--no-detect", action="store_true", help="take the whole image as the face")
    add_json_option(ly)
    ly.set_defaults(func=layers)

    dy = group.add_parser("dynamics", help="how a run learned each followed Training face: confidence, "
                          "variability, correctness and the easy / ambiguous / hard regions")
    dy.add_argument("run", help="a run directory")
    add_json_option(dy)
    dy.set_defaults(func=dynamics)
