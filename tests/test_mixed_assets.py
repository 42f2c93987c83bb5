"""Mixed models of the real MNIST CNN (needs ``refquant assets fetch``)."""

from __future__ import annotations

import numpy as np
import pytest

pytestmark = pytest.mark.assets


@pytest.fixture(scope="module")
def mnist():
    from refquant import assets, datasets
    from refquant.graph.models import mnist_cnn
    from refquant.io.torch_pth import load_torch_state_dict
    from refquant.mixed import MixedQuantizer

    try:
        (path,) = assets.asset_paths("mnist_cnn")
        images, labels = datasets.mnist_5k(download=False)
    except Exception:  # noqa: BLE001 - not fetched
        pytest.skip("run `refquant assets fetch mnist_cnn mnist_5k` first")
    x = datasets.mnist_preprocess(images)
    mq = MixedQuantizer(mnist_cnn(load_torch_state_dict(path)), x[:200])
    return mq, x[200:400], labels[200:400]


def test_all_int8_equals_the_static_model(mnist):
    mq, x, _ = mnist
    np.testing.assert_array_equal(mq.model("int8").run(x), mq.qmodel.run(x))
    # the mixed model stores weight scales as float64 (4 B more per scale than
    # the static size counts)
    n_scales = sum(np.size(n.weight.scale) for n in mq.qmodel.nodes if n.weight)
    assert mq.model("int8").size_bytes() == mq.qmodel.size_bytes() + 4 * n_scales


def test_fp16_first_layer_rest_int8_runs_end_to_end(mnist):
    mq, x, y = mnist
    m = mq.model({"features.0": "fp16"}, default="int8")
    out = m.run(x)
    assert np.mean(out.argmax(1) == y) >= 0.97
    assert ("features.2", "features.3", "float->int8") in m.boundaries()
    assert m.size_bytes() < mq.model("int8").size_bytes() + 2 * 288
