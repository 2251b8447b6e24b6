"""A quiz round: which faces, what the model said of them, and how people did against it.

A round is a fixed list of faces of one split, drawn by seed, with the data set's label of each
and the model's answer to each. The model answers once, when the round is made, through
:func:`fer_core.inference.evaluate.evaluate` on exactly those faces: its score on a round is what
``evaluate`` says of them. A round keeps a digest of its faces' pixels, so a server whose data
set differs (another copy, other labels) refuses to show it instead of showing other faces.

People's answers are ``(session, face, choice)``: ``face`` is the face's position in the round
(0..size-1), ``choice`` a class number, or None for a face left unanswered (its timer ran out);
a face left counts as wrong and is in no confusion matrix.
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass, field
from typing import Iterable

import numpy as np

from fer_core.config import SPLITS, env_number
from fer_core.data.dataset import Dataset
from fer_core.errors import ConfigError, QuizError
from fer_core.inference.evaluate import evaluate
from fer_core.inference.forward import DEFAULT_TTA
from fer_core.inference.loader import ModelRef
from fer_core.training.dynamics import read_dynamics

#: People label FER2013 right about 65% of the time (Goodfellow et al., 2013: 65 ± 5%).
HUMAN_ACCURACY = 0.65
HUMAN_SOURCE = "people in FER2013's paper (Goodfellow et al., 2013: 65 ± 5%)"
#: How faces are drawn: ``balanced``, the same number of each class (as near as the round's size
#: allows), so every row of a confusion matrix has faces; ``natural``, the split's own class balance.
DRAWS = ("balanced", "natural")
DRAW_TEXT = {"balanced": "the same number of faces of each class, as near as the round's size allows",
             "natural": "drawn at random, so the split's own class balance shows (FER2013: few disgust faces)"}
DEFAULT_FACES, DEFAULT_SPLIT, DEFAULT_DRAW = 20, "PrivateTest", "balanced"
MAX_TIMER_S = 120
NICKNAME_CHARS = 20


def max_faces() -> int:
    """The most faces one round may have (``FER_QUIZ_MAX_FACES``, default 100): it bounds the
    answers one session gives a round, one per face."""
    return env_number("FER_QUIZ_MAX_FACES")


@dataclass
class Round:
    """One round's faces and the model's answers (see the module).

    ``index``: the faces' positions in the split; ``labels``: the data set's classes of them;
    ``answers``: the model's. ``timer``: seconds per face, 0 for none. ``code``, ``created``,
    ``expires``, ``closed`` and ``nicknames`` are set when the round is opened to a class.
    """

    source: str
    merge: str
    split: str
    seed: int
    draw: str
    classes: tuple[str, ...]
    index: list[int]
    labels: list[int]
    model: str
    model_name: str
    tta: str
    answers: list[int]
    digest: str
    timer: int = 0
    code: str = ""
    nicknames: bool = False
    created: float = 0.0
    expires: float = 0.0
    closed: float | None = None
    regions: dict[int, str] = field(default_factory=dict)

    @property
    def size(self) -> int:
        return len(self.index)

    def to_json(self) -> dict:
        return {**asdict(self), "classes": list(self.classes), "regions": {str(k): v for k, v in self.regions.items()}}

    @classmethod
    def from_json(cls, doc: dict) -> "Round":
        return cls(**{**doc, "classes": tuple(doc["classes"]),
                      "regions": {int(k): v for k, v in (doc.get("regions") or {}).items()}})

    def is_open(self, now: float) -> bool:
        return self.closed is None and now < self.expires

    def faces(self, dataset: Dataset) -> np.ndarray:
        """The round's face images from ``dataset`` (the one it was drawn from, loaded here).

        Raises:
            QuizError: these are not the round's faces (another data set or labels).
        """
        part = dataset.subset(self.split)
        index = np.asarray(self.index, np.int64)
        if len(part) <= int(index.max(initial=-1)) or faces_digest(part.images[index], part.labels[index]) != self.digest:
            raise QuizError(f"The data set {self.source} here is not the one this round was drawn from (other "
                            "faces or labels), so its faces cannot be shown: open this page on the lecturer's "
                            "server's data folder, or ask for a round on this data set.")
        return part.images[index]


def faces_digest(images: np.ndarray, labels: np.ndarray) -> str:
    h = hashlib.sha1(np.ascontiguousarray(images, np.uint8).tobytes())
    h.update(np.ascontiguousarray(labels, np.int64).tobytes())
    return h.hexdigest()[:16]


def check_settings(size: int, draw: str, split: str, timer: int, seed: int = 0) -> None:
    """Raises ConfigError (keyed by field) for a round's size, draw, split, timer or seed out of range."""
    if not 0 <= seed < 2**32:
        raise ConfigError(f"seed: {seed} is not a whole number from 0 to {2**32 - 1}.", field="seed")
    if not 1 <= size <= max_faces():
        raise ConfigError(f"faces: {size} is not between 1 and {max_faces()} (FER_QUIZ_MAX_FACES).", field="faces")
    if draw not in DRAWS:
        raise ConfigError(f"draw: {draw!r} is not one of {', '.join(DRAWS)}.", field="draw")
    if split not in SPLITS:
        raise ConfigError(f"split: {split!r} is not one of {', '.join(SPLITS)}.", field="split")
    if not 0 <= timer <= MAX_TIMER_S:
        raise ConfigError(f"timer: {timer} s is not between 0 (none) and {MAX_TIMER_S} s.", field="timer")


def draw_faces(labels: np.ndarray, size: int, seed: int, draw: str = DEFAULT_DRAW) -> np.ndarray:
    """Positions of ``size`` faces among ``labels``, in the order they are shown (the same for the
    same seed). ``balanced`` takes the classes in turn (a class with no faces left is skipped);
    ``natural`` draws uniformly, so the split's class balance shows."""
    if size > len(labels):
        raise ConfigError(f"faces: the split has only {len(labels)} faces, fewer than {size}.", field="faces")
    rng = np.random.default_rng(seed)
    if draw == "natural":
        return rng.choice(len(labels), size, replace=False)
    pools = [list(rng.permutation(np.flatnonzero(labels == c))) for c in np.unique(labels)]
    picked: list[int] = []
    while len(picked) < size:
        for pool in [pools[k] for k in rng.permutation(len(pools))]:
            if pool and len(picked) < size:
                picked.append(int(pool.pop()))
    return np.asarray(picked)[rng.permutation(size)]


def make_round(dataset: Dataset, split: str, size: int, seed: int, model, ref: ModelRef, *, draw: str = DEFAULT_DRAW,
               tta: str = DEFAULT_TTA, timer: int = 0, source: str | None = None) -> Round:
    """Draw a round from ``dataset`` and have ``model`` (loaded from ``ref``) answer it.

    ``source``: what loads ``dataset`` again on another server (``demo:20``, a path), when its
    own ``source`` does not say it all.

    Raises:
        ConfigError: a setting out of range, or a split with too few faces.
        DataError: the model's classes are not the data set's.
    """
    check_settings(size, draw, split, timer, seed)
    part = dataset.subset(split)
    positions = draw_faces(part.labels, size, seed, draw)
    faces = part.select(positions)
    res = evaluate(model, faces, None, tta, classes=ref.classes, name=ref.name)
    spec = str(ref.run_dir or ref.path) if ref.name not in ("default", "fast") else ref.name
    return Round(source=source or dataset.source, merge=dataset.merge, split=split, seed=seed, draw=draw,
                 classes=tuple(ref.classes), index=[int(i) for i in positions], labels=[int(v) for v in faces.labels],
                 model=spec, model_name=ref.name, tta=tta, answers=[int(v) for v in res.y_pred],
                 digest=faces_digest(faces.images, faces.labels), timer=timer,
                 regions=face_regions(ref, split, positions))


def face_regions(ref: ModelRef, split: str, positions: np.ndarray) -> dict[int, str]:
    """``{face: region}`` of the training dynamics (:mod:`fer_core.training.dynamics`) for the
    round's faces the model's run followed: only Training faces, and only for a run that recorded
    its dynamics; empty otherwise."""
    found = read_dynamics(ref.run_dir) if ref.run_dir is not None and split == "Training" else None
    if found is None:
        return {}
    where = {face["index"]: face["region"] for face in found.cartography()["faces"]}
    return {k: where[int(p)] for k, p in enumerate(positions) if int(p) in where}


def _confusion(truth: Iterable[int], picks: Iterable[int], n: int) -> list[list[int]]:
    m = np.zeros((n, n), np.int64)
    for t, p in zip(truth, picks):
        m[t, p] += 1
    return m.tolist()


def results(rnd: Round, answers: Iterable[tuple[str, int, int | None]], nicknames: dict[str, str] | None = None) -> dict:
    """Everything a board or a player's summary shows, from the answers given so far.

    ``class_accuracy``: right answers over answers given (a face left is wrong; None before any
    answer); ``model_accuracy``: the model's over all the round's faces. Per face: how many
    answered, how many were right (``agreement``: their share), each class's count and
    ``most_given``, the answer more than half of them gave (None when none did: a tie, a scatter,
    faces left); ``wrong_label``: the faces where the model and most people both disagree with the
    label, whether or not with each other (where a wrong label may hide). Per session: its
    answers, right ones and accuracy, with its nickname when the round shows nicknames.
    """
    n = len(rnd.classes)
    rows = [(s, int(f), c) for s, f, c in answers if 0 <= int(f) < rnd.size]
    counts = np.zeros((rnd.size, n), np.int64)
    left = np.zeros(rnd.size, np.int64)
    sessions: dict[str, list[int]] = {}
    for session, face, choice in rows:
        right = choice is not None and choice == rnd.labels[face]
        sessions.setdefault(session, [0, 0])
        sessions[session][0] += 1
        sessions[session][1] += int(right)
        if choice is None:
            left[face] += 1
        else:
            counts[face, choice] += 1
    given = counts.sum(axis=1) + left
    right = counts[np.arange(rnd.size), rnd.labels] if rnd.size else np.zeros(0, np.int64)
    faces = []
    for k in range(rnd.size):
        top = int(counts[k].argmax()) if counts[k].any() else None
        if top is not None and counts[k, top] * 2 <= given[k]:
            top = None  # only an answer more than half of them gave (a tie or a scatter names none)
        faces.append({"face": k, "index": rnd.index[k], "label": rnd.classes[rnd.labels[k]],
                      "model": rnd.classes[rnd.answers[k]], "model_right": rnd.answers[k] == rnd.labels[k],
                      "answers": int(given[k]), "right": int(right[k]), "left": int(left[k]),
                      "agreement": float(right[k] / given[k]) if given[k] else None,
                      "most_given": rnd.classes[top] if top is not None else None,
                      "counts": {c: int(v) for c, v in zip(rnd.classes, counts[k])},
                      "region": rnd.regions.get(k)})
    scores = [{"session": s, "answers": a, "right": r, "accuracy": r / a,
               **({"nickname": nicknames[s]} if rnd.nicknames and nicknames and nicknames.get(s) else {})}
              for s, (a, r) in sorted(sessions.items())]
    total, correct = int(given.sum()), int(right.sum())
    model_right = [a == t for a, t in zip(rnd.answers, rnd.labels)]
    truth = [rnd.labels[f] for _, f, c in rows if c is not None]
    picks = [c for _, f, c in rows if c is not None]
    return {"code": rnd.code, "split": rnd.split, "source": rnd.source, "model": rnd.model_name, "tta": rnd.tta,
            "classes": list(rnd.classes), "faces_in_round": rnd.size, "sessions": len(sessions), "answers": total,
            "class_accuracy": correct / total if total else None,
            "model_accuracy": float(np.mean(model_right)) if rnd.size else None,
            "human_reference": HUMAN_ACCURACY,
            "class_confusion": _confusion(truth, picks, n),
            "model_confusion": _confusion(rnd.labels, rnd.answers, n),
            "faces": faces, "scores": scores,
            "wrong_label": [f["face"] for f in faces if not f["model_right"] and f["answers"]
                            and f["most_given"] is not None and f["most_given"] != f["label"]]}
