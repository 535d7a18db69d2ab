"""Writes a small, deterministic two-layer model (same bytes on every build)."""
import os
import sys

import numpy as np

INPUTS, HIDDEN, CLASSES = 64, 256, 10


def main(out: str) -> None:
    rng = np.random.RandomState(20261123)
    w1 = (rng.standard_normal((HIDDEN, INPUTS)) / np.sqrt(INPUTS)).astype(np.float32)
    b1 = np.zeros(HIDDEN, dtype=np.float32)
    w2 = (rng.standard_normal((CLASSES, HIDDEN)) / np.sqrt(HIDDEN)).astype(np.float32)
    b2 = np.zeros(CLASSES, dtype=np.float32)
    os.makedirs(os.path.dirname(out), exist_ok=True)
    with open(out, "wb") as f:
        np.savez(f, w1=w1, b1=b1, w2=w2, b2=b2)


if __name__ == "__main__":
    main(sys.argv[1])
