"""The simulator's statistics and its most-specific oracle, on small hand-checked cases."""

import math

import pytest

from workyard import Subscription
from workyard.sim import (
    SpecificityOracle,
    coefficient_of_variation,
    fairness,
    jain_index,
    max_min_ratio,
    percentile,
)


def test_jain_index():
    assert jain_index([5, 5, 5, 5]) == 1.0
    assert jain_index([1, 0, 0, 0]) == 0.25  # one of four gets everything: 1/n
    assert jain_index([1, 2, 3]) == pytest.approx(36 / 42)  # (1+2+3)² / (3·(1+4+9))
    assert jain_index([0, 0]) == 1.0  # nobody got anything: equal shares
    with pytest.raises(ValueError):
        jain_index([])


def test_max_min_ratio():
    assert max_min_ratio([2, 4, 3]) == 2.0
    assert max_min_ratio([0, 3]) == math.inf
    assert max_min_ratio([0, 0]) == 1.0


def test_coefficient_of_variation():
    # mean 5, population standard deviation 2
    assert coefficient_of_variation([2, 4, 4, 4, 5, 5, 7, 9]) == pytest.approx(0.4)
    assert coefficient_of_variation([3, 3]) == 0.0
    assert coefficient_of_variation([0, 0]) == 0.0


def test_percentile_interpolates_between_ranks():
    assert percentile([1, 2, 3, 4], 50) == 2.5
    assert percentile([0, 10], 95) == 9.5
    assert percentile([7], 99) == 7
    assert percentile([1, 2, 3], 0) == 1 and percentile([1, 2, 3], 100) == 3
    assert percentile([], 50) is None


def test_fairness_reports_infinite_ratio_as_none():
    assert fairness([0, 4]) == {"jain": 0.5, "max_min": None, "cv": 1.0}
    assert fairness([2, 2]) == {"jain": 1.0, "max_min": 1.0, "cv": 0.0}


def test_oracle_follows_the_seed_example():
    """Seed 000: worker1 cloud=aws,gcp; worker2 cloud=aws account=123."""
    worker1 = (Subscription.of("collect", {"cloud": "aws,gcp"}),)
    worker2 = (Subscription.of("collect", {"cloud": "aws", "account": "123"}),)
    anyone = (Subscription.of("collect"),)
    oracle = SpecificityOracle()
    for subs in (worker1, worker2, anyone):
        oracle.attach(subs)
    aws_123 = {"cloud": "aws", "account": "123"}
    assert oracle.most_specific("collect", aws_123) == 2
    assert oracle.allows("w2", worker2, "collect", aws_123)
    assert not oracle.allows("w1", worker1, "collect", aws_123)
    assert not oracle.allows("any", anyone, "collect", aws_123)
    assert oracle.allows("w1", worker1, "collect", {"cloud": "gcp", "account": "123"})
    assert oracle.allows("any", anyone, "collect", {"cloud": "azure"})
    assert not oracle.allows("w1", worker1, "collect", {"cloud": "azure"})  # no match at all
    assert not oracle.allows("w1", worker1, "tag", {"cloud": "aws"})  # another task name

    oracle.detach(worker2)  # the only aws/123 worker left: worker1 may take it now
    assert oracle.allows("w1", worker1, "collect", aws_123)
    oracle.attach(worker2)
    oracle.attach(worker2)
    oracle.detach(worker2)  # one of two identical workers left: still attached
    assert not oracle.allows("w1", worker1, "collect", aws_123)
