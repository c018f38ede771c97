import pytest
import torch

from optbench.runner import setup_torch

# One torch thread per test process: a second process on the other core slows
# 2-thread torch by 2 to 10 times on the 2-core CI machine.
setup_torch(1)


@pytest.fixture(scope="session")
def referee():
    from optbench.referees import Referee
    return Referee("mnist", "proxy_cnn", torch.device("cpu"))


@pytest.fixture(scope="session")
def real_features(referee):
    from optbench.domains import mnist
    from optbench.referees.distribution import extract
    x_test, _ = mnist.load_split("test")
    return extract(referee.feature_net, x_test), referee.ref_features
