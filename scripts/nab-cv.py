#!/usr/bin/env python3
"""Cross-validated detection quality: how the detector's settings score on series they were
not chosen on.

The labelled corpus (by default tests/data/nab-train/) is split into folds: by file within each
category (two folds, files alternating in name order) or one category per fold
(--by-category; a category without anomalies is only trained on). For each fold, every candidate setting is scored on the other folds and the
best of them is then scored on the held-out fold. Printed: each candidate's score on every
fold and on the whole corpus (the fitted score), the held-out score per fold, and the worst
held-out fold, by which defaults should be chosen. Scores are NAB's standard profile
(scripts/nab-eval.sh, scripts/nab_score.py).

    scripts/nab-cv.py                       # the default candidates, two folds by file
    scripts/nab-cv.py --by-category
    scripts/nab-cv.py '{}' '{ zscore = { points = 1000 } }'   # these candidates instead
"""
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)

# Each a stream's `analytics = ...` value. The first is Tidewatch's default.
CANDIDATES = [
    "{}",
    "{ zscore = { probability = 1e-4 } }",
    "{ zscore = { probability = 1e-6 } }",
    "{ zscore = { points = 300 } }",
    "{ zscore = { points = 1000 } }",
    "{ zscore = { floor = 0.05 } }",
    "{ zscore = { refractory = 200 } }",
    "{ zscore = { resolve_after = 6 } }",
]


def folds_of(corpus, by_category):
    """Lists of files (`category/name.csv`), one list per fold."""
    labels = json.load(open(os.path.join(corpus, "labels", "combined_windows.json")))
    files = sorted(labels)
    if by_category:
        # A category without anomalies has no score of its own (NAB's null and perfect
        # detectors tie on it): it is only ever trained on.
        categories = sorted({f.split("/")[0] for f in files if labels[f]})
        return [[f for f in files if f.startswith(c + "/")] for c in categories], categories
    folds = [[], []]
    for category in sorted({f.split("/")[0] for f in files}):
        mine = [f for f in files if f.startswith(category + "/")]
        for i, f in enumerate(mine):
            folds[i % 2].append(f)
    return folds, ["files 1, 3, 5, ...", "files 2, 4, 6, ..."]


def subset(corpus, files, into):
    """A corpus of `files` only, in NAB's layout, under `into`."""
    labels = json.load(open(os.path.join(corpus, "labels", "combined_windows.json")))
    os.makedirs(os.path.join(into, "labels"))
    for f in files:
        os.makedirs(os.path.join(into, "data", os.path.dirname(f)), exist_ok=True)
        shutil.copy(os.path.join(corpus, "data", f), os.path.join(into, "data", f))
    with open(os.path.join(into, "labels", "combined_windows.json"), "w") as out:
        json.dump({f: labels[f] for f in files}, out)
    return into


def score(analytics, corpus):
    out = subprocess.run(
        [os.path.join(HERE, "nab-eval.sh"), analytics, corpus],
        check=True, capture_output=True, text=True,
    ).stdout
    match = re.search(r"NAB standard \(own scorer\): (-?[0-9.]+)", out)
    if not match:
        sys.exit(f"nab-eval.sh printed no score:\n{out}")
    return float(match.group(1))


def main():
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    by_category = "--by-category" in sys.argv
    corpus = os.path.join(ROOT, "tests", "data", "nab-train")
    candidates = args or CANDIDATES
    folds, names = folds_of(corpus, by_category)
    work = tempfile.mkdtemp()
    try:
        every = sorted(json.load(open(os.path.join(corpus, "labels", "combined_windows.json"))))
        trains = [subset(corpus, [f for f in every if f not in fold], os.path.join(work, f"train{i}"))
                  for i, fold in enumerate(folds)]
        tests = [subset(corpus, fold, os.path.join(work, f"test{i}")) for i, fold in enumerate(folds)]
        table = {}
        for c in candidates:
            table[c] = {
                "train": [score(c, t) for t in trains],
                "test": [score(c, t) for t in tests],
                "whole": score(c, corpus),
            }
    finally:
        shutil.rmtree(work)
    width = max(len(c) for c in candidates)
    print(f"{'candidate':<{width}}  whole  " + "  ".join(f"fold{i} (train/held-out)" for i in range(len(folds))))
    for c in candidates:
        row = table[c]
        cells = "  ".join(f"{row['train'][i]:6.1f} / {row['test'][i]:5.1f}       " for i in range(len(folds)))
        print(f"{c:<{width}}  {row['whole']:5.1f}  {cells}")
    held_out = []
    for i, name in enumerate(names):
        chosen = max(candidates, key=lambda c: table[c]["train"][i])
        held_out.append(table[chosen]["test"][i])
        print(f"fold {i} ({name}, {len(folds[i])} files): chosen on the rest {chosen}, "
              f"held-out {table[chosen]['test'][i]:.1f}")
    fitted = max(table[c]["whole"] for c in candidates)
    default = candidates[0]
    print(f"fitted (best on the whole corpus): {fitted:.1f}; the first candidate on the whole: "
          f"{table[default]['whole']:.1f}")
    print(f"held-out: worst fold {min(held_out):.1f}, mean {sum(held_out) / len(held_out):.1f}; "
          f"the first candidate's worst fold {min(table[default]['test']):.1f}")


if __name__ == "__main__":
    main()
