"""Writes a small, deterministic two-layer model: the same bytes on every build.

numpy's savez stamps each member with the current time, so the archive is
written here with fixed member timestamps instead (np.load reads it as usual).
"""
import io
import os
import sys
import zipfile

import numpy as np

INPUTS, HIDDEN, CLASSES = 64, 256, 10
SEED = 20261123
FIXED_TIME = (1980, 1, 1, 0, 0, 0)


def weights() -> dict:
    # RandomState's legacy stream is frozen by numpy's compatibility policy.
    rng = np.random.RandomState(SEED)
    w1 = (rng.standard_normal((HIDDEN, INPUTS)) / np.sqrt(INPUTS)).astype(np.float32)
    b1 = np.zeros(HIDDEN, dtype=np.float32)
    w2 = (rng.standard_normal((CLASSES, HIDDEN)) / np.sqrt(HIDDEN)).astype(np.float32)
    b2 = np.zeros(CLASSES, dtype=np.float32)
    return {"w1": w1, "b1": b1, "w2": w2, "b2": b2}


def main(out: str) -> None:
    os.makedirs(os.path.dirname(out), exist_ok=True)
    tmp = out + ".tmp"
    with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_STORED) as archive:
        for name, array in weights().items():
            buf = io.BytesIO()
            np.lib.format.write_array(buf, np.ascontiguousarray(array), allow_pickle=False)
            info = zipfile.ZipInfo(f"{name}.npy", date_time=FIXED_TIME)
            info.external_attr = 0o644 << 16
            archive.writestr(info, buf.getvalue())
    os.replace(tmp, out)


if __name__ == "__main__":
    main(sys.argv[1])
