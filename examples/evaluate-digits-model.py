"""Evaluate a digits-app model downloaded from Pollen, on the app's held-out test split.

    python examples/evaluate-digits-model.py round-3.npz          # numpy.load reads it
    python examples/evaluate-digits-model.py round-3.safetensors  # safetensors reads it

Prints one JSON line: the array names in file order, and the test loss and accuracy that the
app's own server-side evaluation (digits_app.task.evaluate) gives these arrays.
"""

import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent / "digits-app"))
from digits_app import task  # noqa: E402  pylint: disable=wrong-import-position


def load(path: str) -> dict[str, np.ndarray]:
    if path.endswith(".safetensors"):
        from safetensors.numpy import load_file  # pylint: disable=import-outside-toplevel

        return load_file(path)
    with np.load(path, allow_pickle=False) as arrays:
        return {name: arrays[name] for name in arrays.files}


def main() -> None:
    arrays = load(sys.argv[1])
    # Pollen keeps the app's own order (the ArrayRecord's); safetensors readers may sort by name.
    names = list(arrays)
    params = [arrays[name] for name in sorted(names, key=lambda name: int(name) if name.isdigit() else name)]
    x_test, y_test = task.load_test_data()
    loss, acc = task.evaluate(params, x_test, y_test)
    print(json.dumps({"arrays": names, "dtypes": [str(arrays[n].dtype) for n in names], "test_loss": loss, "test_acc": acc}))


if __name__ == "__main__":
    main()
