"""Data and model for digits-app: plain numpy, no downloads.

Data: scikit-learn's bundled ``load_digits`` (1,797 8x8 images, 10 classes).
A fixed 20% stratified split is the server's held-out test set; the other 80%
is dealt class by class, round-robin, to ``num-partitions`` partitions, so
every partition sees every class (as long as there are enough samples) and the
split depends only on ``(partition-id, num-partitions)``.

Model: softmax regression (``model-type = "logistic"``) or a one-hidden-layer
ReLU MLP (``model-type = "mlp"``). Its weights are a list of numpy arrays, which
is exactly what travels in a Flower ``ArrayRecord``.
"""

from functools import lru_cache

import numpy as np
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

SEED = 42
NUM_FEATURES = 64
NUM_CLASSES = 10
HIDDEN_UNITS = 32

Params = list[np.ndarray]


# --------------------------------------------------------------------------- data


@lru_cache(maxsize=1)
def _split() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Return (x_pool, y_pool, x_test, y_test); pixels scaled to [0, 1]."""
    digits = load_digits()
    x = (digits.data / 16.0).astype(np.float64)
    y = digits.target.astype(np.int64)
    x_pool, x_test, y_pool, y_test = train_test_split(
        x, y, test_size=0.2, stratify=y, random_state=SEED
    )
    return x_pool, y_pool, x_test, y_test


def load_partition(
    partition_id: int, num_partitions: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Return (x_train, y_train, x_val, y_val) of one client's partition."""
    if not 0 <= partition_id < num_partitions:
        raise ValueError(f"partition-id {partition_id} not in [0, {num_partitions})")
    x_pool, y_pool, _, _ = _split()
    rng = np.random.default_rng(SEED)
    mine = []
    for label in range(NUM_CLASSES):
        idx = np.flatnonzero(y_pool == label)
        rng.shuffle(idx)
        mine.append(idx[partition_id::num_partitions])  # deal round-robin
    idx = np.sort(np.concatenate(mine))
    # Every 5th sample of the partition is the client's local validation set.
    val = np.zeros(len(idx), dtype=bool)
    val[::5] = True
    if val.all():  # tiny partition: validate on what we train on
        val[:] = False
        return x_pool[idx], y_pool[idx], x_pool[idx], y_pool[idx]
    return x_pool[idx[~val]], y_pool[idx[~val]], x_pool[idx[val]], y_pool[idx[val]]


def load_test_data() -> tuple[np.ndarray, np.ndarray]:
    """Return the server's held-out test split."""
    _, _, x_test, y_test = _split()
    return x_test, y_test


# -------------------------------------------------------------------------- model


def init_params(model_type: str) -> Params:
    """Initial global weights (deterministic)."""
    if model_type == "logistic":
        return [np.zeros((NUM_FEATURES, NUM_CLASSES)), np.zeros(NUM_CLASSES)]
    if model_type == "mlp":
        rng = np.random.default_rng(SEED)
        return [
            rng.normal(0, 1 / np.sqrt(NUM_FEATURES), (NUM_FEATURES, HIDDEN_UNITS)),
            np.zeros(HIDDEN_UNITS),
            rng.normal(0, 1 / np.sqrt(HIDDEN_UNITS), (HIDDEN_UNITS, NUM_CLASSES)),
            np.zeros(NUM_CLASSES),
        ]
    raise ValueError(f"Unknown model-type {model_type!r} (use 'logistic' or 'mlp')")


def _softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def _forward(params: Params, x: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
    """Return (class probabilities, hidden activations or None)."""
    if len(params) == 2:
        w, b = params
        return _softmax(x @ w + b), None
    w1, b1, w2, b2 = params
    h = np.maximum(x @ w1 + b1, 0.0)
    return _softmax(h @ w2 + b2), h


def _cross_entropy(probs: np.ndarray, y: np.ndarray) -> float:
    return float(-np.mean(np.log(probs[np.arange(len(y)), y] + 1e-12)))


def train(  # pylint: disable=too-many-arguments,too-many-locals
    params: Params,
    x: np.ndarray,
    y: np.ndarray,
    *,
    epochs: int,
    batch_size: int,
    learning_rate: float,
    seed: int,
) -> tuple[Params, float]:
    """Mini-batch SGD on cross-entropy; returns (new params, mean batch loss)."""
    params = [p.copy() for p in params]
    rng = np.random.default_rng(seed)
    losses = []
    for _ in range(epochs):
        order = rng.permutation(len(x))
        for start in range(0, len(x), batch_size):
            batch = order[start : start + batch_size]
            xb, yb = x[batch], y[batch]
            probs, h = _forward(params, xb)
            losses.append(_cross_entropy(probs, yb))
            delta = probs
            delta[np.arange(len(yb)), yb] -= 1.0
            delta /= len(yb)  # d loss / d logits
            if h is None:
                grads = [xb.T @ delta, delta.sum(axis=0)]
            else:
                dh = (delta @ params[2].T) * (h > 0)
                grads = [xb.T @ dh, dh.sum(axis=0), h.T @ delta, delta.sum(axis=0)]
            for p, g in zip(params, grads):
                p -= learning_rate * g
    return params, float(np.mean(losses)) if losses else 0.0


def evaluate(params: Params, x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """Return (cross-entropy loss, accuracy)."""
    probs, _ = _forward(params, x)
    return _cross_entropy(probs, y), float(np.mean(probs.argmax(axis=1) == y))
