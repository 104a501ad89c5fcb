"""Writes test/fixtures/keras3: a MobileNetV2 (alpha 0.35, 96 px, no top) as Keras 3 saves it, in both of its HDF5
forms (model.save('x.h5') and save_weights('x.weights.h5')), with seeded random weights and BatchNorm statistics (so
that every layer matters), an input batch and Keras's own output for it.

Made with Keras 3.15.1 on TensorFlow 2.21.0 (CPU) from PyPI, in a virtual environment, run inside test/fixtures/keras3.
The files are committed, so tests do not need Python.
"""
import os
os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
import keras, numpy as np
keras.utils.set_random_seed(7)
rng = np.random.default_rng(7)
m = keras.applications.MobileNetV2(input_shape=(96, 96, 3), alpha=0.35, include_top=False, weights=None)
for layer in m.layers:
    ws = layer.get_weights()
    if not ws:
        continue
    if isinstance(layer, keras.layers.BatchNormalization):
        g, b, mean, var = ws
        ws = [rng.uniform(0.5, 1.5, g.shape), rng.normal(0, 0.1, b.shape), rng.normal(0, 0.1, mean.shape), rng.uniform(0.5, 1.5, var.shape)]
    else:
        ws = [rng.normal(0, np.sqrt(2.0 / max(1, np.prod(w.shape[:-1]))), w.shape) if w.ndim > 1 else rng.normal(0, 0.05, w.shape) for w in ws]
    layer.set_weights([w.astype(np.float32) for w in ws])
m.save("mobilenetv2_035_notop.h5")
m.save_weights("mobilenetv2_035_notop.weights.h5")
x = (rng.random((2, 96, 96, 3)) * 2 - 1).astype(np.float32)
np.save("input.npy", x)
y = m.predict(x, verbose=0)
np.save("output.npy", y)
print(keras.__version__, m.count_params(), y.shape, float(y.mean()), float(y.std()))
