"""The retrain Job's policy is read from the RETRAIN_* settings, field by field."""

from dataclasses import asdict

import pytest

from ticketflow.batch.retrain import RetrainPolicy
from ticketflow.cli.models import retrain_policy
from ticketflow.config import Settings

pytestmark = pytest.mark.unit


def test_every_policy_field_comes_from_its_setting() -> None:
    settings = Settings(
        retrain_use_predicted=False,
        retrain_min_probability=0.8,
        retrain_holdout_fraction=0.25,
        retrain_min_holdout=7,
        retrain_margin=0.02,
        retrain_class_tolerance=0.1,
        retrain_min_new_class_examples=3,
        retrain_min_class_support=20,
        retrain_confidence=0.8,
    )
    assert asdict(retrain_policy(settings)) == {
        "use_predicted": False,
        "min_probability": 0.8,
        "holdout_fraction": 0.25,
        "min_holdout": 7,
        "margin": 0.02,
        "class_tolerance": 0.1,
        "min_new_class_examples": 3,
        "min_class_support": 20,
        "confidence": 0.8,
    }
    # The defaults agree too: nobody gets another policy by leaving the settings unset.
    assert retrain_policy(Settings(_env_file=None)) == RetrainPolicy()
