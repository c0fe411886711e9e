"""The lecture's Keras model (784→10 softmax, SGD lr 0.01, batch 32) and the
784-256-10 Adam model, for side-by-side timing with `train_mnist`.

    python3 benches/peers/keras_mnist.py --model lecture --threads 2
"""
import argparse
import time

from mnist_data import load


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--model", choices=["lecture", "mlp"], default="lecture")
    p.add_argument("--epochs", type=int)
    p.add_argument("--threads", type=int, default=2)
    a = p.parse_args()
    import tensorflow as tf
    tf.config.threading.set_intra_op_parallelism_threads(a.threads)
    tf.config.threading.set_inter_op_parallelism_threads(a.threads)
    import keras
    x_train, y_train, x_test, y_test = load()
    if a.model == "lecture":
        model = keras.Sequential([keras.Input((784,)), keras.layers.Dense(10, activation="softmax")])
        opt, batch, epochs = keras.optimizers.SGD(0.01), 32, a.epochs or 20
    else:
        model = keras.Sequential([keras.Input((784,)), keras.layers.Dense(256, activation="relu"),
                                  keras.layers.Dense(10, activation="softmax")])
        opt, batch, epochs = keras.optimizers.Adam(1e-3), 128, a.epochs or 10
    model.compile(optimizer=opt, loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    for epoch in range(1, epochs + 1):
        start = time.perf_counter()
        model.fit(x_train, y_train, batch_size=batch, epochs=1, verbose=0, shuffle=True)
        seconds = time.perf_counter() - start
        _, acc = model.evaluate(x_test, y_test, verbose=0)
        print(f"keras {a.model} epoch {epoch}: {seconds:.3f} s, test acc {100 * acc:.2f}%", flush=True)


if __name__ == "__main__":
    main()
