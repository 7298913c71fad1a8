"""`make demo`: the whole path a user takes, end to end.

1. the CS231n two-layer network, declared once, differentiated symbolically, trained by one call;
2. a LeNet-style CNN trained on real handwritten digits (scikit-learn's offline `load_digits`), with
   a progress bar, saved with `gc.save`, reloaded and checked (graphs/digits.py);
3. the saved file run by the `graphc` command in a fresh process, as a service would, with the
   test images as a .npy file; the accuracy of what it wrote is reported.

Everything it writes goes to build/demo/ (the curves to build/demo/digits_curves.png).
"""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join("build", "demo")


def step(title: str) -> None:
    print(f"\n== {title} ==", flush=True)


def main() -> None:
    sys.path.insert(0, os.path.join(ROOT, "graphs"))
    import digits
    import two_layer_net

    os.makedirs(OUT, exist_ok=True)
    step("1. the two-layer network (graphs/two_layer_net.py)")
    two_layer_net.main()

    step("2. a CNN on handwritten digits: train, save, reload (graphs/digits.py)")
    digits.main(["--model", "cnn", "--out", OUT, "--plot", os.path.join(OUT, "digits_curves.png")])

    step("3. the saved model, run by `graphc run` in a fresh process")
    x_test, y_test = digits.load_data()["test"]
    inputs = os.path.join(OUT, "digits_test_x.npy")
    np.save(inputs, digits.images("cnn", x_test))
    model, outputs = os.path.join(OUT, "digits_cnn.json"), os.path.join(OUT, "digits_probs.npz")
    command = [sys.executable, "-m", "graphc", "run", model, "--input", f"x={inputs}", "--output", outputs]
    print("$ graphc run", model, "--input", f"x={inputs}", "--output", outputs, flush=True)
    subprocess.run(command, check=True)
    with np.load(outputs) as result:
        probs = result["probs"]  # a function with one output names it by its tensor
    accuracy = float(np.mean(np.argmax(probs, axis=1) == y_test))
    print(f"graphc run: {probs.shape[0]} test images, accuracy {accuracy:.4f}")


if __name__ == "__main__":
    main()
