"""``quiz new|results|close|list|delete``: a class round run from the command line, its results kept."""

from __future__ import annotations

import argparse
import time

from fer_core.cli.output import add_json_option, emit
from fer_core.config import SPLITS, load_settings
from fer_core.data.loading import load_dataset
from fer_core.inference.engine import load_engine
from fer_core.inference.forward import DEFAULT_TTA, TTA_MODES
from fer_core.inference.loader import resolve_model
from fer_core.quiz.rounds import DEFAULT_DRAW, DEFAULT_FACES, DEFAULT_SPLIT, DRAWS, check_settings, make_round
from fer_core.quiz.store import QuizStore, check_hours


def new(args: argparse.Namespace) -> int:
    check_settings(args.faces, args.draw, args.split, args.timer, args.seed)  # before the data or the model loads
    check_hours(args.hours)
    ref = resolve_model(args.model)
    source = args.data or load_settings().active_source()
    rnd = make_round(load_dataset(source, merge=ref.merge), args.split, args.faces, args.seed, load_engine(ref), ref,
                     draw=args.draw, tta=args.tta, timer=args.timer, source=source)
    with QuizStore() as store:
        rnd = store.open_round(rnd, hours=args.hours, nicknames=args.nicknames)
    doc = {"code": rnd.code, "split": rnd.split, "source": rnd.source, "model": rnd.model_name, "tta": rnd.tta,
           "draw": rnd.draw, "seed": rnd.seed, "expires": rnd.expires,
           "faces": [{"face": k, "index": i, "label": rnd.classes[y]} for k, (i, y) in enumerate(zip(rnd.index, rnd.labels))]}
    emit(args, doc, f"round {rnd.code} is open: {rnd.size} {rnd.split} faces of {rnd.source} ({rnd.draw}), "
                    f"the model {rnd.model_name} answers them. Students type the code {rnd.code} on the Quiz page.")
    return 0


def results(args: argparse.Namespace) -> int:
    with QuizStore() as store:
        doc = store.results(args.code)

    def text() -> None:
        acc = doc["class_accuracy"]
        print(f"round {doc['code']} ({'open' if doc['open'] else 'closed'}): {doc['sessions']} sessions, "
              f"{doc['answers']} answers")
        print(f"class {'-' if acc is None else f'{acc:.1%}'}  model {doc['model']} {doc['model_accuracy']:.1%}  "
              f"people in FER2013's paper {doc['human_reference']:.0%}")
        for f in sorted(doc["faces"], key=lambda f: (f["agreement"] is None, f["agreement"] or 0))[:5]:
            shown = "-" if f["agreement"] is None else f"{f['agreement']:.0%}"
            print(f"  face {f['face'] + 1} (index {f['index']}, labelled {f['label']}): {shown} right, "
                  f"model said {f['model']}")

    emit(args, doc, text)
    return 0


def close(args: argparse.Namespace) -> int:
    with QuizStore() as store:
        rnd = store.close(args.code)
    emit(args, {"code": rnd.code, "closed": rnd.closed}, f"round {rnd.code} is closed; its results stay "
                                                         f"(python -m fer_core quiz results {rnd.code}).")
    return 0


def listing(args: argparse.Namespace) -> int:
    with QuizStore() as store:
        rows = [{"code": r.code, "split": r.split, "faces": r.size, "model": r.model_name, "created": r.created,
                 "open": r.is_open(time.time())} for r in store.rounds()]
    emit(args, rows, "\n".join(f"{r['code']}  {'open  ' if r['open'] else 'closed'}  {r['faces']} {r['split']} faces  "
                               f"model {r['model']}" for r in rows) or "no rounds yet (python -m fer_core quiz new)")
    return 0


def delete(args: argparse.Namespace) -> int:
    with QuizStore() as store:
        gone = store.delete(args.code)
    emit(args, {"code": args.code.upper(), "answers_deleted": gone}, f"round {args.code.upper()} and its {gone} "
                                                                      "answers are deleted.")
    return 0


def add_commands(sub) -> None:
    quiz = sub.add_parser("quiz", help="a quiz round for a class: people against the network")
    qs = quiz.add_subparsers(dest="quiz_command", required=True)
    nw = qs.add_parser("new", help="draw a round, have the model answer it and open it to the class (prints its code)")
    nw.add_argument("--data", help="data source (default: the app's active data set)")
    nw.add_argument("--split", default=DEFAULT_SPLIT, choices=SPLITS, help=f"default {DEFAULT_SPLIT}")
    nw.add_argument("--faces", type=int, default=DEFAULT_FACES, help=f"faces in the round (default {DEFAULT_FACES})")
    nw.add_argument("--seed", type=int, default=1, help="which faces (the same seed draws the same faces)")
    nw.add_argument("--draw", default=DEFAULT_DRAW, choices=DRAWS,
                    help="balanced: each class in turn; natural: the split's own class balance")
    nw.add_argument("--model", help="the model that answers (default: the app's model)")
    nw.add_argument("--tta", default=DEFAULT_TTA, choices=TTA_MODES, help=f"the model's test-time augmentation "
                                                                          f"(default {DEFAULT_TTA}, as in evaluate)")
    nw.add_argument("--timer", type=int, default=0, help="seconds per face on the students' page (0: none)")
    nw.add_argument("--hours", type=float, help="the round closes by itself after this long (default FER_QUIZ_HOURS, 3)")
    nw.add_argument("--nicknames", action="store_true", help="let students give a nickname, shown on the board")
    add_json_option(nw)
    nw.set_defaults(func=new)
    for name, func, what in (("results", results, "the board of a round: the class against the model"),
                             ("close", close, "close a round: it takes no more answers, its results stay"),
                             ("delete", delete, "delete a round and its answers")):
        p = qs.add_parser(name, help=what)
        p.add_argument("code", help="the round's code")
        add_json_option(p)
        p.set_defaults(func=func)
    ls = qs.add_parser("list", help="the rounds in the quiz store, newest first")
    add_json_option(ls)
    ls.set_defaults(func=listing)
