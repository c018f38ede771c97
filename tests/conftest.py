import pytest
import torch

from optbench.workers import setup_torch

# One torch thread per test process: a second process on the other core slows
# 2-thread torch by 2 to 10 times on the 2-core CI machine.
setup_torch(1)


@pytest.fixture(scope="session")
def referee():
    from optbench.referees import Referee
    return Referee("mnist", "proxy_cnn", torch.device("cpu"))


@pytest.fixture(scope="session")
def real_features(referee):
    from optbench.domains import get_domain
    mnist = get_domain("mnist")
    from optbench.referees.distribution import extract
    x_test, _ = mnist.load_split("test")
    return extract(referee.feature_net, x_test), referee.ref_features

# Nulls for the tests' odd sample sizes: 60 draws instead of 1,000 (seconds, not minutes
# per size), cached for the session in one folder that subprocesses share. The shipped
# nulls (n = 128, 200, 1,000 draws) are keyed by their draws and are not used here.
import os, tempfile  # noqa: E401,E402
os.environ.setdefault("OPTBENCH_NULL_DRAWS", "60")
os.environ.setdefault("OPTBENCH_CACHE", tempfile.mkdtemp(prefix="optbench-test-cache-"))
