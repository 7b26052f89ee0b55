"""Processed folders (ours and the original's layout) shared by the dataset and prediction tests."""

import pytest

from tests.unit import dataset_fixtures as F


@pytest.fixture(scope="module")
def ours(tmp_path_factory):
    """Our processed folder, written from the labels contract with numpy and OpenCV."""
    return F.write_ctxpose_folder(tmp_path_factory.mktemp("ours"))


@pytest.fixture(scope="module")
def original(tmp_path_factory):
    """The original repository's processed layout with its labels .npy."""
    return F.write_original_folder(tmp_path_factory.mktemp("orig"))
