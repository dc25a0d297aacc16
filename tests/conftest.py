import os

import pytest
import torch

from wsss.data.demo import generate_demo_dataset

# Two cores: keep torch from oversubscribing when tests run beside other work.
torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory):
    """A generated VOC-layout dataset: 32 train + 8 val images of 80x80 pixels."""
    root = tmp_path_factory.mktemp("tiny") / "data"
    return generate_demo_dataset(root, num_train=32, num_val=8, image_size=80, seed=1)
