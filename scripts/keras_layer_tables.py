"""Regenerate test/fixtures/keras-applications/*.tsv: the layer tables of the Keras applications tl matches.

Run with a Python that has TensorFlow (for the tfk_ tables, tf.keras) or Keras 3 (for the k3_ tables; any backend:
`pip install keras "jax[cpu]"` in a virtual environment and KERAS_BACKEND=jax is enough):
    python3 scripts/keras_layer_tables.py --flavour tfk --out test/fixtures/keras-applications
    python3 scripts/keras_layer_tables.py --flavour k3 --out test/fixtures/keras-applications
No weights are needed (weights=None), so it runs offline.
"""
import argparse
import os

MODELS = ["VGG16", "ResNet50", "MobileNet", "MobileNetV2", "MobileNetV3Small", "MobileNetV3Large", "InceptionV3"]


def shape_of(layer):
    try:
        shape = layer.output.shape
    except Exception:  # layers with several outputs or none
        return "None"
    if layer.__class__.__name__ == "InputLayer":
        return "None"
    return "(" + ", ".join("None" if d is None else str(d) for d in shape) + ")"


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--flavour", choices=["tfk", "k3"], required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--models", nargs="*", default=MODELS, choices=MODELS, help="only these applications")
    args = parser.parse_args()
    if args.flavour == "tfk":
        from tensorflow import keras  # tf.keras (Keras 2)
    else:
        import keras  # Keras 3
    os.makedirs(args.out, exist_ok=True)
    for name in args.models:
        for top in (True, False):
            builder = getattr(keras.applications, name)
            # Layers are named by per-session counters (conv2d_174 after other models): each table is a fresh session's.
            keras.backend.clear_session()
            model = builder(weights=None, include_top=top)
            path = os.path.join(args.out, f"{args.flavour}_{name}_{'top' if top else 'notop'}.tsv")
            rows = ["index\tname\tclass\tparams\toutput_shape"]
            for i, layer in enumerate(model.layers):
                # Both number their input layers per session (input_1, input_layer_1, ...): the tables give the first
                # model's name, "input" (tf.keras) or "input_layer" (Keras 3).
                lname = ("input" if args.flavour == "tfk" else "input_layer") if layer.__class__.__name__ == "InputLayer" else layer.name
                rows.append(f"{i}\t{lname}\t{layer.__class__.__name__}\t{layer.count_params()}\t{shape_of(layer)}")
            tmp = path + ".tmp"
            with open(tmp, "w") as f:
                f.write("\n".join(rows) + "\n")
            os.replace(tmp, path)
            print(path, len(model.layers), "layers")


if __name__ == "__main__":
    main()
