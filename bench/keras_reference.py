"""Keras 3 reference for tl's parity check: fine-tunes MobileNetV2 with the weights, images and options a tl run used.

The Node side (bench/keras-parity.ts) writes the images as tl decoded them (uint8, NHWC) and the backbone's weights
as tl holds them; this script builds keras.applications.MobileNetV2 without its top, loads those weights layer by
layer (names must match), freezes layers 0..freeze-1, and trains the head tl adds (global average pooling, dropout,
a softmax Dense) with Adam as Keras's fine-tuning guide does: every BatchNormalization is frozen and runs in inference
mode (tl's --bn frozen). The weights of the epoch with the lowest validation
loss are kept, as tl keeps them. Prints one JSON document.

  python bench/keras_reference.py --data DIR --weights DIR --freeze 100 --epochs 3 --batch-size 16 --lr 1e-4 --seed 1
"""
import argparse
import json
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import numpy as np  # noqa: E402
import keras  # noqa: E402


def load_weights(base, folder):
    index = json.load(open(os.path.join(folder, "index.json")))
    loaded = 0
    for layer in base.layers:
        if not layer.weights:
            continue
        if layer.name not in index:
            raise SystemExit(f"no weights for layer {layer.name}")
        arrays = [np.load(os.path.join(folder, f)) for f in index[layer.name]]
        for w, a in zip(layer.weights, arrays):
            if tuple(w.shape) != a.shape:
                raise SystemExit(f"{layer.name}: shape {tuple(w.shape)} against {a.shape}")
        layer.set_weights(arrays)
        loaded += 1
    return loaded


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--data", required=True)
    p.add_argument("--weights", required=True)
    p.add_argument("--freeze", type=int, default=100)
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--lr", type=float, default=1e-4)
    p.add_argument("--dropout", type=float, default=0.2)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--threads", type=int, default=0)
    a = p.parse_args()
    if a.threads:
        import tensorflow as tf
        tf.config.threading.set_intra_op_parallelism_threads(a.threads)
        tf.config.threading.set_inter_op_parallelism_threads(1)
    keras.utils.set_random_seed(a.seed)
    split = {s: (np.load(os.path.join(a.data, f"{s}_x.npy")), np.load(os.path.join(a.data, f"{s}_y.npy"))) for s in ("train", "val", "test")}
    meta = json.load(open(os.path.join(a.data, "meta.json")))
    classes, size = len(meta["classes"]), split["train"][0].shape[1]
    # tl's raw01 preprocessing, in float32.
    x = {s: (v[0].astype(np.float32) / np.float32(255.0)) for s, v in split.items()}
    y = {s: v[1].astype(np.int64) for s, v in split.items()}

    base = keras.applications.MobileNetV2(weights=None, include_top=False, input_shape=(size, size, 3))
    loaded = load_weights(base, a.weights)
    # tl's --bn frozen: every BatchNormalization is frozen (scale, shift and statistics) and runs in inference mode.
    # In Keras 3 that is trainable=False; training=False on the call below alone still let fit() use batch statistics.
    for i, layer in enumerate(base.layers):
        layer.trainable = i >= a.freeze and not isinstance(layer, keras.layers.BatchNormalization)
    inputs = keras.Input((size, size, 3))
    h = base(inputs, training=False)
    h = keras.layers.GlobalAveragePooling2D()(h)
    h = keras.layers.Dropout(a.dropout)(h)
    outputs = keras.layers.Dense(classes, activation="softmax")(h)
    model = keras.Model(inputs, outputs)
    model.compile(optimizer=keras.optimizers.Adam(a.lr), loss="sparse_categorical_crossentropy", metrics=["accuracy"])

    class KeepBest(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.best, self.weights = np.inf, None

        def on_epoch_end(self, epoch, logs=None):
            if logs["val_loss"] < self.best:
                self.best, self.weights = logs["val_loss"], self.model.get_weights()

    best = KeepBest()
    started = time.time()
    history = model.fit(x["train"], y["train"], batch_size=a.batch_size, epochs=a.epochs, shuffle=True, validation_data=(x["val"], y["val"]), callbacks=[best], verbose=0)
    seconds = time.time() - started
    model.set_weights(best.weights)
    test_loss, test_acc = model.evaluate(x["test"], y["test"], batch_size=64, verbose=0)
    print(json.dumps({
        "keras": keras.__version__, "backend": keras.backend.backend(), "layers_loaded": loaded,
        "trainable_weights": int(sum(np.prod(w.shape) for w in model.trainable_weights)),
        "loss": [float(v) for v in history.history["loss"]], "val_loss": [float(v) for v in history.history["val_loss"]],
        "val_accuracy": [float(v) for v in history.history["val_accuracy"]],
        "test_accuracy": float(test_acc), "test_loss": float(test_loss), "seconds": seconds,
    }))


if __name__ == "__main__":
    main()
