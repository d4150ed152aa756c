"""A user error raised inside a DataLoader worker reaches the user as its own message, not torch's report."""

from __future__ import annotations

import pytest
from torch.utils.data import DataLoader, Dataset

from tanet_lightning.base.errors import DataError
from tanet_lightning.data.datasets import TooManyBadFilesError
from tanet_lightning.data.shards import ShardError

MESSAGE = "data.root=s3://bucket/k400: the store did not answer after 5 attempts\nset AWS_MAX_ATTEMPTS to retry more"


class Refusing(Dataset):
    def __init__(self, error: type[DataError]):
        self.error = error

    def __len__(self) -> int:
        return 2

    def __getitem__(self, i):
        raise self.error(MESSAGE)


@pytest.mark.parametrize("error", [DataError, ShardError, TooManyBadFilesError])
def test_a_user_error_in_a_loader_worker_keeps_its_message(error):
    with pytest.raises(error) as caught:
        next(iter(DataLoader(Refusing(error), num_workers=1)))
    assert str(caught.value) == MESSAGE  # torch's re-raise said "Caught ... Original Traceback ..." before it
